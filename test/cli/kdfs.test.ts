// The kdfs administration tool's command line (on commander): help for every
// subcommand, a version, and bad input refused with one line and exit status 2.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, ROOT, command } from '../harness/cluster.js';

const version = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

describe('kdfs', () => {
  it('tells its version (as mkfs.kdfs and mount.kdfs do), and the usage of each subcommand', async () => {
    for (const tool of [CLI.kdfs, CLI.mkfs, CLI.mount]) {
      const shown = await command(tool, ['--version']);
      expect(shown.code, tool).toBe(0);
      expect(shown.stdout.trim()).toBe(version);
    }
    for (const [sub, mentions] of [['up', '--nodes'], ['down', '--dir'], ['status', '--json'], ['setstripe', '--unit'], ['getstripe', '--json'], ['token create', '--node-id']]) {
      const help = await command(CLI.kdfs, [...sub.split(' '), '--help']);
      expect(help.code, sub).toBe(0);
      expect(help.stdout).toContain(`Usage: kdfs ${sub}`);
      expect(help.stdout).toContain(mentions);
    }
  });

  it('refuses bad input with one line and exit status 2', async () => {
    for (const args of [['bogus'], ['status', '--bogus'], ['getstripe'], ['up', '--nodes', '0'], ['up', '--nodes', '65'], ['setstripe', '--unit', '100G', '/tmp'], ['setstripe', '--count', 'x', '/tmp'], ['token', 'create'], ['token', 'create', '--node-id', '2'], ['token', 'create', '--node-id', 'x', '--out', '/tmp/never']]) {
      const refused = await command(CLI.kdfs, args);
      expect(refused.code, args.join(' ')).toBe(2);
      expect(refused.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(refused.stderr).toMatch(/^kdfs: /);
    }
  });
});
