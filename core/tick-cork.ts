// Frames written to a socket in one tick leave in one writev: the first write
// of a tick corks the socket and the tick's end uncorks it. Under load many
// requests (and answers) are written in the same tick; each its own
// cork/uncork made each its own syscall, the gateway's largest single cost.
import { type Socket } from 'node:net';

const corked = new WeakSet<Socket>();

function uncork(socket: Socket): void {
  corked.delete(socket);
  socket.uncork();
}

/** Writes `parts` to `socket`, corked until the end of the current tick. */
export function writeInTick(socket: Socket, parts: readonly Uint8Array[]): void {
  if (!corked.has(socket)) {
    corked.add(socket);
    socket.cork();
    process.nextTick(uncork, socket);
  }
  for (const part of parts) socket.write(part);
}
