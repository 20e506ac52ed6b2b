import { Inject, Injectable, Module, type OnApplicationShutdown } from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
import { RelayConfig } from '../config/relay-config';
import { RelayMetrics } from '../metrics/relay-metrics';
import { RelayMetricsModule } from '../metrics/relay-metrics.module';
import { InMemoryStateStore } from './in-memory-state.store';
import { MeteredStateStore } from './metered-state.store';
import { RedisStateStore } from './redis-state.store';
import { STATE_STORE, type StateStore } from './state-store';

/** Builds the one store the process uses; an unknown backend fails at boot. */
export async function createStateStore(
  config: RelayConfig,
  clock: Clock,
  metrics?: RelayMetrics,
): Promise<StateStore> {
  switch (config.stateStore) {
    case 'memory':
      return new InMemoryStateStore(config.limits, clock);
    case 'redis':
      return RedisStateStore.connect(config, clock, () => metrics?.replicationTimeouts.inc());
    default: {
      const never: never = config.stateStore;
      throw new Error(`Unknown state store ${String(never)}`);
    }
  }
}

/** The store services get: the configured one, recording every transition in the metrics. */
async function createMeteredStore(
  config: RelayConfig,
  clock: Clock,
  metrics: RelayMetrics,
): Promise<StateStore> {
  return new MeteredStateStore(await createStateStore(config, clock, metrics), metrics);
}

/** Closes the store after the HTTP server has closed (Nest's last shutdown step). */
@Injectable()
class StoreCloser implements OnApplicationShutdown {
  constructor(@Inject(STATE_STORE) private readonly store: StateStore) {}

  async onApplicationShutdown(): Promise<void> {
    await this.store.close();
  }
}

@Module({
  imports: [RelayMetricsModule],
  providers: [
    {
      provide: STATE_STORE,
      inject: [RelayConfig, CLOCK, RelayMetrics],
      useFactory: createMeteredStore,
    },
    StoreCloser,
  ],
  exports: [STATE_STORE],
})
export class StateModule {}
