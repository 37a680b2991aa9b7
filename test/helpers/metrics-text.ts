/** The value of one Prometheus sample line, e.g. `nv_inference_count{model="a",version="1"}`; undefined when absent. */
export function sampleValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
