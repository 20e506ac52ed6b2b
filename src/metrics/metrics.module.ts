import { Module } from '@nestjs/common';
import { LifecycleModule } from '../health/lifecycle.module';
import { StateModule } from '../state/state.module';
import { MetricsController } from './metrics.controller';
import { RelayMetrics } from './relay-metrics';

@Module({
  imports: [StateModule, LifecycleModule],
  controllers: [MetricsController],
  providers: [RelayMetrics],
  exports: [RelayMetrics],
})
export class MetricsModule {}
