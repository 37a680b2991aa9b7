import { readFileSync, readdirSync } from 'node:fs';

/**
 * Resident memory of `pid` and all its descendants (the gateway and its
 * workers), in bytes: the sum of their VmRSS. Pages shared between them
 * (the node binary, libraries) count once per process, so this is an upper
 * bound of what the tree holds. NaN without /proc.
 */
export function treeRssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
    let bytes = kb * 1024;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      for (const child of children ? children.split(' ') : []) {
        const rss = treeRssBytes(Number(child));
        if (Number.isFinite(rss)) bytes += rss; // a child that exited meanwhile counts 0
      }
    }
    return bytes;
  } catch {
    return NaN;
  }
}
