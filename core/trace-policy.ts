// What the gateway samples now, and Triton's trace extension over it
// (TraceSetting over gRPC, GET/POST /v2/trace/setting): an operator samples
// more while looking into something, or turns tracing off, without a
// restart. Fabriek traces in OpenTelemetry mode only, to the OTLP endpoint
// of --trace-config: trace_level is OFF or TIMESTAMPS (spans with their
// times; never tensor contents), trace_rate samples 1 request in N (0 =
// none), trace_count the number of traces still to sample (-1 = no limit);
// trace_file and log_frequency, which are Triton's own trace files, and
// other modes are refused with the reason. The settings are the server's:
// per-model ones are refused. Pure: core/tracing.ts samples by it.
import { failedPrecondition, invalidArgument } from './errors.js';

export interface TracePolicy {
  readonly on: boolean;
  /** Fraction of new traces sampled, [0, 1]. */
  readonly ratio: number;
  /** Traces still to sample; -1 = no limit. */
  readonly remaining: number;
}

/** The settings as Triton names them: strings, and trace_level a list. */
export interface TraceSettings {
  readonly trace_level: readonly string[];
  readonly trace_rate: string;
  readonly trace_count: string;
  readonly log_frequency: string;
  readonly trace_file: string;
  readonly trace_mode: string;
}

const NAMES: readonly (keyof TraceSettings)[] = ['trace_level', 'trace_rate', 'trace_count', 'log_frequency', 'trace_file', 'trace_mode'];

/** 1 in how many: a fraction from --trace-config fraction=F shows as its nearest whole rate. */
const rateOf = (ratio: number): string => (ratio > 0 ? String(Math.max(1, Math.round(1 / ratio))) : '0');

export function traceSettingsOf(policy: TracePolicy): TraceSettings {
  return {
    trace_level: [policy.on ? 'TIMESTAMPS' : 'OFF'],
    trace_rate: rateOf(policy.ratio),
    trace_count: String(policy.remaining),
    log_frequency: '0',
    trace_file: '',
    trace_mode: 'opentelemetry',
  };
}

/** A setting's value as a client sent it: a string, a list of strings (JSON, or the proto's repeated value). */
function strings(name: string, value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (typeof value === 'number' && Number.isFinite(value)) return [String(value)];
  if (Array.isArray(value) && value.every((v): v is string => typeof v === 'string')) return value;
  if (value === null) throw invalidArgument(`trace setting '${name}': null clears a model's own setting, and Fabriek's trace settings are the server's only`);
  throw invalidArgument(`trace setting '${name}': expected a string or a list of strings, got ${JSON.stringify(value)}`);
}

function one(name: string, value: unknown): string {
  const list = strings(name, value);
  if (list.length !== 1) throw invalidArgument(`trace setting '${name}': expected one value, got ${list.length}`);
  return list[0] as string;
}

function integer(name: string, value: unknown, least: number): number {
  const text = one(name, value).trim();
  const n = /^-?\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < least) throw invalidArgument(`trace setting '${name}': expected an integer ≥ ${least}, got ${JSON.stringify(text)}`);
  return n;
}

/**
 * The policy that `changes` make of `policy`; throws INVALID_ARGUMENT naming
 * the setting for an unknown name or a value Fabriek cannot trace by, and
 * FAILED_PRECONDITION for turning tracing on in a gateway started without it
 * (`configured` false: no OTLP endpoint, no SDK loaded).
 */
export function policyAfter(policy: TracePolicy, changes: ReadonlyMap<string, unknown>, configured: boolean): TracePolicy {
  let { on, ratio, remaining } = policy;
  for (const [name, value] of changes) {
    switch (name as keyof TraceSettings) {
      case 'trace_level': {
        const levels = strings(name, value).map((l) => l.toUpperCase());
        if (levels.includes('TENSORS')) throw invalidArgument("trace setting 'trace_level': Fabriek traces spans with their times (TIMESTAMPS), never tensor contents (TENSORS)");
        const unknown = levels.find((l) => l !== 'OFF' && l !== 'TIMESTAMPS');
        if (unknown !== undefined || levels.length === 0) throw invalidArgument(`trace setting 'trace_level': expected OFF or TIMESTAMPS, got ${JSON.stringify(value)}`);
        if (levels.includes('OFF') && levels.includes('TIMESTAMPS')) throw invalidArgument("trace setting 'trace_level': OFF and TIMESTAMPS at once");
        on = levels.includes('TIMESTAMPS');
        break;
      }
      case 'trace_rate': {
        const rate = integer(name, value, 0);
        ratio = rate === 0 ? 0 : 1 / rate;
        break;
      }
      case 'trace_count':
        remaining = integer(name, value, -1);
        break;
      case 'log_frequency':
        if (integer(name, value, 0) !== 0) throw invalidArgument("trace setting 'log_frequency': Fabriek sends spans to the OTLP endpoint as they end; it writes no trace files");
        break;
      case 'trace_file':
        if (one(name, value) !== '') throw invalidArgument("trace setting 'trace_file': Fabriek sends spans to the OTLP endpoint of --trace-config; it writes no trace files");
        break;
      case 'trace_mode':
        if (one(name, value) !== 'opentelemetry') throw invalidArgument(`trace setting 'trace_mode': Fabriek traces in opentelemetry mode only, got ${JSON.stringify(value)}`);
        break;
      default:
        throw invalidArgument(`unknown trace setting '${name}': expected one of ${NAMES.join(', ')}`);
    }
  }
  if (on && !configured) {
    throw failedPrecondition('tracing is not configured: start the gateway with --trace-config mode=opentelemetry (and opentelemetry,url=URL for the OTLP endpoint) to trace');
  }
  return { on, ratio, remaining };
}

/** Fabriek's trace settings are the server's: a model's own are refused (both protocols say so alike). */
export const PER_MODEL_TRACE_SETTINGS = "per-model trace settings: Fabriek's trace settings are the server's, for every model; ask without a model name";

/** What the protocols ask: the settings in force, and a change (in force in every gateway process once it resolves). */
export interface TraceControl {
  settings(): TraceSettings;
  update(changes: ReadonlyMap<string, unknown>): Promise<TraceSettings>;
}
