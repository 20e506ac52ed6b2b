import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
import { RelayConfig } from '../config/relay-config';
import { STATE_STORE, type StateStore } from '../state/state-store';

/**
 * Expiry and eviction on a timer, so a quiet relay still cleans up (the store also checks
 * deadlines and leases inline on every operation). One timer for everything, never one per entry.
 */
@Injectable()
export class SweepService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(SweepService.name);
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private lastError = 0;

  constructor(
    @Inject(STATE_STORE) private readonly store: StateStore,
    @Inject(CLOCK) private readonly clock: Clock,
    private readonly config: RelayConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => void this.sweepOnce(), this.config.sweepIntervalMs);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** One sweep; overlapping ticks are skipped, store failures are logged at most every 10 s. */
  async sweepOnce(): Promise<void> {
    if (this.running) {
      return;
    }
    this.running = true;
    try {
      await this.store.sweep(this.clock.now());
    } catch (error) {
      const now = Date.now();
      if (now - this.lastError > 10_000) {
        this.lastError = now;
        this.logger.warn({ msg: 'sweep failed', reason: (error as Error).message });
      }
    } finally {
      this.running = false;
    }
  }
}
