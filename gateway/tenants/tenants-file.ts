import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { KEY_HASH_PATTERN } from './key-hash.js';
import { ModelAccess } from './model-access.js';
import { type Tenant } from './tenant.js';

// The tenants file (--tenants FILE), YAML or JSON:
//
//   tenants:
//     city-app:
//       keys: [ "sha256:<64 hex digits>" ]        # fabriek tenants hash-key KEY
//       models: [ "mlp*", "add_sub" ]             # globs: * any run, ? one character
//       weight: 2                                 # share of the batcher (default 1)
//       default_priority: 1                       # level of requests without `priority`
//       highest_priority: 1                       # the highest level it may ask for
//       admin: false                              # may load/unload models and read/change the log settings
//       quotas:                                   # summed over every gateway; absent = none
//         requests_per_second: 100
//         request_burst: 100                      # default: one second's worth
//         concurrent_requests: 16
//         batch_items_per_second: 5000
//         batch_item_burst: 5000                  # default: one second's worth
//
// Every error names the file and the field, and never echoes a key.

export class TenantsFileError extends Error {
  override name = 'TenantsFileError';
}

const TENANT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const positive = z.number({ error: 'expected a number' }).positive({ error: 'expected a number > 0' }).finite();
const count = z.number({ error: 'expected an integer' }).int({ error: 'expected an integer' }).min(1, { error: 'expected an integer ≥ 1' });
const level = z
  .number({ error: 'expected an integer' })
  .int({ error: 'expected an integer' })
  .min(1, { error: 'expected a priority level ≥ 1 (1 is the highest)' });

const quotasSchema = z.strictObject({
  requests_per_second: positive.optional(),
  request_burst: count.optional(),
  concurrent_requests: count.optional(),
  batch_items_per_second: positive.optional(),
  batch_item_burst: count.optional(),
});

const tenantSchema = z.strictObject({
  keys: z
    .array(z.string({ error: 'expected a string' }).regex(KEY_HASH_PATTERN, { error: 'expected "sha256:" and 64 lowercase hex digits' }), {
      error: 'expected a list of key hashes',
    })
    .min(1, { error: 'expected at least one key hash' }),
  models: z
    .array(z.string({ error: 'expected a string' }).min(1, { error: 'expected a non-empty pattern' }), { error: 'expected a list of model patterns' })
    .min(1, { error: 'expected at least one model pattern ("*" for every model)' }),
  weight: positive.max(1_000_000, { error: 'expected a weight ≤ 1000000' }).default(1),
  default_priority: level.optional(),
  highest_priority: level.optional(),
  admin: z.boolean({ error: 'expected true or false' }).default(false),
  quotas: quotasSchema.default({}),
});

const fileSchema = z.strictObject({
  tenants: z.record(z.string(), tenantSchema, { error: 'expected a map of tenant name to tenant' }),
});

type TenantInput = z.infer<typeof tenantSchema>;

/** The path of an issue as `tenants.city-app.keys[0]`. */
function pathText(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out === '' ? '' : '.'}${String(p)}`;
  return out === '' ? '(top level)' : out;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const p of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

/** What came, for the message; never a value under `keys` (it might be a key in clear by mistake). */
function got(root: unknown, path: readonly PropertyKey[]): string {
  if (path.includes('keys')) return '';
  const v = valueAt(root, path);
  if (v === undefined) return ', got nothing';
  const text = JSON.stringify(v);
  return `, got ${text.length > 60 ? `${text.slice(0, 57)}...` : text}`;
}

function toTenant(name: string, t: TenantInput, totalWeight: number): Tenant {
  const q = t.quotas;
  return {
    name,
    models: new ModelAccess(t.models),
    quotas: {
      requestsPerSecond: q.requests_per_second,
      requestBurst: q.requests_per_second === undefined ? undefined : (q.request_burst ?? Math.max(1, Math.ceil(q.requests_per_second))),
      concurrentRequests: q.concurrent_requests,
      batchItemsPerSecond: q.batch_items_per_second,
      batchItemBurst:
        q.batch_items_per_second === undefined ? undefined : (q.batch_item_burst ?? Math.max(1, Math.ceil(q.batch_items_per_second))),
    },
    weight: t.weight,
    queueShare: t.weight / totalWeight,
    defaultPriority: t.default_priority,
    highestPriority: t.highest_priority,
    admin: t.admin,
  };
}

export interface TenantsConfig {
  readonly tenants: readonly Tenant[];
  /** Key hash (`sha256:…`) → tenant name. */
  readonly keyHashes: ReadonlyMap<string, string>;
}

/** Validates the parsed contents of a tenants file; `file` names it in errors. */
export function parseTenants(raw: unknown, file: string): TenantsConfig {
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.slice(0, 10).map((i) => {
      if (i.code === 'unrecognized_keys') return `${pathText(i.path)}: unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `'${k}'`).join(', ')}`;
      return `${pathText(i.path)}: ${i.message}${got(raw, i.path)}`;
    });
    throw new TenantsFileError(`${file}: ${lines.join('; ')}`);
  }
  const entries = Object.entries(parsed.data.tenants);
  if (entries.length === 0) throw new TenantsFileError(`${file}: tenants: expected at least one tenant`);
  const keyHashes = new Map<string, string>();
  for (const [name, t] of entries) {
    if (!TENANT_NAME.test(name)) {
      throw new TenantsFileError(`${file}: tenants.${name}: a tenant name has 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit`);
    }
    if (t.default_priority !== undefined && t.highest_priority !== undefined && t.default_priority < t.highest_priority) {
      throw new TenantsFileError(
        `${file}: tenants.${name}.default_priority: expected a level at or below highest_priority ${t.highest_priority} (1 is the highest), got ${t.default_priority}`,
      );
    }
    const q = t.quotas;
    if (q.request_burst !== undefined && q.requests_per_second === undefined) {
      throw new TenantsFileError(`${file}: tenants.${name}.quotas.request_burst: only meaningful with requests_per_second`);
    }
    if (q.batch_item_burst !== undefined && q.batch_items_per_second === undefined) {
      throw new TenantsFileError(`${file}: tenants.${name}.quotas.batch_item_burst: only meaningful with batch_items_per_second`);
    }
    t.keys.forEach((hash, i) => {
      const owner = keyHashes.get(hash);
      if (owner !== undefined) {
        throw new TenantsFileError(`${file}: tenants.${name}.keys[${i}]: the same key hash is already given to tenant '${owner}'`);
      }
      keyHashes.set(hash, name);
    });
  }
  const totalWeight = entries.reduce((sum, [, t]) => sum + t.weight, 0);
  return { tenants: entries.map(([name, t]) => toTenant(name, t, totalWeight)), keyHashes };
}

/** Reads and validates a tenants file: `.json` as JSON, anything else as YAML (a superset of JSON). */
export async function loadTenantsFile(file: string): Promise<TenantsConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new TenantsFileError(`${file}: cannot read the tenants file: ${(error as Error).message}`);
  }
  let raw: unknown;
  if (extname(file).toLowerCase() === '.json') {
    try {
      raw = JSON.parse(text);
    } catch (error) {
      throw new TenantsFileError(`${file}: not valid JSON: ${(error as Error).message}`);
    }
  } else {
    const doc = parseDocument(text, { uniqueKeys: true });
    const first = doc.errors[0];
    if (first) {
      const at = first.linePos?.[0];
      throw new TenantsFileError(`${file}${at ? `:${at.line}:${at.col}` : ''}: not valid YAML: ${first.message.split('\n')[0] ?? ''}`);
    }
    raw = doc.toJS();
  }
  return parseTenants(raw, file);
}
