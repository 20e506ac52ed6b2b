import { Inject, Injectable } from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
import { constantTimeEquals } from '../common/ids';
import { WireResponse } from '../common/wire-response';
import { RelayConfig } from '../config/relay-config';
import { LifecycleService } from '../lifecycle/lifecycle.service';
import { STATE_STORE, type StateStore } from '../state/state-store';
import { RelayMetrics } from './relay-metrics';

const TEXT = { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' };

/** One `/metrics` scrape: the auth of spec §5.5, then the gauges recomputed from the store. */
@Injectable()
export class MetricsService {
  constructor(
    private readonly metrics: RelayMetrics,
    private readonly config: RelayConfig,
    @Inject(STATE_STORE) private readonly store: StateStore,
    @Inject(CLOCK) private readonly clock: Clock,
    private readonly lifecycle: LifecycleService,
  ) {}

  async scrape(authorization: string | undefined): Promise<WireResponse> {
    if (!this.authorised(authorization)) {
      return new WireResponse(401, 'unauthorized\n', TEXT);
    }
    this.metrics.waitingRequests.set(this.lifecycle.waiting);
    this.metrics.applyHeldWaitsRefused(this.lifecycle.heldRefused);
    try {
      this.metrics.applyStats(await this.store.stats(this.clock.now()));
      this.metrics.storeUp.set(1);
    } catch {
      this.metrics.storeUp.set(0);
    }
    try {
      const text = await this.metrics.registry.metrics();
      return new WireResponse(200, text, {
        'Content-Type': this.metrics.registry.contentType,
        'Cache-Control': 'no-store',
      });
    } catch {
      return new WireResponse(503, 'metrics unavailable\n', TEXT);
    }
  }

  private authorised(authorization: string | undefined): boolean {
    const { metricsDisabled, metricsToken } = this.config;
    if (metricsDisabled) {
      return false;
    }
    if (metricsToken === undefined) {
      return true;
    }
    const presented = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    return (
      metricsToken !== '' &&
      presented !== undefined &&
      constantTimeEquals(Buffer.from(presented, 'latin1'), Buffer.from(metricsToken, 'utf8'))
    );
  }
}
