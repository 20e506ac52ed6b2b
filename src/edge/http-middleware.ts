import type { NextFunction, Request, Response } from 'express';
import helmet from 'helmet';
import type { Logger } from 'pino';
import type { RelayMetrics } from '../metrics/relay-metrics';
import { newRequestId } from '../common/ids';
import { Errors, RelayError } from '../common/relay-error';
import { sendRelayError } from './relay-exception.filter';
import { attachFacts, factsOf, styleOf, type ErrorStyle } from '../common/route-facts';
import type { RouteTable } from './route-table';

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

/**
 * Looks up the facts of the request's path once, in front of everything else: the CORS policy,
 * error style, metrics label, log level and body policy its controller declares.
 */
export function routeFacts(table: RouteTable): Middleware {
  return (req, _res, next) => {
    attachFacts(req, table.lookup(req.path));
    next();
  };
}

/** Error style of a failure before routing: the one the route declares for this method. */
export function preRoutingStyle(req: Request): ErrorStyle {
  return styleOf(factsOf(req), req.method);
}

/** The fixed, non-credentialed wildcard CORS policy of spec §2.3, before routing and limits. */
export function publicCors(req: Request, res: Response, next: NextFunction): void {
  if (factsOf(req)?.cors !== 'public') {
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

/**
 * Counts and times every exchange under a bounded route label, and writes one JSON log line per
 * request: method, route template, status, duration, request id. Never bodies, headers, query
 * strings or keys. Routes declare how loudly they are logged (`@AccessLog()`: probes and scrapes
 * not per hit, pages' polls at debug) and whether they are their own metrics label.
 */
export function observeRequests(metrics: RelayMetrics, logger: Logger, table: RouteTable) {
  const logging = logger.isLevelEnabled('info');
  const debugging = logger.isLevelEnabled('debug');
  // One shared listener (no closure per request); the start time rides on the response.
  function finished(this: TimedResponse): void {
    const req = this.req as Request & { id?: string };
    const seconds = Number(process.hrtime.bigint() - this.startedAt) / 1e9;
    const template = (req.route as { path?: unknown } | undefined)?.path;
    const route = typeof template === 'string' ? template : null;
    const facts = route !== null ? table.forTemplate(route) : factsOf(req);
    metrics.observeHttp(
      req.method,
      req.path,
      route,
      facts?.metricsLabel ?? null,
      this.statusCode,
      seconds,
    );
    const failed = this.statusCode >= 500;
    const log = facts?.log ?? 'info';
    const polled = log === 'debug';
    if (logging && log !== 'quiet' && (failed || !polled || debugging)) {
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
    factsOf(req)?.body.lenient !== true
  ) {
    sendRelayError(res, Errors.unsupportedMediaType(), preRoutingStyle(req));
    return;
  }
  next();
}

/**
 * A route with its own body cap (`@JsonBody({ limit })`, such as `/api/v1/relay/progress`, spec
 * §2.4) refuses a larger declared length before parsing and before auth, whatever its type.
 */
export function ownLimitCheck(req: Request, res: Response, next: NextFunction): void {
  const body = factsOf(req)?.body;
  if (body?.limit !== undefined && Number(req.headers['content-length'] ?? 0) > body.limit) {
    res.setHeader('Connection', 'close'); // the body is never read: do not wait for it either
    const error = body.tooLarge?.() ?? Errors.bodyTooLarge(body.limit);
    sendRelayError(res, error, preRoutingStyle(req));
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
      error = factsOf(req)?.body.tooLarge?.() ?? Errors.bodyTooLarge(e.limit ?? 0);
      break;
    case 'entity.parse.failed':
      if (factsOf(req)?.body.lenient === true) {
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
  sendRelayError(res, error, preRoutingStyle(req));
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
