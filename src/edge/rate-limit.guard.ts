import {
  applyDecorators,
  CanActivate,
  CallHandler,
  ExecutionContext,
  Injectable,
  Logger,
  NestInterceptor,
  SetMetadata,
  Type,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common';
import { catchError, from, mergeMap, throwError, type Observable } from 'rxjs';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { RelayConfig, type ControlRoute, type RateLimit } from '../config/relay-config';
import { RelayMetrics } from '../metrics/relay-metrics';
import { addressUnit, clientAddress } from '../common/client-address';
import { isPlainObject } from '../common/envelope-body';
import { sha256Hex } from '../common/ids';
import { isTruthy } from '../common/validators';
import { Errors } from '../common/relay-error';
import { LegacyGateGuard } from '../common/legacy-gate.guard';
import { NodeTokenGuard } from '../registry/node-token.guard';
import { RateLimitService } from './rate-limit.service';

export type RateLimitPolicy =
  | { kind: 'public'; bucket: string }
  | { kind: 'endpoint'; stream: boolean }
  | { kind: 'control'; route: ControlRoute; identity: 'server_public_key' | 'client_public_key' };

const POLICY = 'relay:rate-limit';

/** What runs before a route's limiter. */
export interface LimitOptions {
  /** A gated legacy route: {@link LegacyGateGuard} answers 410 first when those routes are off. */
  legacyGate?: boolean;
}

/**
 * A route's limit and the guards that enforce it, in order: the legacy gate when asked for, the
 * node token check when the limiter relies on it, then {@link RateLimitGuard}. Declaring a limit
 * is all a route does; it cannot be declared and left unenforced, or enforced before the checks it
 * trusts.
 */
function limited(
  policy: RateLimitPolicy,
  options: LimitOptions,
  ...checks: Type<CanActivate>[]
): MethodDecorator {
  const gate = options.legacyGate === true ? [LegacyGateGuard] : [];
  return applyDecorators(
    UseGuards(...gate, ...checks, RateLimitGuard),
    SetMetadata(POLICY, policy),
  );
}

/** Public limiter (`API_RATE_LIMIT` and `API_DAILY_QUOTA`, per client address, per route). */
export const PublicRateLimit = (bucket: string, options: LimitOptions = {}): MethodDecorator =>
  limited({ kind: 'public', bucket }, options);

/**
 * Public limiter with one bucket per route template, as the existing relay's per-endpoint buckets:
 * `/v1/models` and `/api/v1/models` count apart, every `/models/{id}` shares one. With `stream`,
 * a body with a truthy `stream` is also charged to the shared `API_STREAM_RATE_LIMIT` bucket.
 */
export const EndpointRateLimit = (opts: { stream?: boolean } = {}): MethodDecorator =>
  limited({ kind: 'endpoint', stream: opts.stream === true }, {});

/** Routes whose identity is proven by the node's control credential (spec §4.4.3, §4.4.4, §4.4.10). */
const CREDENTIAL_ROUTES: ReadonlySet<ControlRoute> = new Set(['control', 'progress', 'unregister']);

/**
 * Control-plane limiter of a compute node's route, behind the node token check it relies on
 * ({@link NodeTokenGuard}): a per-address bucket plus a per-identity bucket (spec §2.4), charged so
 * that nobody can spend another's identity budget (docs/decisions.md, "Identity buckets"):
 * - a request carrying a control credential charges the identity, and gets the hit back if the
 *   request then fails (a wrong credential, an unknown node);
 * - without one, token holders charge the identity (a configured token matched);
 * - in open mode (no token configured) the bucket is the identity as seen from the caller's
 *   address, so naming a victim's key from elsewhere spends only the caller's own budget.
 */
export const ControlRateLimit = (
  route: ControlRoute,
  options: LimitOptions & { identity?: 'server_public_key' | 'client_public_key' } = {},
): MethodDecorator => {
  const identity = options.identity ?? 'server_public_key';
  const limit = limited({ kind: 'control', route, identity }, options, NodeTokenGuard);
  // Only a credential route ever has a hit to give back. An interceptor wraps its handler in an
  // RxJS pipeline that a held long-poll (`/servers/poll`, `/sink`) would keep alive for its whole
  // wait: ~12 KiB of heap per held poll (docs/performance-held-connections.md).
  return CREDENTIAL_ROUTES.has(route)
    ? applyDecorators(limit, UseInterceptors(IdentityRefund))
    : limit;
};

/** An identity hit the guard made that the request has yet to earn (see {@link IdentityRefund}). */
interface PendingCharge {
  key: string;
  limit: RateLimit;
}
const PENDING = Symbol('relay:identity-charge');
type WithPending = Request & { [PENDING]?: PendingCharge };

/** A request that names a client behind a proxy: it may come from anywhere. */
function viaProxy(req: Request): boolean {
  const h = req.headers;
  return (
    h.forwarded !== undefined ||
    h['x-forwarded-for'] !== undefined ||
    h['x-real-ip'] !== undefined ||
    h.via !== undefined ||
    h['cf-connecting-ip'] !== undefined ||
    h['true-client-ip'] !== undefined
  );
}

const LOCAL_NAME = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\]|::1)$/i;

/**
 * The name a loopback request was sent to (its Host, or a browser's Origin) when that name is not
 * this machine's: a sign that a proxy on this machine forwards traffic from elsewhere without
 * saying so (no X-Forwarded-For). Null when nothing gives it away, which is all this can see: a
 * proxy that also rewrites Host to localhost and strips Origin looks exactly like a local caller.
 */
