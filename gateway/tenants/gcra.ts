// The generic cell rate algorithm: a token bucket kept as one number, the
// theoretical arrival time (TAT) of the next request. A limit of r per
// second with a burst of b lets b arrive at once, then one every 1/r s. The
// same arithmetic runs in Redis (redis-quota.lua.ts) and in process
// (local-quota.ts). Times in ms.

export interface Rate {
  readonly perSecond: number;
  /** ≥ 1: how many units may arrive at once. */
  readonly burst: number;
}

export interface GcraAnswer {
  readonly allowed: boolean;
  /** The TAT to store when allowed; the current one when not. */
  readonly tat: number;
  /** ms until a request of this cost would be allowed; 0 when allowed. */
  readonly retryAfterMs: number;
}

export function gcra(stored: number | undefined, now: number, rate: Rate, cost: number): GcraAnswer {
  const interval = 1000 / rate.perSecond;
  const tat = stored === undefined || stored < now ? now : stored;
  const next = tat + cost * interval;
  // Not `next - burst * interval`: with a long interval that sum and
  // difference round, and a request that exactly fits its burst (cost =
  // burst) could be refused by a fraction of a µs.
  const allowAt = tat + (cost - rate.burst) * interval;
  if (allowAt > now) return { allowed: false, tat, retryAfterMs: allowAt - now };
  return { allowed: true, tat: next, retryAfterMs: 0 };
}

/**
 * The earliest time a request of `cost` could pass, knowing only that the
 * TAT is at least `tatAtLeast`. A TAT never moves back while it is ahead of
 * now, so a denial derived from a lower bound is certain.
 */
export function earliestAllowed(tatAtLeast: number, rate: Rate, cost: number): number {
  return tatAtLeast + (cost - rate.burst) * (1000 / rate.perSecond);
}
