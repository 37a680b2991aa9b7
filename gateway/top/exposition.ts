// Reads Prometheus's text exposition format (what /metrics serves) into
// samples. Only what `fabriek top` needs: sample lines with their labels and
// value; comments, HELP and TYPE lines are skipped. Label values may hold
// escaped quotes, backslashes and newlines, as the format allows.

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const sample = parseLine(line);
    if (sample) samples.push(sample);
  }
  return samples;
}

/** One sample line; undefined for a line that is not one (skipped, never fatal: the server may add formats). */
function parseLine(line: string): Sample | undefined {
  const name = NAME.exec(line)?.[0];
  if (name === undefined) return undefined;
  let rest = line.slice(name.length);
  const labels: Record<string, string> = {};
  if (rest.startsWith('{')) {
    rest = rest.slice(1);
    for (;;) {
      rest = rest.trimStart();
      if (rest.startsWith('}')) {
        rest = rest.slice(1);
        break;
      }
      const key = LABEL_NAME.exec(rest)?.[0];
      if (key === undefined || rest[key.length] !== '=' || rest[key.length + 1] !== '"') return undefined;
      rest = rest.slice(key.length + 2);
      let value = '';
      let i = 0;
      for (; i < rest.length && rest[i] !== '"'; i++) {
        const ch = rest[i] as string;
        if (ch !== '\\') value += ch;
        else {
          const next = rest[++i];
          value += next === 'n' ? '\n' : (next ?? '');
        }
      }
      if (i >= rest.length) return undefined;
      labels[key] = value;
      rest = rest.slice(i + 1).trimStart();
      if (rest.startsWith(',')) rest = rest.slice(1);
    }
  }
  const [valueText] = rest.trim().split(/\s+/);
  if (valueText === undefined || valueText === '') return undefined;
  const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
  return Number.isNaN(value) && valueText !== 'NaN' ? undefined : { name, labels, value };
}
