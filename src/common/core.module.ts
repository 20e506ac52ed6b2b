import { Global, Module, type DynamicModule } from '@nestjs/common';
import type { Logger } from 'pino';
import { RelayConfig } from '../config/relay-config';
import { CLOCK, SystemClock, type Clock } from './clock';
import { createRootLogger, RELAY_LOGGER } from './logging';

export interface CoreOptions {
  /** Time source; tests pass a ManualClock. */
  clock?: Clock;
  /** Root logger (main.ts creates it before the app so boot logs share it). */
  logger?: Logger;
}

/** The process-wide services every module may inject: the {@link Clock} and the root logger. */
@Global()
@Module({})
export class CoreModule {
  static forRoot(options: CoreOptions): DynamicModule {
    return {
      module: CoreModule,
      providers: [
        { provide: CLOCK, useValue: options.clock ?? new SystemClock() },
        {
          provide: RELAY_LOGGER,
          inject: [RelayConfig],
          useFactory: (config: RelayConfig): Logger => options.logger ?? createRootLogger(config),
        },
      ],
      exports: [CLOCK, RELAY_LOGGER],
    };
  }
}
