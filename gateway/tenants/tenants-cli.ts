import { randomBytes } from 'node:crypto';
import { hashKey, newKey } from './key-hash.js';
import { loadTenantsFile, TenantsFileError } from './tenants-file.js';

export const TENANTS_USAGE = `Usage:
  fabriek tenants hash-key [KEY]   print the sha256:<hex> line for a tenants file (KEY from stdin when not given,
                                   which keeps it out of the shell history; same as: printf %s KEY | sha256sum)
  fabriek tenants new-key          make a random API key and print it with its hash
  fabriek tenants check FILE       validate a tenants file and list its tenants
`;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** `fabriek tenants …`; returns the exit code. */
export async function runTenantsCli(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'hash-key': {
      if (rest.length > 1) break;
      // A key piped in usually ends with a newline that is not part of it.
      const key = rest[0] ?? (await readStdin()).replace(/\r?\n$/, '');
      if (key === '') {
        err('fabriek tenants hash-key: the key is empty\n');
        return 2;
      }
      out(`${hashKey(key)}\n`);
      return 0;
    }
    case 'new-key': {
      if (rest.length > 0) break;
      const key = newKey(randomBytes);
      out(`key:  ${key}\nhash: ${hashKey(key)}\n`);
      return 0;
    }
    case 'check': {
      const file = rest[0];
      if (file === undefined || rest.length > 1) break;
      try {
        const config = await loadTenantsFile(file);
        const names = config.tenants.map((t) => t.name);
        out(`${file}: ${names.length} tenant${names.length === 1 ? '' : 's'} (${names.join(', ')}), ${config.keyHashes.size} keys\n`);
        return 0;
      } catch (error) {
        if (!(error instanceof TenantsFileError)) throw error;
        err(`${error.message}\n`);
        return 1;
      }
    }
    case '--help':
    case '-h':
    case undefined:
      out(TENANTS_USAGE);
      return command === undefined ? 2 : 0;
  }
  err(`fabriek tenants: unexpected arguments '${argv.join(' ')}'\n\n${TENANTS_USAGE}`);
  return 2;
}
