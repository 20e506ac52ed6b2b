import { Inject, Injectable, Module, type OnApplicationShutdown } from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
import { RelayConfig } from '../config/relay-config';
import { InMemoryStateStore } from './in-memory-state.store';
import { RedisStateStore } from './redis-state.store';
import { STATE_STORE, type StateStore } from './state-store';
import { TRANSITION_SINK, type TransitionSink } from './transition.sink';

/**
 * Builds the one store the process uses, reporting its transitions to `sink` (the metrics); an
 * unknown backend fails at boot.
 */
export async function createStateStore(
  config: RelayConfig,
  clock: Clock,
  sink?: TransitionSink,
): Promise<StateStore> {
  switch (config.stateStore) {
    case 'memory':
      return new InMemoryStateStore(config.limits, clock, sink);
    case 'redis':
      return RedisStateStore.connect(config, clock, sink);
    default: {
      const never: never = config.stateStore;
      throw new Error(`Unknown state store ${String(never)}`);
    }
  }
}

/** Closes the store after the HTTP server has closed (Nest's last shutdown step). */
@Injectable()
class StoreCloser implements OnApplicationShutdown {
  constructor(@Inject(STATE_STORE) private readonly store: StateStore) {}

  async onApplicationShutdown(): Promise<void> {
    await this.store.close();
  }
}

/**
 * The store. Its {@link TRANSITION_SINK} comes from the global metrics provider (the metrics
 * module sits above this one and reads the store; the store only knows the sink's interface).
 */
@Module({
  providers: [
    {
      provide: STATE_STORE,
      inject: [RelayConfig, CLOCK, TRANSITION_SINK],
      useFactory: createStateStore,
    },
    StoreCloser,
  ],
  exports: [STATE_STORE],
})
export class StateModule {}
