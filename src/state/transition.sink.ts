import type { TransitionCounts } from './state.types';

/**
 * Where a store reports what its transitions did, once per transition, on the replica that
 * performed it: the outcome and eviction counts each transition result also carries, and the
 * acknowledged transitions its replicas did not confirm in time (Redis WAIT). The metrics module
 * implements it; the store never imports the metrics.
 */
export interface TransitionSink {
  transitions(counts: TransitionCounts): void;
  replicationTimeout(operation: string): void;
}

/** The injection token of the process's {@link TransitionSink}. */
export const TRANSITION_SINK = Symbol('TRANSITION_SINK');

/** A sink that drops everything (stores opened by tests and tools). */
export const NO_TRANSITION_SINK: TransitionSink = {
  transitions: () => undefined,
  replicationTimeout: () => undefined,
};
