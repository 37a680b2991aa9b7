// Throughput against p99 latency (or any two quantities, see ChartAxes),
// one line per series, as a hand-written SVG (no chart library): each point
// is a load level, in load order.

export interface ChartPoint {
  /** infer/s (or the x axis of ChartAxes) */
  readonly x: number;
  /** p99 latency, ms (or the y axis of ChartAxes) */
  readonly y: number;
  /** e.g. "c=64" */
  readonly label: string;
}

export interface ChartSeries {
  readonly name: string;
  readonly points: readonly ChartPoint[];
}

export interface ChartAxes {
  /** Axis titles, with their units; the units name the values in each point's tooltip. */
  readonly x: string;
  readonly y: string;
  readonly xUnit: string;
  readonly yUnit: string;
}

const THROUGHPUT_LATENCY: ChartAxes = { x: 'throughput (infer/s)', y: 'p99 latency (ms)', xUnit: 'infer/s', yUnit: 'ms' };

const W = 760;
const H = 460;
const M = { left: 70, right: 20, top: 40, bottom: 55 };
const LEGEND_WIDTH = 200;
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (n: number): string => (Math.abs(n) >= 100 || Number.isInteger(n) ? String(Math.round(n)) : n.toPrecision(2));

/** Tick values from 0 to at least `max`: steps of 1, 2 or 5 × 10^k, about `count` of them. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0, 1];
  const raw = max / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * pow >= raw) ?? 10) * pow;
  const ticks: number[] = [];
  for (let v = 0; v < max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

export function throughputLatencySvg(series: readonly ChartSeries[], title: string, axes: ChartAxes = THROUGHPUT_LATENCY): string {
  const finite = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const xTicks = niceTicks(Math.max(1, ...finite.map((p) => p.x)));
  const yTicks = niceTicks(Math.max(0.001, ...finite.map((p) => p.y)));
  const xMax = xTicks[xTicks.length - 1] ?? 1;
  const yMax = yTicks[yTicks.length - 1] ?? 1;
  const px = (x: number): number => Math.round((M.left + (x / xMax) * (W - M.left - M.right)) * 10) / 10;
  const py = (y: number): number => Math.round((H - M.bottom - (y / yMax) * (H - M.top - M.bottom)) * 10) / 10;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
  ];
  for (const t of xTicks) {
    out.push(`<line x1="${px(t)}" y1="${M.top}" x2="${px(t)}" y2="${H - M.bottom}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${px(t)}" y="${H - M.bottom + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  for (const t of yTicks) {
    out.push(`<line x1="${M.left}" y1="${py(t)}" x2="${W - M.right}" y2="${py(t)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${M.left - 6}" y="${py(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  }
  out.push(`<line x1="${M.left}" y1="${H - M.bottom}" x2="${W - M.right}" y2="${H - M.bottom}" stroke="black"/>`);
  out.push(`<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${H - M.bottom}" stroke="black"/>`);
  out.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - 14}" text-anchor="middle">${esc(axes.x)}</text>`);
  out.push(`<text transform="translate(18 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(axes.y)}</text>`);
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length] ?? 'black';
    const pts = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) {
      out.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="4" fill="${colour}"><title>${esc(axes === THROUGHPUT_LATENCY ? `${s.name} ${p.label}: ${fmt(p.x)} infer/s, p99 ${fmt(p.y)} ms` : `${s.name} ${p.label}: ${fmt(p.x)} ${axes.xUnit}, ${fmt(p.y)} ${axes.yUnit}`)}</title></circle>`);
      out.push(`<text x="${(px(p.x) + 6).toFixed(1)}" y="${(py(p.y) - 6).toFixed(1)}" font-size="10" fill="${colour}">${esc(p.label)}</text>`);
    }
    // Legend top right: high throughput at high latency is the corner data visits least.
    const ly = M.top + 8 + i * 18;
    const lx = W - M.right - LEGEND_WIDTH;
    out.push(`<rect x="${lx}" y="${ly - 9}" width="14" height="10" fill="${colour}"/>`);
    out.push(`<text x="${lx + 20}" y="${ly}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
