import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ClientModule } from './client/client.module';
import { DemoModule } from './demo/demo.module';
import { GatewayModule } from './gateway/gateway.module';
import { RelayExceptionFilter } from './edge/relay-exception.filter';
import { RouteFactsModule } from './edge/route-table';
import { CoreModule, type CoreOptions } from './common/core.module';
import { HealthModule } from './health/health.module';
import { LifecycleModule } from './lifecycle/lifecycle.module';
import { MetricsModule } from './metrics/metrics.module';
import { RegistryModule } from './registry/registry.module';
import { SinkModule } from './sink/sink.module';
import { SourceModule } from './source/source.module';
import { StateModule } from './state/state.module';
import { UiModule } from './ui/ui.module';

/** Composes the relay; holds no logic of its own. */
@Module({})
export class AppModule {
  static register(options: CoreOptions): DynamicModule {
    return {
      module: AppModule,
      imports: [
        CoreModule.forRoot(options),
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
        DemoModule,
      ],
      providers: [{ provide: APP_FILTER, useClass: RelayExceptionFilter }],
    };
  }
}