export function foreignName(req: Request): string | null {
  const names = [req.headers.host, req.headers.origin]
    .filter((v): v is string => typeof v === 'string' && v !== '' && v !== 'null')
    .map((v) => {
      try {
        return new URL(v.includes('://') ? v : `http://${v}`).hostname;
      } catch {
        return v;
      }
    });
  return names.find((name) => !LOCAL_NAME.test(name)) ?? null;
}

/**
 * Fixed-window rate limits kept in the state store (so replicas share them). Routes without a
 * policy (health, metrics, long-polls, retrieve, next) are never limited.
 */
@Injectable()
export class RateLimitGuard implements CanActivate {
  private readonly logger = new Logger('RateLimit');
  private warnedUnmarkedProxy = false;

  constructor(
    private readonly reflector: Reflector,
    private readonly config: RelayConfig,
    private readonly metrics: RelayMetrics,
    private readonly limits: RateLimitService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const policy = this.reflector.get<RateLimitPolicy | undefined>(POLICY, context.getHandler());
    if (!policy) {
      return true;
    }
    const req = context.switchToHttp().getRequest<Request>();
    const address = addressUnit(clientAddress(req));
    if (policy.kind !== 'control' && this.config.publicLimitsLocalExempt && !viaProxy(req)) {
      this.noticeUnmarkedProxy(req);
      return true; // this machine's own request to a loopback-only relay
    }
    if (policy.kind === 'public') {
      for (const limit of this.config.publicRateLimits) {
        await this.charge(`p:${policy.bucket}:${address}`, limit, policy.bucket === 'requests');
      }
      return true;
    }
    if (policy.kind === 'endpoint') {
      const template = (req.route as { path?: unknown } | undefined)?.path;
      const bucket = typeof template === 'string' ? template : req.path;
      for (const limit of this.config.publicRateLimits) {
        await this.charge(`p:${bucket}:${address}`, limit, false);
      }
      const streamLimit = this.config.gateway.streamRateLimit;
      const body: unknown = req.body;
      if (policy.stream && streamLimit && isPlainObject(body) && isTruthy(body.stream)) {
        await this.charge(`s:chat-completions-stream:${address}`, streamLimit, false);
      }
      return true;
    }
    const ipLimit = this.config.controlIpRateLimit;
    if (ipLimit) {
      await this.charge(`ci:${policy.route}:${address}`, ipLimit, false);
    }
    const identityLimit = this.config.controlRateLimits[policy.route];
    const body: unknown = req.body;
    const identity = isPlainObject(body) ? body[policy.identity] : undefined;
    if (!identityLimit || typeof identity !== 'string' || identity === '') {
      return true;
    }
    const credential = isPlainObject(body) ? body.control_credential : undefined;
    const carriesCredential = CREDENTIAL_ROUTES.has(policy.route) && typeof credential === 'string';
    if (carriesCredential || this.tokensConfigured) {
      const key = `cid:${policy.route}:${sha256Hex(identity)}`;
      await this.charge(key, identityLimit, false);
      if (carriesCredential) {
        (req as WithPending)[PENDING] = { key, limit: identityLimit };
      }
      return true;
    }
    await this.charge(
      `cia:${policy.route}:${sha256Hex(`${address}\n${identity}`)}`,
      identityLimit,
      false,
    );
    return true;
  }

  /** A node token is configured: a request that got here showed one (NodeTokenGuard runs first). */
  private get tokensConfigured(): boolean {
    return this.config.serverTokens.length > 0 || this.config.serverTokensFile !== null;
  }

  /** Says once per process that the loopback exemption seems to be letting a proxy through. */
  private noticeUnmarkedProxy(req: Request): void {
    if (this.warnedUnmarkedProxy) {
      return;
    }
    const name = foreignName(req);
    if (name !== null) {
      this.warnedUnmarkedProxy = true;
      this.logger.warn({
        msg: 'public rate limits are off for requests from this machine, but one from loopback was addressed to another name and carried no X-Forwarded-For: if a proxy or tunnel on this machine forwards traffic from elsewhere, every caller it forwards is unlimited. Make it add X-Forwarded-For and set TOKENPLACE_RELAY_TRUST_PROXY=loopback, or set API_RATE_LIMIT',
        name: name.slice(0, 253),
      });
    }
  }

  private async charge(key: string, limit: RateLimit, countsAsOutcome: boolean): Promise<void> {
    const result = await this.limits.hit(key, limit);
    if (!result.allowed) {
      if (countsAsOutcome) {
        this.metrics.recordOutcome('rate_limited');
      }
      throw Errors.rateLimited(limit.text, result.resetSeconds);
    }
  }
}

/**
 * Gives back the identity hit of a credential-carrying request that failed (wrong credential,
 * unknown node, bad body): only requests that proved the identity spend its budget. Bound by
 * {@link ControlRateLimit}; runs after the guard, around the handler.
 */
@Injectable()
export class IdentityRefund implements NestInterceptor {
  constructor(private readonly limits: RateLimitService) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = context.switchToHttp().getRequest<WithPending>();
    return next.handle().pipe(
      catchError((error: unknown) => {
        const pending = req[PENDING];
        if (pending === undefined) {
          return throwError(() => error);
        }
        req[PENDING] = undefined;
        const refund = this.limits.refund(pending.key, pending.limit);
        return from(refund).pipe(mergeMap(() => throwError(() => error)));
      }),
    );
  }
}
