import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { lookup } from 'node:dns/promises';
import { RelayConfig } from '../config/relay-config';
import { RelayMetrics } from '../metrics/relay-metrics';
import { STATE_STORE, type StateStore } from '../state/state-store';

const DNS_CACHE_MS = 10_000;
const DNS_TIMEOUT_MS = 2_000;

/** Terminus indicators for readiness: the state store, and the upstream DNS only when required. */
@Injectable()
export class RelayHealthIndicators {
  private dnsCheckedAt = 0;
  private dnsOk = true;

  constructor(
    private readonly indicators: HealthIndicatorService,
    @Inject(STATE_STORE) private readonly store: StateStore,
    private readonly config: RelayConfig,
    private readonly metrics: RelayMetrics,
  ) {}

  async store_(): Promise<HealthIndicatorResult> {
    const session = this.indicators.check('store');
    try {
      await this.store.ping();
      this.metrics.storeUp.set(1);
      return session.up({ backend: this.config.stateStore });
    } catch (error) {
      this.metrics.storeUp.set(0);
      return session.down({ backend: this.config.stateStore, reason: (error as Error).message });
    }
  }

  async upstreamDns(): Promise<HealthIndicatorResult> {
    const session = this.indicators.check('gpuHost');
    const now = Date.now();
    if (now - this.dnsCheckedAt > DNS_CACHE_MS) {
      this.dnsCheckedAt = now;
      this.dnsOk = await Promise.race([
        lookup(this.config.gpuHost).then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), DNS_TIMEOUT_MS).unref()),
      ]);
    }
    return this.dnsOk
      ? session.up({ host: this.config.gpuHost })
      : session.down({ host: this.config.gpuHost });
  }
}
