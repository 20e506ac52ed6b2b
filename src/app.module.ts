import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ClientModule } from './client/client.module';
import { GatewayModule } from './gateway/gateway.module';
import { RelayExceptionFilter } from './common/relay-exception.filter';
import { RouteFactsModule } from './common/route-table';
import { RelayConfigModule, type RelayConfigOptions } from './config/relay-config.module';
import { HealthModule } from './health/health.module';
import { LifecycleModule } from './health/lifecycle.module';
import { MetricsModule } from './metrics/metrics.module';
import { RegistryModule } from './registry/registry.module';
import { SinkModule } from './sink/sink.module';
import { SourceModule } from './source/source.module';
import { StateModule } from './state/state.module';
import { UiModule } from './ui/ui.module';

/** Composes the relay; holds no logic of its own. */
@Module({})
export class AppModule {
  static register(options: RelayConfigOptions): DynamicModule {
    return {
      module: AppModule,
      imports: [
        RelayConfigModule.forRoot(options),
        RouteFactsModule,
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
