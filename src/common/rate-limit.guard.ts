import { CanActivate, ExecutionContext, Inject, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { RelayConfig, type ControlRoute, type RateLimit } from '../config/relay-config';
import { RelayMetrics } from '../metrics/relay-metrics';
import { STATE_STORE, type StateStore } from '../state/state-store';
import { CLOCK, type Clock } from './clock';
import { clientAddress } from './client-address';
import { isPlainObject } from './envelope-body';
import { sha256Hex } from './ids';
import { isTruthy } from './validators';
import { Errors } from './relay-error';

export type RateLimitPolicy =
  | { kind: 'public'; bucket: string }
  | { kind: 'endpoint'; stream: boolean }
  | { kind: 'control'; route: ControlRoute; identity: 'server_public_key' | 'client_public_key' };

const POLICY = 'relay:rate-limit';

/** Public limiter (`API_RATE_LIMIT` and `API_DAILY_QUOTA`, per client address, per route). */
export const PublicRateLimit = (bucket: string): MethodDecorator =>
  SetMetadata(POLICY, { kind: 'public', bucket } satisfies RateLimitPolicy);

/**
 * Public limiter with one bucket per route template, as the existing relay's per-endpoint buckets:
 * `/v1/models` and `/api/v1/models` count apart, every `/models/{id}` shares one. With `stream`,
 * a body with a truthy `stream` is also charged to the shared `API_STREAM_RATE_LIMIT` bucket.
 */
export const EndpointRateLimit = (opts: { stream?: boolean } = {}): MethodDecorator =>
  SetMetadata(POLICY, { kind: 'endpoint', stream: opts.stream === true } satisfies RateLimitPolicy);

/** Control-plane limiter: a per-address bucket plus a per-identity bucket (spec §2.4). */
export const ControlRateLimit = (
  route: ControlRoute,
  identity: 'server_public_key' | 'client_public_key' = 'server_public_key',
): MethodDecorator =>
  SetMetadata(POLICY, { kind: 'control', route, identity } satisfies RateLimitPolicy);

/** A request that names a client behind a proxy: it may come from anywhere. */
function viaProxy(req: Request): boolean {
  const h = req.headers;
  return (
    h.forwarded !== undefined ||
    h['x-forwarded-for'] !== undefined ||
    h['x-real-ip'] !== undefined ||
    h.via !== undefined
  );
}

/**
 * Fixed-window rate limits kept in the state store (so replicas share them). Routes without a
 * policy (health, metrics, long-polls, retrieve, next) are never limited.
 */
@Injectable()
export class RateLimitGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly config: RelayConfig,
    private readonly metrics: RelayMetrics,
    @Inject(STATE_STORE) private readonly store: StateStore,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const policy = this.reflector.get<RateLimitPolicy | undefined>(POLICY, context.getHandler());
    if (!policy) {
      return true;
    }
    const req = context.switchToHttp().getRequest<Request>();
    const address = clientAddress(req);
    if (policy.kind !== 'control' && this.config.publicLimitsLocalExempt && !viaProxy(req)) {
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
    if (identityLimit && typeof identity === 'string' && identity !== '') {
      await this.charge(`cid:${policy.route}:${sha256Hex(identity)}`, identityLimit, false);
    }
    return true;
  }

  private async charge(key: string, limit: RateLimit, countsAsOutcome: boolean): Promise<void> {
    const result = await this.store.hitRateLimit({
      key,
      limit: limit.limit,
      windowMs: limit.windowMs,
      now: this.clock.now(),
    });
    if (!result.allowed) {
      if (countsAsOutcome) {
        this.metrics.recordOutcome('rate_limited');
      }
      throw Errors.rateLimited(limit.text, result.resetSeconds);
    }
  }
}
