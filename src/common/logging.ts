import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Options } from 'pino-http';
import type { RelayConfig } from '../config/relay-config';

const QUIET = new Set(['/healthz', '/livez', '/metrics']);

type Req = IncomingMessage & { route?: { path?: string }; originalUrl?: string };

function pathOf(req: IncomingMessage): string {
  const url = (req as Req).originalUrl ?? req.url ?? '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/**
 * One JSON line per request: method, route template, status, duration, request id. Never bodies,
 * headers, query strings or keys: the relay must not log ciphertext or tokens. Probes and scrapes
 * are not logged per hit.
 */
export function pinoHttpOptions(config: RelayConfig): Options {
  return {
    level: config.logLevel,
    genReqId: (req: IncomingMessage) => (req as { id?: string }).id ?? '',
    autoLogging: { ignore: (req: IncomingMessage) => QUIET.has(pathOf(req)) },
    quietReqLogger: true,
    customAttributeKeys: { reqId: 'request_id', responseTime: 'duration_ms' },
    serializers: {
      req: (req: { method?: string }) => ({ method: req.method }),
      res: (res: { statusCode?: number }) => ({ status: res.statusCode }),
      err: (err: { type?: string; message?: string }) => ({ type: err.type }),
    },
    customSuccessObject: (
      req: IncomingMessage,
      _res: ServerResponse,
      val: Record<string, unknown>,
    ) => ({
      ...val,
      route: (req as Req).route?.path ?? 'unmatched',
    }),
    customErrorObject: (
      req: IncomingMessage,
      _res: ServerResponse,
      _err: Error,
      val: Record<string, unknown>,
    ) => ({
      ...val,
      route: (req as Req).route?.path ?? 'unmatched',
    }),
    customSuccessMessage: () => 'request completed',
    customErrorMessage: () => 'request failed',
    customLogLevel: (_req: IncomingMessage, res: ServerResponse, err?: Error) =>
      err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'info' : 'info',
    base: { service: 'tokenplace-relay' },
    timestamp: () => `,"time":"${new Date().toISOString()}"`,
    formatters: { level: (label: string) => ({ level: label }) },
  };
}
