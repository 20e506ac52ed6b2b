import { Inject, Injectable, Module, type OnApplicationShutdown } from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
import { RelayConfig } from '../config/relay-config';
import { InMemoryStateStore } from './in-memory-state.store';
import { RedisStateStore } from './redis-state.store';
import { STATE_STORE, type StateStore } from './state-store';

/** Builds the one store the process uses; an unknown backend fails at boot. */
export async function createStateStore(config: RelayConfig, clock: Clock): Promise<StateStore> {
  switch (config.stateStore) {
    case 'memory':
      return new InMemoryStateStore(config.limits, clock);
    case 'redis':
      return RedisStateStore.connect(config, clock);
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

@Module({
  providers: [
    {
      provide: STATE_STORE,
      inject: [RelayConfig, CLOCK],
      useFactory: createStateStore,
    },
    StoreCloser,
  ],
  exports: [STATE_STORE],
})
export class StateModule {}
