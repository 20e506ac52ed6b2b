import { Global, Module } from '@nestjs/common';
import { TRANSITION_SINK } from '../state/transition.sink';
import { RelayMetrics } from './relay-metrics';

/**
 * The one {@link RelayMetrics} of the process, global: it is also the state store's
 * {@link TRANSITION_SINK}, which the state module (below this one) injects without importing it.
 */
@Global()
@Module({
  providers: [RelayMetrics, { provide: TRANSITION_SINK, useExisting: RelayMetrics }],
  exports: [RelayMetrics, TRANSITION_SINK],
})
export class RelayMetricsModule {}
