import { type Logger } from 'pino';
import { loadRedisSecrets, PASSWORD_ENV, RedisConfigError, type RedisSecrets, type RedisTarget, redisTarget } from '../core/redis-connection.js';
import { StartupError } from '../core/startup-error.js';
import { type ServeOptions } from './options.js';

/** The Redis targets (registry, quotas) with the password and TLS files read once; a file that cannot be read stops the start. */
export async function resolveRedis(
  options: ServeOptions,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ registry: RedisTarget | undefined; quota: RedisTarget | undefined }> {
  if (options.registry === undefined && options.quotaRedis === undefined) return { registry: undefined, quota: undefined };
  const target = (url: string | undefined, secrets: RedisSecrets): RedisTarget | undefined => {
    if (url === undefined) return undefined;
    const t = redisTarget(url, secrets);
    if (t.passwordInUrl) {
      log.warn({ redis: t.display }, `a Redis password is in a URL on the command line, which ps shows to every user of this machine: use --registry-password-file or ${PASSWORD_ENV}`);
    }
    return t;
  };
  try {
    const secrets = await loadRedisSecrets(options.registrySecrets, env);
    const registry = target(options.registry, secrets);
    return { registry, quota: target(options.quotaRedis, secrets) ?? registry };
  } catch (error) {
    if (error instanceof RedisConfigError) throw new StartupError(error.message);
    throw error;
  }
}
