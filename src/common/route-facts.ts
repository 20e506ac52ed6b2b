import { SetMetadata } from '@nestjs/common';
import type { Request } from 'express';
import type { RelayError } from './relay-error';

/**
 * How a route renders its errors. The legacy routes `/sink`, `/source`, `/retrieve`, `/stream/*`
 * and `/unregister` answer 400/404 as `{"error":"<message>"}` (`text`); every other relay route
 * (and every 401/403/410/429/503) answers `{"error":{"message","code",...}}` (`object`, spec §3,
 * §4); the OpenAI-compatible gateway answers `{"error":{"message","type"[,"param"][,"code"]}}`
 * (`openai`, gateway.md §2.1).
 */
export type ErrorStyle = 'text' | 'object' | 'openai';

/**
 * The browser policy of a route (spec §2.3): `public` is the fixed, non-credentialed wildcard
 * policy, answered to preflights before routing and limits; `none` sends no CORS header at all.
 */
export type CorsPolicy = 'public' | 'none';

export interface CorsDeclaration {
  policy: CorsPolicy;
  /** Only the route's paths under one of these prefixes get `policy`; the others get `none`. */
  under?: readonly string[];
  /** Every path below the route's own path gets the policy too (spec §2.3: `/api/v1/models*`). */
  subPaths?: boolean;
}

/** `info`: one log line per request; `debug`: polled by pages; `quiet`: probes and scrapes. */
export type AccessLogLevel = 'info' | 'debug' | 'quiet';

/** How the JSON body of a route is admitted (docs/decisions.md, "Route facts"). */
export interface BodyPolicy {
  /** The route's own cap in bytes: a declared length above it is refused before anything else. */
  limit?: number;
  /** The error for a body over {@link limit}. */
  tooLarge?: () => RelayError;
  /** A body that is not JSON counts as missing: the route answers its own 400 (spec §4.4.1). */
  lenient?: boolean;
}

export const ERROR_STYLE = 'tokenplace:error-style';
export const CORS_POLICY = 'tokenplace:cors';
export const OWN_METRICS_LABEL = 'tokenplace:own-metrics-label';
export const ACCESS_LOG = 'tokenplace:access-log';
export const BODY_POLICY = 'tokenplace:body';

/** The error shape of a controller or route, for errors it raises and those before routing. */
export const ErrorDialect = (style: ErrorStyle): MethodDecorator & ClassDecorator =>
  SetMetadata(ERROR_STYLE, style);

/** The CORS policy of a controller or route, applied before routing to the paths it serves. */
export const Cors = (
  policy: CorsPolicy,
  options: Omit<CorsDeclaration, 'policy'> = {},
): MethodDecorator & ClassDecorator =>
  SetMetadata(CORS_POLICY, { policy, ...options } satisfies CorsDeclaration);

/**
 * The route is its own `route` label in `tokenplace_http_*` (spec §5.5); the others share
 * `/api/v1/*`, `/api/v2/*` or `other`.
 */
export const OwnMetricsLabel = (): MethodDecorator & ClassDecorator =>
  SetMetadata(OWN_METRICS_LABEL, true);

/** How loudly each request to the route is logged (default `info`). */
export const AccessLog = (level: AccessLogLevel): MethodDecorator & ClassDecorator =>
  SetMetadata(ACCESS_LOG, level);

/** The route's body admission, when it differs from the relay-wide JSON body. */
export const JsonBody = (policy: BodyPolicy): MethodDecorator & ClassDecorator =>
  SetMetadata(BODY_POLICY, policy);

/** What the relay knows about one served path, from its controllers' declarations. */
export interface PathFacts {
  /** The route template as registered (`/api/v1/models/:id`). */
  readonly template: string;
  readonly cors: CorsPolicy;
  /** The `route` metrics label when the route declares {@link OwnMetricsLabel}. */
  readonly metricsLabel: string | null;
  readonly log: AccessLogLevel;
  readonly body: BodyPolicy;
  /** Error style by upper-case method. */
  readonly styles: ReadonlyMap<string, ErrorStyle>;
}

const FACTS = Symbol('tokenplace.routeFacts');

type WithFacts = Request & { [FACTS]?: PathFacts | null };

/** Remembers the facts of the request's path, looked up once in front of everything else. */
export function attachFacts(req: Request, facts: PathFacts | null): void {
  (req as WithFacts)[FACTS] = facts;
}

/** The facts the front door found for this request (null on a path no controller serves). */
export function factsOf(req: Request): PathFacts | null {
  return (req as WithFacts)[FACTS] ?? null;
}

/**
 * The error style of a request: the style its route declares for its method (GET for HEAD),
 * `object` for a path or method no route serves (as the framework's own 404 and 405).
 */
export function styleOf(facts: PathFacts | null, method: string): ErrorStyle {
  if (facts === null) {
    return 'object';
  }
  return (
    facts.styles.get(method) ??
    (method === 'HEAD' ? facts.styles.get('GET') : undefined) ??
    'object'
  );
}
