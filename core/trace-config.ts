// Tracing configuration in tritonserver's --trace-config syntax:
//   --trace-config mode=opentelemetry
//   --trace-config opentelemetry,url=http://host:4318/v1/traces
//   --trace-config rate=N          (Triton: sample 1 request in N; 0 = none)
//   --trace-config fraction=F      (Fabriek: sample a fraction in [0, 1])
// A url alone turns tracing on in opentelemetry mode. Without a url flag the
// endpoint comes from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or from
// OTEL_EXPORTER_OTLP_ENDPOINT (the collector's base URL; the SDK convention
// appends /v1/traces); the environment alone never turns tracing on, so an
// injected variable costs a server that did not ask for traces nothing.
// Pure: no SDK is loaded here, so a server without tracing never imports one.

export interface TraceConfig {
  /** The OTLP/HTTP protobuf traces endpoint. */
  readonly url: string;
  /** Fraction of new traces sampled, [0, 1]. */
  readonly ratio: number;
}

export class TraceConfigError extends Error {
  override name = 'TraceConfigError';
}

export const TRACE_CONFIG_USAGE =
  '--trace-config mode=opentelemetry | opentelemetry,url=URL | rate=N (1 in N, 0 = none) | fraction=F (0..1); repeatable';

const DEFAULT_URL = 'http://localhost:4318/v1/traces';

function checkUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TraceConfigError(`url '${url}' is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new TraceConfigError(`url '${url}' is not http(s)`);
  return url;
}

/** Parses every --trace-config value; undefined when tracing is off. `env` is process.env in the server. */
export function parseTraceConfig(values: readonly string[], env: Readonly<Record<string, string | undefined>>): TraceConfig | undefined {
  let mode: string | undefined;
  let url: string | undefined;
  let ratio = 1;
  for (const value of values) {
    // "opentelemetry,url=…": Triton's per-mode setting; the prefix names the mode.
    let setting = value;
    const comma = value.indexOf(',');
    if (comma >= 0) {
      const prefix = value.slice(0, comma);
      if (prefix !== 'opentelemetry') throw new TraceConfigError(`'${value}': only the opentelemetry mode has settings (got '${prefix}')`);
      mode ??= 'opentelemetry';
      setting = value.slice(comma + 1);
    }
    const eq = setting.indexOf('=');
    if (eq <= 0) throw new TraceConfigError(`'${value}' is not key=value`);
    const key = setting.slice(0, eq);
    const v = setting.slice(eq + 1);
    switch (key) {
      case 'mode':
        if (v !== 'opentelemetry') throw new TraceConfigError(`mode '${v}' is not supported (only opentelemetry)`);
        mode = v;
        break;
      case 'url':
        url = checkUrl(v);
        break;
      case 'rate': {
        const n = Number(v);
        if (v === '' || !Number.isSafeInteger(n) || n < 0) throw new TraceConfigError(`rate '${v}' is not an integer ≥ 0`);
        ratio = n === 0 ? 0 : 1 / n;
        break;
      }
      case 'fraction': {
        const f = Number(v);
        if (v === '' || !Number.isFinite(f) || f < 0 || f > 1) throw new TraceConfigError(`fraction '${v}' is not a number in [0, 1]`);
        ratio = f;
        break;
      }
      default:
        throw new TraceConfigError(`unknown setting '${key}'`);
    }
  }
  if (mode === undefined && url === undefined) {
    if (values.length > 0) throw new TraceConfigError('settings given without mode=opentelemetry or a url');
    return undefined;
  }
  const envBase = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (env.OTEL_EXPORTER_OTLP_ENDPOINT ? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, '')}/v1/traces` : undefined);
  if (url === undefined && envBase !== undefined && envBase !== '') url = checkUrl(envBase);
  return { url: url ?? DEFAULT_URL, ratio };
}
