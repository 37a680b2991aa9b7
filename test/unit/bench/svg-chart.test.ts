import { describe, expect, it } from 'vitest';
import { niceTicks, throughputLatencySvg } from '../../../bench/report/svg-chart.js';

describe('throughput/latency chart', () => {
  it('picks 1-2-5 ticks that cover the data', () => {
    expect(niceTicks(1000)).toEqual([0, 200, 400, 600, 800, 1000]);
    expect(niceTicks(7140)).toEqual([0, 2000, 4000, 6000, 8000]);
    expect(niceTicks(0.37)).toEqual([0, 0.1, 0.2, 0.3, 0.4]);
    expect(niceTicks(0)).toEqual([0, 1]);
  });

  it('draws one line and labelled points per series, escaping names', () => {
    const svg = throughputLatencySvg(
      [
        { name: 'fabriek <b>', points: [{ x: 100, y: 2, label: 'c=1' }, { x: 800, y: 50, label: 'c=64' }] },
        { name: 'grpc-echo', points: [{ x: 7000, y: 20, label: 'c=64' }, { x: NaN, y: 1, label: 'bad' }] },
      ],
      'A & B',
    );
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<polyline /g)).toHaveLength(1); // a single finite point draws no line
    expect(svg.match(/<circle /g)).toHaveLength(3);
    expect(svg).toContain('fabriek &lt;b&gt;');
    expect(svg).toContain('A &amp; B');
    expect(svg).not.toContain('NaN');
  });
});
