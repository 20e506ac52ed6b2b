import type { NextFunction, Request, Response } from 'express';
import helmet from 'helmet';
import type { Logger } from 'pino';
import type { RelayMetrics } from '../metrics/relay-metrics';
import { newRequestId } from '../common/ids';
import { Errors, RelayError } from '../common/relay-error';
import type { ErrorStyle } from './error-style';
import { sendRelayError } from './relay-exception.filter';

type Middleware = (req: Request, res: Response, next: NextFunction) => void;

/** Runs middlewares one after another inside a single Express layer; any of them may answer. */
export function inSequence(...steps: Middleware[]): Middleware {
  return (req, res, next) => {
    let i = 0;
    const step = (err?: unknown): void => {
      if (err !== undefined) {
        next(err);
        return;
      }
      const current = steps[i++];
      if (current === undefined) {
        next();
        return;
      }
      current(req, res, step);
    };
    step();
  };
}

/**
 * `X-Content-Type-Options: nosniff` on every answer the app writes (API JSON, errors, 404s,
 * static files): a browser must never run a JSON body that echoes input as a script or page.
 */
export function noSniff(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  next();
}

const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

/** Echoes a sane incoming `X-Request-Id` or generates 16 hex chars; on every response. */
export function requestId(req: Request, res: Response, next: NextFunction): void {
  const incoming = req.headers['x-request-id'];
  const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : newRequestId();
  (req as Request & { id: string }).id = id;
  res.setHeader('X-Request-Id', id);
  next();
}

const PUBLIC_CORS = new Set([
  '/api/v1/relay/requests',
  '/api/v1/relay/requests/cancel',
  '/api/v1/relay/responses/retrieve',
  '/api/v1/relay/servers/next',
  '/api/v1/public-key',
  '/api/v1/chat/completions',
  '/api/v1/health',
  '/v1/relay/requests',
  '/v1/relay/requests/cancel',
  '/v1/relay/responses/retrieve',
  '/v1/relay/servers/next',
  '/v1/public-key',
  '/v1/chat/completions',
  '/v1/health',
]);

/**
 * OpenAI-compatible gateway routes with CORS (gateway.md §1): the API v1 prefixes only; nothing
 * under `/api/v2` or `/v2`, and never `public-key/rotate`.
 */
const GATEWAY_CORS = new Set([
  '/api/v1/completions',
  '/v1/completions',
  '/api/v1/images/generations',
  '/v1/images/generations',
  '/api/v1/server-providers',
]);

export function isPublicCorsPath(path: string): boolean {
  return (
    PUBLIC_CORS.has(path) ||
    GATEWAY_CORS.has(path) ||
    path === '/api/v1/models' ||
    path.startsWith('/api/v1/models/') ||
    path === '/v1/models' ||
    path.startsWith('/v1/models/') ||
    path.startsWith('/api/v1/community/')
  );
}

/**
 * POST routes of the gateway. A body that fails before routing (415, malformed JSON, too large)
 * has no route metadata yet, so these paths pick the OpenAI envelope for those three errors; every
 * later error is chosen by the route's `@OpenAiErrors()`.
 */
const GATEWAY_BODY_PATHS = new Set(
  ['chat/completions', 'completions', 'images/generations', 'public-key/rotate'].flatMap((r) =>
    ['/api/v1', '/v1', '/api/v2', '/v2'].map((p) => `${p}/${r}`),
  ),
);

/** Error shape of a failure that happens before routing. */
export function preRoutingStyle(path: string): ErrorStyle {
  return GATEWAY_BODY_PATHS.has(path) ? 'openai' : 'object';
}

/** The fixed, non-credentialed wildcard CORS policy of spec §2.3, before routing and limits. */
export function publicCors(req: Request, res: Response, next: NextFunction): void {
  if (!isPublicCorsPath(req.path)) {
    next();
    return;
  }
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Expose-Headers', 'Retry-After');
  if (req.method === 'OPTIONS') {
    res.setHeader('Access-Control-Allow-Methods', 'GET, POST, OPTIONS');
    res.setHeader('Access-Control-Allow-Headers', 'Content-Type, Accept');
    res.setHeader('Access-Control-Max-Age', '600');
    res.status(204).end();
    return;
  }
  next();
}

const QUIET = new Set(['/healthz', '/livez', '/metrics']);
/** Polled by every open page (once a second per tab): logged at debug, not info. */
const POLLED = new Set(['/relay/diagnostics']);

/**
 * Counts and times every exchange under a bounded route label, and writes one JSON log line per
 * request: method, route template, status, duration, request id. Never bodies, headers, query
 * strings or keys. Probes and scrapes are not logged per hit.
 */
