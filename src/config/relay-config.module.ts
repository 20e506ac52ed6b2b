import { Global, Module, type DynamicModule } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import type { Logger } from 'pino';
import { CLOCK, SystemClock, type Clock } from '../common/clock';
import { createRootLogger, RELAY_LOGGER } from '../common/logging';
import { RelayConfig } from './relay-config';

export interface RelayConfigOptions {
  /** The validated configuration (main.ts and the test helper both build it with RelayConfig.load). */
  config: RelayConfig;
  /** Time source; tests pass a ManualClock. */
  clock?: Clock;
  /** Root logger (main.ts creates it before the app so boot logs share it). */
  logger?: Logger;
}

/**
 * The only global module: the validated {@link RelayConfig} (held by @nestjs/config's ConfigService,
 * which never reads process.env or .env files here), the injected {@link Clock} and the root logger.
 */
@Global()
@Module({})
export class RelayConfigModule {
  static forRoot(options: RelayConfigOptions): DynamicModule {
    return {
      module: RelayConfigModule,
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
        { provide: RELAY_LOGGER, useValue: options.logger ?? createRootLogger(options.config) },
      ],
      exports: [RelayConfig, CLOCK, RELAY_LOGGER],
    };
  }
}
