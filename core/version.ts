import { readFileSync } from 'node:fs';

function readVersion(): string {
  // dist/core/version.js and core/version.ts both sit two levels below package.json.
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8'));
      if (typeof pkg === 'object' && pkg !== null && (pkg as { name?: unknown }).name === 'fabriek') {
        const v = (pkg as { version?: unknown }).version;
        if (typeof v === 'string') return v;
      }
    } catch {
      // try the next location
    }
  }
  return '0.0.0';
}

export const FABRIEK_VERSION = readVersion();
