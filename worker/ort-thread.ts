import { parentPort } from 'node:worker_threads';
import { type OrtSession } from './ort-binding.js';
import { openSession, runTask } from './ort-session.js';
import { type BatchTask, type ThreadInit, type ThreadReply, type ThreadRequest } from './thread-protocol.js';

// One thread of the worker's ONNX Runtime pool (ort-pool.ts). It hosts many
// sessions, by id, and serves requests strictly one after another, in the
// order they came, answering each once: open (loading the model, which
// blocks this thread, never the worker's main thread), run (one batch),
// close. A request that arrives while a run is in progress waits in this
// thread's message queue and starts the moment the run before it ends, with
// no round trip through the main thread.

const port = parentPort;
if (port === null) throw new Error('ort-thread.js must run as a worker thread of OrtThreadPool');

/** Sessions by id; the pool reuses freed ids, so the array stays as long as the most ever open at once. */
const sessions: Array<OrtSession | undefined> = [];
const queue: ThreadRequest[] = [];
let busy = false;

port.on('message', (request: ThreadRequest) => {
  queue.push(request);
  if (!busy) void serve();
});

async function serve(): Promise<void> {
  busy = true;
  for (let request = queue.shift(); request !== undefined; request = queue.shift()) {
    let reply: ThreadReply;
    let transfer: ArrayBuffer[] | undefined;
    try {
      switch (request.op) {
        case 'run': {
          transfer = [];
          reply = await run(request.id, request.task, transfer);
          break;
        }
        case 'open':
          reply = await open(request.id, request.init);
          break;
        case 'close':
          close(request.id);
          reply = null;
          break;
      }
    } catch (error) {
      reply = { error: error instanceof Error ? error.message : String(error) };
      transfer = undefined;
    }
    try {
      port?.postMessage(reply, transfer);
    } catch (error) {
      // The caller waits for exactly one answer per request, in order: it gets this one instead.
      port?.postMessage({ error: `the ORT thread could not send its answer: ${error instanceof Error ? error.message : String(error)}` });
    }
  }
  busy = false;
}

async function open(id: number, init: ThreadInit): Promise<ThreadReply> {
  if (sessions[id] !== undefined) throw new Error(`ORT thread: session id ${id} is already open`);
  const { session, info } = await openSession(init);
  sessions[id] = session;
  return info;
}

async function run(id: number, task: BatchTask, transfer: ArrayBuffer[]): Promise<ThreadReply> {
  const session = sessions[id];
  if (session === undefined) throw new Error(`ORT thread: no session ${id}`);
  return runTask(session, task, transfer);
}

function close(id: number): void {
  const session = sessions[id];
  sessions[id] = undefined;
  session?.release();
}
