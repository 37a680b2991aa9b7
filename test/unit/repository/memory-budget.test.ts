import { describe, expect, it } from 'vitest';
import { defaultMemoryBudget, formatBytes, modelCost, parseMemoryBudget, SESSION_OVERHEAD_BYTES } from '../../../gateway/repository/memory-budget.js';

describe('--model-memory-budget', () => {
  it('takes bytes with binary or decimal units, and a count of models', () => {
    expect(parseMemoryBudget('4GiB')).toEqual({ unit: 'bytes', limit: 4 * 2 ** 30 });
    expect(parseMemoryBudget('512MiB')).toEqual({ unit: 'bytes', limit: 512 * 2 ** 20 });
    expect(parseMemoryBudget('1.5gib')).toEqual({ unit: 'bytes', limit: 1.5 * 2 ** 30 });
    expect(parseMemoryBudget('2GB')).toEqual({ unit: 'bytes', limit: 2e9 });
    expect(parseMemoryBudget('100models')).toEqual({ unit: 'models', limit: 100 });
  });

  it('refuses a bare number, an unknown unit and values out of range, with the forms it takes', () => {
    expect(parseMemoryBudget('4000')).toBe(
      "--model-memory-budget: expected a size with a unit (4GiB, 512MiB, 2GB) or a count of models (100models), got '4000': a bare number has no unit; write 4000MiB, 4000GiB or 4000models",
    );
    expect(parseMemoryBudget('4 parsecs')).toMatch(/^--model-memory-budget: expected a size with a unit .* got '4 parsecs'$/);
    expect(parseMemoryBudget('0models')).toBe("--model-memory-budget: expected from 1 to 1000000 models, got '0models'");
    expect(parseMemoryBudget('1.5models')).toMatch(/expected from 1 to 1000000 models/);
    expect(parseMemoryBudget('10KiB')).toBe("--model-memory-budget: expected from 1MiB to 1PiB, got '10KiB'");
    expect(parseMemoryBudget('')).toMatch(/got ''$/);
  });

  it('defaults to half the host memory shared by the workers', () => {
    expect(defaultMemoryBudget(16 * 2 ** 30, 2)).toEqual({ unit: 'bytes', limit: 4 * 2 ** 30 });
    expect(defaultMemoryBudget(16 * 2 ** 30, 0)).toEqual({ unit: 'bytes', limit: 8 * 2 ** 30 });
  });

  it('costs a model its file plus the session overhead, or 1 when counting models', () => {
    expect(modelCost({ unit: 'bytes', limit: 1 }, 1000)).toBe(1000 + SESSION_OVERHEAD_BYTES);
    expect(modelCost({ unit: 'models', limit: 1 }, 1000)).toBe(1);
  });

  it('formats bytes for messages', () => {
    expect([300, 2048, 12 * 2 ** 20, 1.5 * 2 ** 30].map(formatBytes)).toEqual(['300 B', '2 KiB', '12 MiB', '1.5 GiB']);
  });
});
