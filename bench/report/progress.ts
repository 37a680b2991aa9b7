// Progress while a level runs: a bar that fills with the windows, redrawn
// in place on a terminal; one line per window otherwise (logs, CI).
import { type WindowResult } from '../load/windows.js';
import { ms, num } from './format.js';

const BAR = 20;

export class Progress {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  #drawn = false;

  constructor(out: NodeJS.WriteStream = process.stderr) {
    this.#out = out;
    this.#tty = out.isTTY === true;
  }

  /** A window of a level ended. */
  window(label: string, trial: number, maxTrials: number, w: WindowResult, stable: boolean): void {
    const filled = Math.round((BAR * (trial + 1)) / maxTrials);
    const errors = Object.values(w.errors).reduce((a, b) => a + b, 0);
    const text =
      `  [${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}] ${label} window ${trial + 1}/${maxTrials}: ` +
      `${num(w.inferPerSecond)} infer/s, p50 ${ms(w.latency.p50Us)} ms, p99 ${ms(w.latency.p99Us)} ms` +
      (errors > 0 ? `, ${errors} errors` : '') +
      (stable ? ' — stable' : '');
    this.#write(text);
  }

  /** A line that stays (a finished level, a phase). */
  line(text: string): void {
    if (this.#drawn) this.#out.write('\r\x1b[2K');
    this.#drawn = false;
    this.#out.write(text + '\n');
  }

  #write(text: string): void {
    if (this.#tty) {
      this.#out.write(`\r\x1b[2K${text.slice(0, (this.#out.columns || 120) - 1)}`);
      this.#drawn = true;
    } else {
      this.#out.write(text + '\n');
    }
  }
}
