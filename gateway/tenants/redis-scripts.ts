import { createHash } from 'node:crypto';
import { type Cluster, type Redis } from 'ioredis';

// The Lua scripts of the shared quotas. Each runs atomically in Redis, and
// times come from Redis (TIME), so gateways' clocks never meet.

/** Names of the quota keys. */
export interface QuotaKeys {
  tenant(tenant: string, what: 'requests' | 'items' | 'inflight'): string;
  readonly gateways: string;
}

/**
 * Every quota key carries the hash tag {<namespace>:quota}: a script may only
 * touch keys of one slot on Redis Cluster, and the acquire script reads the
 * tenant's keys together with the gateways' lease set. One slot for all
 * quota keys is the price; they are a few small keys per tenant.
 */
export function quotaKeys(namespace = 'fabriek'): QuotaKeys {
  const tag = `{${namespace}:quota}`;
  return { tenant: (tenant, what) => `${tag}:${tenant}:${what}`, gateways: `${tag}:gateways` };
}

/** A script run by its SHA1, loaded again after a Redis restart flushed it (NOSCRIPT). */
export class LuaScript {
  readonly sha: string;

  constructor(
    readonly name: string,
    readonly source: string,
    readonly keyCount: number,
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(redis: Redis | Cluster, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, this.keyCount, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return redis.eval(this.source, this.keyCount, ...keys, ...args);
    }
  }
}

/**
 * KEYS[1] request-rate TAT (ms, string), KEYS[2] item-rate TAT,
 * KEYS[3] in-flight hash (gateway id → requests), KEYS[4] live gateways (zset: id → lease end, ms).
 * ARGV[1] gateway id, ARGV[2] request interval ms (0 = no limit), ARGV[3] request burst,
 * ARGV[4] item interval ms (0 = no limit), ARGV[5] item burst, ARGV[6] items, ARGV[7] concurrency limit (0 = none).
 * Returns { 1 granted | 0 refused, limit that refused ('' when granted), retry-after ms,
 *           request TAT − now, item TAT − now (after the grant; '' = no such limit), requests in flight }.
 * Counts of gateways whose lease ended (they died holding them) are dropped on the way.
 */
export const ACQUIRE = new LuaScript(
  'acquire',
  `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function gcra(key, interval, burst, cost)
  if interval <= 0 then return true, 0, nil, nil end
  local tat = tonumber(redis.call('GET', key))
  if tat == nil or tat < now then tat = now end
  local nxt = tat + cost * interval
  local allow_at = tat + (cost - burst) * interval
  if allow_at > now then return false, allow_at - now, tat, nil end
  return true, 0, tat, nxt
end
local ok1, wait1, tat1, new1 = gcra(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), 1)
local ok2, wait2, tat2, new2 = gcra(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
local limit = tonumber(ARGV[7])
local inflight = 0
if limit > 0 then
  local fields = redis.call('HGETALL', KEYS[3])
  for i = 1, #fields, 2 do
    local gw = fields[i]
    local lease = tonumber(redis.call('ZSCORE', KEYS[4], gw))
    if gw ~= ARGV[1] and (lease == nil or lease < now) then
      redis.call('HDEL', KEYS[3], gw)
    else
      inflight = inflight + tonumber(fields[i + 1])
    end
  end
end
local ok3 = limit <= 0 or inflight < limit
local function lead(tat) if tat == nil then return '' end return tostring(tat - now) end
if not (ok1 and ok2 and ok3) then
  local which, wait = '', 0
  if not ok1 then which, wait = 'requests', wait1 end
  if not ok2 and wait2 > wait then which, wait = 'items', wait2 end
  if which == '' then which = 'concurrency' end
  return { 0, which, tostring(wait), lead(tat1), lead(tat2), inflight }
end
if new1 ~= nil then redis.call('SET', KEYS[1], tostring(new1), 'PX', math.max(1, math.ceil(new1 - now))) end
if new2 ~= nil then redis.call('SET', KEYS[2], tostring(new2), 'PX', math.max(1, math.ceil(new2 - now))) end
if limit > 0 then
  redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
  inflight = inflight + 1
end
return { 1, '', '0', lead(new1), lead(new2), inflight }
`,
  4,
);

/** KEYS[1] in-flight hash; ARGV[1] gateway id. One request of this gateway ended; never below 0. */
export const RELEASE = new LuaScript(
  'release',
  `
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
`,
  1,
);

/**
 * KEYS[1] live gateways (zset: id → lease end, ms); ARGV[1] gateway id, ARGV[2] lease ms.
 * Renews this gateway's lease, drops ended ones, returns how many gateways are live.
 */
export const HEARTBEAT = new LuaScript(
  'heartbeat',
  `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
return redis.call('ZCARD', KEYS[1])
`,
  1,
);
