import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import { type MetricsRegistry } from './registry.js';

/**
 * GET /metrics in the Prometheus text format; everything else 404. HTTPS
 * with `tls`. Not yet listening. `text`: the body (default: the registry's;
 * several gateway processes: every process's, aggregated by the primary).
 */
export function createMetricsServer(registry: MetricsRegistry, tls?: HttpsServerOptions, text: () => Promise<string> = () => registry.metrics()): Server | HttpsServer {
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    text().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (error: unknown) =>
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`${(error as Error).message}\n`),
    );
  };
  return tls ? createHttpsServer(tls, listener) : createServer(listener);
}
