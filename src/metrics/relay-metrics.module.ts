import { Module } from '@nestjs/common';
import { RelayMetrics } from './relay-metrics';

/**
 * The one {@link RelayMetrics} of the process, apart from the `/metrics` route so the state module
 * can record transitions without importing the route (which reads the store).
 */
@Module({
  providers: [RelayMetrics],
  exports: [RelayMetrics],
})
export class RelayMetricsModule {}
