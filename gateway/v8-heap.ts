import { setFlagsFromString } from 'node:v8';

// V8's allocation-site pretenuring, off in the gateway.
//
// Why: V8 allocates an object straight into the old generation once most
// objects from the same place in the code survived a scavenge. A gateway's
// objects live exactly as long as their request, a few ms, but a scavenge
// always finds the ones in flight. On Node 24 (V8 13) that was enough: one
// site after another was pretenured (grpc-js's calls, Node's HTTP/2 streams,
// the decoded requests), and an old object that dies stays until the next
// full collection, keeping every young object it points to alive through
// each scavenge. So those children survived too, their sites were pretenured
// in turn, and each scavenge kept 9–11 MB of finished calls, paused 9–16 ms
// and fed a full collection every few seconds. With pretenuring off, 0.5 MB
// and about 1 ms (docs/performance.md, "Pretenuring on Node 24"). Node 20
// pretenured 4 sites there and never cascaded; the flag costs it nothing.
//
// Set at run time, before the first request, not on the command line: the
// `fabriek` command is a script, and Node takes no V8 flags from NODE_OPTIONS
// but its own short list. V8 reads the flag at every scavenge and wherever it
// compiles an allocation, so the gateway's code never starts pretenuring.

const FLAG = 'allocation-site-pretenuring';

/**
 * Turns V8's allocation-site pretenuring off for this process, unless Node
 * was started with `--allocation-site-pretenuring` or its negation (the
 * operator's choice stands). Returns whether it changed the flag.
 */
export function avoidPretenuring(execArgv: readonly string[] = process.execArgv): boolean {
  // V8 takes '_' for '-' in a flag's name.
  const given = execArgv.some((a) => {
    const name = a.replaceAll('_', '-');
    return name === `--${FLAG}` || name === `--no-${FLAG}`;
  });
  if (given) return false;
  setFlagsFromString(`--no-${FLAG}`);
  return true;
}
