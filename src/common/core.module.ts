import { Global, Module, type DynamicModule } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import type { Logger } from 'pino';
import { RelayConfig } from '../config/relay-config';
import { CLOCK, SystemClock, type Clock } from './clock';
import { createRootLogger, RELAY_LOGGER } from './logging';

export interface CoreOptions {
  /** The validated configuration (main.ts and the test helper both build it with RelayConfig.load). */
  config: RelayConfig;
  /** Time source; tests pass a ManualClock. */
  clock?: Clock;
  /** Root logger (main.ts creates it before the app so boot logs share it). */
  logger?: Logger;
}

/**
 * The process-wide values every module may inject: the validated {@link RelayConfig} (every module
 * reads its slice), the {@link Clock} and the root logger. The configuration is held by
 * @nestjs/config's ConfigService, which reads neither the environment nor .env files here.
 */
@Global()
@Module({})
export class CoreModule {
  static forRoot(options: CoreOptions): DynamicModule {
    return {
      module: CoreModule,
      imports: [
        ConfigModule.forRoot({
          ignoreEnvFile: true,
          skipProcessEnv: true,
          validatePredefined: false,
          load: [() => ({ relay: options.config })],
        }),
      ],
      providers: [
        {
          provide: RelayConfig,
          inject: [ConfigService],
          useFactory: (service: ConfigService): RelayConfig =>
            service.getOrThrow<RelayConfig>('relay'),
        },
        { provide: CLOCK, useValue: options.clock ?? new SystemClock() },
        {
          provide: RELAY_LOGGER,
          useFactory: (): Logger => options.logger ?? createRootLogger(options.config),
        },
      ],
      exports: [RelayConfig, CLOCK, RELAY_LOGGER],
    };
  }
}
