import { type Http2Server, type ServerHttp2Stream } from 'node:http2';

// A closed HTTP/2 stream lets go of its listeners, and through them of
// grpc-js's call and everything the call reached: the request, its tensors,
// the answer, the pipeline's promises.
//
// Why: Node's HTTP/2 session keeps its open streams in a Map, and V8 moves a
// Map's entries to a new table every few dozen streams while leaving them in
// the old table too. The session's Map lives in the old generation, so each
// old table, garbage from then on, keeps every stream it held alive through
// each scavenge until the next full collection (core/call-table.ts has the
// same story for Fabriek's own tables). Nearly every call's objects were
// promoted that way: 17 % of what a gateway allocated survived into the old
// generation, and GC (pauses and helper threads) took 65–92 µs of CPU per
// small gRPC request; with the listeners released, 3 % and 13–32 µs. The
// stream itself cannot be freed sooner; what it reaches can.

/** Releases each stream's listeners once it closed, for every stream `server` accepts from now on. */
export function releaseClosedStreams(server: Http2Server): void {
  server.on('stream', watch);
}

function watch(stream: ServerHttp2Stream): void {
  stream.on('close', onClose);
}

function onClose(this: ServerHttp2Stream): void {
  // After this turn: the other 'close' listeners (grpc-js's) have run, and whatever they scheduled.
  setImmediate(release, this);
}

function release(stream: ServerHttp2Stream): void {
  stream.removeAllListeners();
  // A stream emits nothing after 'close'; should a late write on it fail, the error must not go unheard (and throw).
  stream.on('error', ignore);
}

function ignore(): void {}
