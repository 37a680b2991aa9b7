// What both many-models scenarios ask of a model: its answer, checked.
import { constantOf, MANY_MODELS_WIDTH } from '../../models/build/many-models.js';

/** POSTs JSON and returns the JSON answered; an HTTP error status throws, with the start of its body. */
export async function post(url: string, body: unknown): Promise<unknown> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}: ${text.slice(0, 200)}`);
  return JSON.parse(text) as unknown;
}

/** Calls model i once and says what was wrong ('' when its answer is x + c_i). */
export async function checkModel(base: string, name: string, i: number): Promise<string> {
  const x = Array.from({ length: MANY_MODELS_WIDTH }, (_, k) => k);
  const answer = (await post(`${base}/v2/models/${name}/infer`, {
    inputs: [{ name: 'x', shape: [1, MANY_MODELS_WIDTH], datatype: 'FP32', data: x }],
  })) as { outputs?: Array<{ data?: number[] }> };
  const got = answer.outputs?.[0]?.data ?? [];
  const want = x.map((v) => v + constantOf(i));
  return got.length === want.length && got.every((v, k) => v === want[k]) ? '' : `${name}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`;
}
