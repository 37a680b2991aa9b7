// CPU time of a process tree from /proc: the bench measures the server with
// it, and the gateway reports its own tree's utilisation to load balancers.
import { readFileSync, readdirSync } from 'node:fs';

const CLOCK_TICKS = 100; // USER_HZ on every Linux we run on

/** User + system CPU seconds of `pid` and all its descendants (a gateway and its workers); NaN without /proc. */
export function treeCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    let ticks = Number(fields[11]) + Number(fields[12]);
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      let children = '';
      try {
        children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      } catch {
        continue; // the thread ended since the listing
      }
      for (const child of children ? children.split(' ') : []) {
        const seconds = treeCpuSeconds(Number(child));
        if (Number.isFinite(seconds)) ticks += seconds * CLOCK_TICKS; // else the child exited since
      }
    }
    return ticks / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}

/** Busy CPU seconds of the whole machine (all processes), from /proc/stat; NaN without it. */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return ((user ?? NaN) + (nice ?? NaN) + (system ?? NaN) + (irq ?? NaN) + (softirq ?? NaN) + (steal ?? 0)) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}
