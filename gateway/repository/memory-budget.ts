// --model-memory-budget (--model-control-mode on-demand): how much of a
// worker the models loaded on demand may take, in bytes (`4GiB`, `512MiB`)
// or as a count of models (`100models`). A bare number is refused: "4000"
// could mean bytes, MiB or models, and a wrong guess either evicts all the
// time or never.

export type MemoryBudget = { readonly unit: 'bytes'; readonly limit: number } | { readonly unit: 'models'; readonly limit: number };

const UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** What a usage error says the flag takes. */
export const BUDGET_FORMS = 'a size with a unit (4GiB, 512MiB, 2GB) or a count of models (100models)';

/** Parses the flag's value; a message (for a usage error) when it is not one of BUDGET_FORMS. */
export function parseMemoryBudget(raw: string): MemoryBudget | string {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(raw);
  const bad = `--model-memory-budget: expected ${BUDGET_FORMS}, got '${raw}'`;
  if (!m) return bad;
  const value = Number(m[1]);
  const unit = (m[2] ?? '').toLowerCase();
  if (unit === '') return `${bad}: a bare number has no unit; write ${m[1]}MiB, ${m[1]}GiB or ${m[1]}models`;
  if (unit === 'models' || unit === 'model') {
    if (!Number.isInteger(value) || value < 1 || value > 1_000_000) return `--model-memory-budget: expected from 1 to 1000000 models, got '${raw}'`;
    return { unit: 'models', limit: value };
  }
  const scale = UNITS[unit];
  if (scale === undefined) return bad;
  const bytes = Math.floor(value * scale);
  if (bytes < 2 ** 20 || bytes > 2 ** 50) return `--model-memory-budget: expected from 1MiB to 1PiB, got '${raw}'`;
  return { unit: 'bytes', limit: bytes };
}

/**
 * The default: half of the host's memory, shared between the local workers
 * (the other half is the gateway's, the OS's and ONNX Runtime's arenas).
 */
export function defaultMemoryBudget(totalMemoryBytes: number, workers: number): MemoryBudget {
  return { unit: 'bytes', limit: Math.floor(totalMemoryBytes / 2 / Math.max(1, workers)) };
}

/** `1.5 GiB`, `12 MiB`, `300 B`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${i === 0 ? value : Number(value.toFixed(value < 10 ? 2 : 1))} ${units[i]}`;
}

/** An amount in the budget's unit, for messages: `12 MiB` or `3 models`. */
export function formatAmount(budget: MemoryBudget, amount: number): string {
  return budget.unit === 'bytes' ? formatBytes(amount) : `${amount} model${amount === 1 ? '' : 's'}`;
}

/**
 * Memory a loaded model takes beyond its .onnx file: measured with
 * `fabriek bench many-models --on-demand --count 1000` (models y = x + c of
 * 0.2 KiB each): the process tree held 430 MiB with all 1,000 loaded and 300
 * MiB with 10, about 130 KiB a model (session, gateway-side scheduler and
 * statistics). Rounded up to leave a margin; a model's estimated size is its
 * file plus this.
 */
export const SESSION_OVERHEAD_BYTES = 256 * 1024;

/** A model's cost in the budget's unit: 1 when counting models, else file bytes + overhead. */
export function modelCost(budget: MemoryBudget, fileBytes: number): number {
  return budget.unit === 'models' ? 1 : fileBytes + SESSION_OVERHEAD_BYTES;
}
