import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { ClientModule } from '../client/client.module';
import { MetricsModule } from '../metrics/metrics.module';
import { RegistryModule } from '../registry/registry.module';
import { StateModule } from '../state/state.module';
import { HealthController } from './health.controller';
import { LifecycleModule } from '../lifecycle/lifecycle.module';
import { RelayHealthIndicators } from './store.health';

@Module({
  imports: [
    TerminusModule.forRoot({ logger: false, gracefulShutdownTimeoutMs: 0 }),
    StateModule,
    MetricsModule,
    RegistryModule,
    LifecycleModule,
    ClientModule,
  ],
  controllers: [HealthController],
  providers: [RelayHealthIndicators],
})
export class HealthModule {}
