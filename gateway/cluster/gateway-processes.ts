// How many gateway processes `fabriek serve` runs (--gateway-processes).
// One gateway process saturates one core with gRPC/HTTP/2 framing on a busy
// host; a GPU node's other cores idle. The default (auto) keeps one process
// on small hosts, where a second process only competes with the workers for
// the same cores, and on larger ones runs one gateway per four cores, at
// most eight (each gateway has its own repository scan, batchers and memory).

/** Gateway processes at most, whatever the flag says. */
export const MAX_GATEWAY_PROCESSES = 64;

/** auto: 1 below 8 cores, else min(8, floor(cores / 4)). */
export function defaultGatewayProcesses(cores: number): number {
  if (!Number.isFinite(cores) || cores < 8) return 1;
  return Math.min(8, Math.floor(cores / 4));
}

/** The flag's value (a count, or 'auto') resolved against the host's cores. */
export function resolveGatewayProcesses(flag: number | 'auto', cores: number): number {
  return flag === 'auto' ? defaultGatewayProcesses(cores) : flag;
}
