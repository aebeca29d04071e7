// Sockets that read into one buffer, used again for every read. Otherwise Node
// reads into a fresh 64 KiB buffer each time: fresh memory costs page faults, and
// its external memory makes V8 run a full garbage collection every 64 MiB received
// (a third of an agent's CPU while it took 2 GiB of writes). Node offers this
// (the onread option) only to sockets it connects; an accepted one is taken over
// from its handle, the way net.Server makes its sockets.
import net from 'node:net';

/** What a socket reads at most at a time. */
export const SOCKET_READ_BYTES = 256 * 1024;

/** Receives the bytes read: a view of the reused buffer, valid until it returns. */
export type OnChunk = (chunk: Buffer) => void;

function onread(onChunk: OnChunk) {
  return {
    buffer: Buffer.allocUnsafeSlow(SOCKET_READ_BYTES),
    callback: (nread: number, buffer: Uint8Array) => {
      onChunk(Buffer.from(buffer.buffer, buffer.byteOffset, nread));
      return true;
    },
  };
}

export function connectReusing(port: number, host: string, onChunk: OnChunk): net.Socket {
  return net.connect({ port, host, onread: onread(onChunk) });
}

/** Takes over a socket accepted by a server made with pauseOnConnect (which has
 *  not read from it yet). A Node without the handle gets the socket as it is. */
export function adoptReusing(accepted: net.Socket, onChunk: OnChunk): net.Socket {
  const handle = (accepted as unknown as { _handle?: object })._handle;
  if (!handle) {
    accepted.on('data', onChunk);
    accepted.resume();
    return accepted;
  }
  const options = { handle, readable: true, writable: true, onread: onread(onChunk) };
  return new net.Socket(options as net.SocketConstructorOpts);
}
