// Model control modes, with tritonserver's flags:
//   none      load every model at start; the repository API may load and
//             unload at run time (Fabriek keeps that, where Triton refuses it)
//   explicit  load only the --load-model names at start (`*`: all); the rest
//             are listed, not loaded, until the repository API loads them
//   poll      load every model at start, then rescan the repository every
//             --repository-poll-secs and load, reload or unload what changed;
//             the repository API is refused, as in Triton, so the repository
//             on disk stays the one source of truth
//   on-demand load nothing at start; the first inference request for a
//             model loads it, and least recently used idle models are
//             unloaded to stay within --model-memory-budget per worker
//             (like KServe ModelMesh; beyond Triton)

import { type MemoryBudget, parseMemoryBudget } from './memory-budget.js';

export type ModelControl =
  | { readonly mode: 'none' }
  | { readonly mode: 'explicit'; readonly startup: ReadonlySet<string> | 'all' }
  | { readonly mode: 'poll'; readonly pollSecs: number }
  /** budget undefined: the default, half the host's memory shared by the local workers (known at start). */
  | { readonly mode: 'on-demand'; readonly budget: MemoryBudget | undefined };

export interface ControlFlags {
  readonly mode: string | undefined;
  readonly loadModel: readonly string[] | undefined;
  readonly pollSecs: string | undefined;
  readonly memoryBudget?: string | undefined;
}

/** Triton's default poll interval. */
export const DEFAULT_POLL_SECS = 15;

export function modelControlOf(flags: ControlFlags, usage: (message: string) => Error): ModelControl {
  const mode = flags.mode ?? 'none';
  if (mode !== 'none' && mode !== 'explicit' && mode !== 'poll' && mode !== 'on-demand') {
    throw usage(`--model-control-mode: expected none, explicit, poll or on-demand, got '${mode}'`);
  }
  if (flags.memoryBudget !== undefined && mode !== 'on-demand') {
    throw usage(`--model-memory-budget is used only with --model-control-mode on-demand (the mode is ${mode})`);
  }
  if (flags.loadModel !== undefined && mode !== 'explicit') {
    throw usage(`--load-model is used only with --model-control-mode explicit (the mode is ${mode}: every model loads at start)`);
  }
  if (flags.pollSecs !== undefined && mode !== 'poll') {
    throw usage(`--repository-poll-secs is used only with --model-control-mode poll (the mode is ${mode})`);
  }
  if (mode === 'explicit') {
    const names = flags.loadModel ?? [];
    for (const name of names) if (name === '') throw usage("--load-model: expected a model name or '*', got ''");
    return { mode, startup: names.includes('*') ? 'all' : new Set(names) };
  }
  if (mode === 'poll') {
    const raw = flags.pollSecs;
    const secs = raw === undefined ? DEFAULT_POLL_SECS : Number(raw);
    if (!Number.isInteger(secs) || secs < 1 || secs > 86_400) {
      throw usage(`--repository-poll-secs: expected an integer from 1 to 86400, got '${raw}'`);
    }
    return { mode, pollSecs: secs };
  }
  if (mode === 'on-demand') {
    if (flags.memoryBudget === undefined) return { mode, budget: undefined };
    const budget = parseMemoryBudget(flags.memoryBudget);
    if (typeof budget === 'string') throw usage(budget);
    return { mode, budget };
  }
  return { mode };
}

/** Should this model load when the server starts? */
export function loadsAtStart(control: ModelControl, model: string): boolean {
  if (control.mode === 'on-demand') return false;
  if (control.mode !== 'explicit') return true;
  return control.startup === 'all' || control.startup.has(model);
}
