import { describe, expect, it } from 'vitest';
import { FORMAT_VERSION, SuperblockError, decodeSuperblock, encodeSuperblock } from '../../src/format/superblock.js';
import type { Superblock } from '../../src/rpc/messages.js';

const sb: Superblock = {
  formatVersion: FORMAT_VERSION, nodeId: 7, rootNodeId: 1, listenAddress: '10.0.0.7:7070', rootAddress: '10.0.0.1:7070',
  fsid: '0f66b4bc-020d-4007-b28c-b81edbc6a4a4', nodeUuid: '9a5e3f7e-8c1d-4f0a-b9a1-2d3c4b5a6f70', createdSec: 1_700_000_000,
};

describe('superblock', () => {
  it('decodes what it encodes', async () => {
    expect(await decodeSuperblock(await encodeSuperblock(sb), 'sb')).toEqual(sb);
  });

  it('detects any flipped byte, a truncation and a foreign file', async () => {
    const frame = await encodeSuperblock(sb);
    for (let i = 0; i < frame.length; i++) {
      const bad = Buffer.from(frame);
      bad[i] ^= 0x01;
      await expect(decodeSuperblock(bad, 'sb')).rejects.toBeInstanceOf(SuperblockError);
    }
    await expect(decodeSuperblock(frame.subarray(0, frame.length - 1), 'sb')).rejects.toThrow(/bad length/);
    await expect(decodeSuperblock(Buffer.from('#!/bin/sh\necho not a superblock\n'), 'sb')).rejects.toThrow(/not a kDFS superblock/);
  });

  it('refuses another format version', async () => {
    const frame = await encodeSuperblock({ ...sb, formatVersion: FORMAT_VERSION + 1 });
    await expect(decodeSuperblock(frame, 'sb')).rejects.toThrow(/format version/);
  });
});
