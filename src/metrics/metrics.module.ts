import { Module } from '@nestjs/common';
import { LifecycleModule } from '../lifecycle/lifecycle.module';
import { StateModule } from '../state/state.module';
import { MetricsController } from './metrics.controller';
import { MetricsService } from './metrics.service';
import { RelayMetricsModule } from './relay-metrics.module';

@Module({
  imports: [StateModule, LifecycleModule, RelayMetricsModule],
  controllers: [MetricsController],
  providers: [MetricsService],
  exports: [RelayMetricsModule],
})
export class MetricsModule {}
