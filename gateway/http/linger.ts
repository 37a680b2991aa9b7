import { type Socket } from 'node:net';

// An answer that closes the connection while the client is still sending its
// body (413 for a body over the limit): Node ends and destroys the socket as
// soon as the answer is written, and a socket closed with bytes still coming
// in is reset. The reset can reach the client before it has read the answer,
// which it then never sees (the fuzz test caught one in ~1,200 requests).
// Lingering, as nginx's lingering_close does: half-close after the answer,
// keep reading and discarding what still comes for a while, then close.

/** How long a closing connection keeps discarding the client's bytes. */
const LINGER_MS = 2_000;

interface DestroySoon {
  destroySoon?: () => void;
}

/** Makes Node's close of `socket` after the current answer a lingering one. */
export function lingerOnClose(socket: Socket): void {
  (socket as Socket & DestroySoon).destroySoon = () => {
    socket.end();
    socket.resume();
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  };
}
