import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import { type MetricsRegistry } from './registry.js';

/** GET /metrics in the Prometheus text format; everything else 404. HTTPS with `tls`. Not yet listening. */
export function createMetricsServer(registry: MetricsRegistry, tls?: HttpsServerOptions): Server | HttpsServer {
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (error: unknown) =>
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`${(error as Error).message}\n`),
    );
  };
  return tls ? createHttpsServer(tls, listener) : createServer(listener);
}
