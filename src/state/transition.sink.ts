import type { TransitionCounts } from './state.types';

/**
 * What became of a job an enqueue claimed for a held API v1 poll (Redis one-turn delivery): the
 * poll took it; its poll had ended and it went back to its queue; it had ended meanwhile (answered,
 * cancelled, expired); or it could not be given back (the give-back failed, the hand-off was
 * unreadable) and waits for its in-flight lease.
 */
export const HAND_OFF_RESULTS = ['taken', 'given_back', 'already_ended', 'left_to_lease'] as const;
export type HandOffResult = (typeof HAND_OFF_RESULTS)[number];

/**
 * Where a store reports what its transitions did, once per transition, on the replica that
 * performed it: the outcome and eviction counts each transition result also carries, the
 * acknowledged transitions its replicas did not confirm in time (Redis WAIT), and what became of
 * each hand-off to a held poll (on the poll's replica). The metrics module implements it; the
 * store never imports the metrics.
 */
export interface TransitionSink {
  transitions(counts: TransitionCounts): void;
  replicationTimeout(operation: string): void;
  handOff(result: HandOffResult): void;
}

/** The injection token of the process's {@link TransitionSink}. */
export const TRANSITION_SINK = Symbol('TRANSITION_SINK');

/** A sink that drops everything (stores opened by tests and tools). */
export const NO_TRANSITION_SINK: TransitionSink = {
  transitions: () => undefined,
  replicationTimeout: () => undefined,
  handOff: () => undefined,
};
