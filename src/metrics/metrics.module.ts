import { Module } from '@nestjs/common';
import { StateModule } from '../state/state.module';
import { MetricsController } from './metrics.controller';
import { RelayMetrics } from './relay-metrics';

@Module({
  imports: [StateModule],
  controllers: [MetricsController],
  providers: [RelayMetrics],
  exports: [RelayMetrics],
})
export class MetricsModule {}
