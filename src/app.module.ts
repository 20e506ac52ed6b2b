import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ClientModule } from './client/client.module';
import { GatewayModule } from './gateway/gateway.module';
import { RelayExceptionFilter } from './edge/relay-exception.filter';
import { CoreModule, type CoreOptions } from './common/core.module';
import type { RelayConfig } from './config/relay-config';
import { RelayConfigModule } from './config/relay-config.module';
import { HealthModule } from './health/health.module';
import { LifecycleModule } from './lifecycle/lifecycle.module';
import { MetricsModule } from './metrics/metrics.module';
import { RegistryModule } from './registry/registry.module';
import { SinkModule } from './sink/sink.module';
import { SourceModule } from './source/source.module';
import { StateModule } from './state/state.module';
import { UiModule } from './ui/ui.module';

export interface AppOptions extends CoreOptions {
  /** The validated configuration (main.ts and the test helper both build it with RelayConfig.load). */
  config: RelayConfig;
}

/** Composes the relay; holds no logic of its own. */
@Module({})
export class AppModule {
  static register(options: AppOptions): DynamicModule {
    return {
      module: AppModule,
      imports: [
        RelayConfigModule.forRoot(options.config),
        CoreModule.forRoot(options),
        // Route modules first, busiest first: Express matches routes in registration order.
        ClientModule,
        SinkModule,
        GatewayModule,
        SourceModule,
        HealthModule,
        UiModule.register(options.config.uiEnabled),
        StateModule,
        MetricsModule,
        LifecycleModule,
        RegistryModule,
      ],
      providers: [{ provide: APP_FILTER, useClass: RelayExceptionFilter }],
    };
  }
}
