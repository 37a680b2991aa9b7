// Triton's compression of infer answers: gzip or deflate when the request's
// Accept-Encoding takes one. Pure choice here; the server compresses.

/** Answers shorter than this go uncompressed whatever the client takes: compressing them costs more than it saves. */
export const MIN_COMPRESSED_BYTES = 1024;

/**
 * Nor longer than this: fetch asks for gzip by default, and a large tensor
 * answer (binary floats shrink by a tenth or so) would cost seconds of CPU
 * and a second copy of itself to compress.
 */
export const MAX_COMPRESSED_BYTES = 8 << 20;

export type AnswerEncoding = 'gzip' | 'deflate';

/**
 * The encoding to answer in, from an Accept-Encoding header: gzip or deflate,
 * the one with the higher q (gzip on a tie; `*` takes gzip), none taken at
 * q=0; undefined for none of them (identity).
 */
export function answerEncoding(header: string | undefined): AnswerEncoding | undefined {
  if (header === undefined || header === '') return undefined;
  let best: AnswerEncoding | undefined;
  let bestQ = 0;
  let star: number | undefined;
  const explicit = new Map<string, number>();
  for (const part of header.split(',')) {
    const [rawName, ...params] = part.split(';');
    const name = (rawName ?? '').trim().toLowerCase();
    let q = 1;
    for (const p of params) {
      const [k, v] = p.split('=');
      if ((k ?? '').trim().toLowerCase() === 'q') {
        const n = Number((v ?? '').trim());
        q = Number.isFinite(n) && n >= 0 && n <= 1 ? n : 0;
      }
    }
    if (name === '*') star = q;
    else explicit.set(name === 'x-gzip' ? 'gzip' : name, q);
  }
  for (const encoding of ['gzip', 'deflate'] as const) {
    const q = explicit.get(encoding) ?? star ?? 0;
    if (q > bestQ) {
      best = encoding;
      bestQ = q;
    }
  }
  return best;
}
