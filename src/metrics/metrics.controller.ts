import { Controller, Get, Headers, Inject, UseInterceptors } from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
import { constantTimeEquals } from '../common/ids';
import { AccessLog, Cors, ErrorDialect, OwnMetricsLabel } from '../common/route-facts';
import { WireResponse, WireResponseInterceptor } from '../common/wire-response';
import { RelayConfig } from '../config/relay-config';
import { LifecycleService } from '../lifecycle/lifecycle.service';
import { STATE_STORE, type StateStore } from '../state/state-store';
import { RelayMetrics } from './relay-metrics';

const TEXT = { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' };

/** `/metrics` with the auth semantics of spec §5.5; gauges recomputed on every scrape. */
@Controller()
@ErrorDialect('object')
@Cors('none')
@OwnMetricsLabel()
@AccessLog('quiet') // scrapes are not logged per hit
@UseInterceptors(WireResponseInterceptor)
export class MetricsController {
  constructor(
    private readonly metrics: RelayMetrics,
    private readonly config: RelayConfig,
    @Inject(STATE_STORE) private readonly store: StateStore,
    @Inject(CLOCK) private readonly clock: Clock,
    private readonly lifecycle: LifecycleService,
  ) {}

  @Get('metrics')
  async scrape(@Headers('authorization') authorization: string | undefined): Promise<WireResponse> {
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