export function observeRequests(metrics: RelayMetrics, logger: Logger) {
  const logging = logger.isLevelEnabled('info');
  const debugging = logger.isLevelEnabled('debug');
  // One shared listener (no closure per request); the start time rides on the response.
  function finished(this: TimedResponse): void {
    const req = this.req as Request & { id?: string };
    const seconds = Number(process.hrtime.bigint() - this.startedAt) / 1e9;
    const template = (req.route as { path?: unknown } | undefined)?.path;
    const route = typeof template === 'string' ? template : null;
    metrics.observeHttp(req.method, req.path, route, this.statusCode, seconds);
    const failed = this.statusCode >= 500;
    const polled = POLLED.has(req.path);
    if (logging && !QUIET.has(req.path) && (failed || !polled || debugging)) {
      const line = {
        request_id: req.id,
        method: req.method,
        route: route ?? 'unmatched',
        status: this.statusCode,
        duration_ms: Math.round(seconds * 1e6) / 1e3,
      };
      if (failed) {
        logger.error(line, 'request failed');
      } else if (polled) {
        logger.debug(line, 'request completed');
      } else {
        logger.info(line, 'request completed');
      }
    }
  }
  return (_req: Request, res: Response, next: NextFunction): void => {
    (res as TimedResponse).startedAt = process.hrtime.bigint();
    res.on('finish', finished);
    next();
  };
}

type TimedResponse = Response & { startedAt: bigint };

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/**
 * Routes whose body the existing relay parsed leniently (spec §4.4.1): a body that is not JSON
 * counts as missing, so the route answers its own 400 after the token check.
 */
const LENIENT_BODY = new Set(['/api/v1/relay/servers/register']);

/** A POST with a body that is not JSON gets 415 (the existing relay's framework did the same). */
export function requireJson(req: Request, res: Response, next: NextFunction): void {
  const hasBody =
    req.headers['transfer-encoding'] !== undefined ||
    Number(req.headers['content-length'] ?? 0) > 0;
  const type = req.headers['content-type'];
  // Fast path for the usual header; anything else goes through the full media-type match.
  const plainJson = type === 'application/json' || type === 'application/json; charset=utf-8';
  if (
    BODY_METHODS.has(req.method) &&
    hasBody &&
    !plainJson &&
    !req.is(['application/json', 'application/*+json']) &&
    !LENIENT_BODY.has(req.path)
  ) {
    sendRelayError(res, Errors.unsupportedMediaType(), preRoutingStyle(req.path));
    return;
  }
  next();
}

/** `/api/v1/relay/progress` is size-checked before parsing and before auth (spec §2.4). */
export function progressSizeCheck(req: Request, res: Response, next: NextFunction): void {
  if (Number(req.headers['content-length'] ?? 0) > 16384) {
    res.setHeader('Connection', 'close'); // the body is never read: do not wait for it either
    sendRelayError(res, Errors.progressTooLarge(), 'object');
    return;
  }
  next();
}

interface BodyParserError {
  type?: string;
  status?: number;
  limit?: number;
}

/** Renders body-parser failures (size, syntax, encoding) as wire errors; never logs the body. */
export function bodyErrors(err: unknown, req: Request, res: Response, next: NextFunction): void {
  const e = err as BodyParserError;
  if (res.headersSent) {
    next(err);
    return;
  }
  let error: RelayError;
  switch (e.type ?? 'unknown') {
    case 'entity.too.large':
      error =
        req.path === '/api/v1/relay/progress'
          ? Errors.progressTooLarge()
          : Errors.bodyTooLarge(e.limit ?? 0);
      break;
    case 'entity.parse.failed':
      if (LENIENT_BODY.has(req.path)) {
        req.body = undefined;
        next();
        return;
      }
      error = Errors.malformedJson();
      break;
    case 'encoding.unsupported':
    case 'charset.unsupported':
      error = Errors.unsupportedMediaType();
      break;
    case 'request.aborted':
      res.destroy();
      return;
    default:
      error = new RelayError(
        e.status && e.status >= 400 && e.status < 500 ? e.status : 400,
        'Unreadable request body',
      );
  }
  sendRelayError(res, error, preRoutingStyle(req.path));
}

/** Browser UI routes get a strict CSP and friends; API routes keep their plain JSON and CORS. */
export function uiSecurityHeaders() {
  const mw = helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        fontSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
        // The chat form is sent by script only: a native submit must never put a message in a URL.
        formAction: ["'none'"],
        frameAncestors: ["'none'"],
        requireTrustedTypesFor: ["'script'"],
        // src/ui/web/answer.render.ts: HTML only out of DOMPurify, a script URL only the Markdown
        // worker's; `dompurify` is the sanitizer's own, for parsing into an inert document.
        trustedTypes: ['tokenplace-answer', 'tokenplace-worker', 'dompurify'],
        workerSrc: ["'self'"],
      },
    },
    referrerPolicy: { policy: 'no-referrer' },
    frameguard: { action: 'deny' },
    strictTransportSecurity: false,
  });
  return (req: Request, res: Response, next: NextFunction): void => {
    if ((req.method === 'GET' || req.method === 'HEAD') && isUiPath(req.path)) {
      mw(req, res, next);
      return;
    }
    next();
  };
}

export function isUiPath(path: string): boolean {
  return (
    path === '/' || path === '/index.html' || path.startsWith('/static/') || path === '/favicon.ico'
  );
}
