// Number and table formatting shared by every report.

export const num = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : '–');
/** µs → ms with 2 decimals. */
export const ms = (us: number): string => num(us / 1000, 2);
export const ratio = (a: number, b: number, digits = 2): string => (Number.isFinite(a / b) ? `${(a / b).toFixed(digits)}×` : '–');
export const percent = (a: number, b: number): string => (Number.isFinite(a / b) ? `${((100 * a) / b).toFixed(0)} %` : '–');
export const errorText = (errors: Readonly<Record<string, number>>): string =>
  Object.entries(errors)
    .map(([code, n]) => `${code} ${n}`)
    .join(', ') || '0';

/** A Markdown table; the first `rightFrom` columns are left-aligned, the rest right-aligned. */
export function mdTable(headers: readonly string[], rows: readonly (readonly string[])[], rightFrom = 1): string {
  const align = headers.map((_, i) => (i < rightFrom ? '---' : '---:'));
  return [headers, align, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n') + '\n';
}

/** A plain-text table with padded columns (for the console). */
export function textTable(headers: readonly string[], rows: readonly (readonly string[])[], rightFrom = 1): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string =>
    r
      .map((cell, i) => (i < rightFrom ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n') + '\n';
}
