import { Inject, Injectable } from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
import type { RateLimit } from '../config/relay-config';
import {
  STATE_STORE,
  type RateLimitCommand,
  type RateLimitResult,
  type StateStore,
} from '../state/state-store';

/**
 * The fixed-window rate limits kept in the state store (so replicas share them), hit at the
 * clock's time: by the rate-limit guard for the routes that declare a limit, by its identity
 * refund, and by the services that charge a limit of their own.
 */
@Injectable()
export class RateLimitService {
  constructor(
    @Inject(STATE_STORE) private readonly store: StateStore,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /** One hit of the bucket `key` under `limit`. */
  hit(key: string, limit: RateLimit): Promise<RateLimitResult> {
    return this.store.hitRateLimit(this.command(key, limit));
  }

  /** Gives one hit of the bucket back; a failure is ignored (the hit then stands). */
  async refund(key: string, limit: RateLimit): Promise<void> {
    await this.store
      .hitRateLimit({ ...this.command(key, limit), refund: true })
      .catch(() => undefined);
  }

  private command(key: string, limit: RateLimit): RateLimitCommand {
    return { key, limit: limit.limit, windowMs: limit.windowMs, now: this.clock.now() };
  }
}
