import type { StoreStats } from '../state.types';

/**
 * What both stores' `stats` transitions read, as counts and instants: tpStats replies with it as
 * JSON, upkeep.memory.ts builds it in place, and one function turns it into {@link StoreStats}, so
 * the ages are computed once for both.
 */
export interface StatsSnapshot {
  queueDepth: number;
  oldestQueuedAt: number | null;
  inFlight: number;
  oldestClaimedAt: number | null;
  nodesRegistered: number;
  v1NodesRegistered: number;
  v1NodesHealthy: number;
  oldestPingAt: number | null;
  queuedBytes: number;
  storedResponses: number;
  answerBytes: number;
  terminalRecords: number;
  tombstones: number;
  streamSessions: number;
  rateLimitBuckets: number;
}

const ageSeconds = (now: number, since: number | null): number =>
  since === null ? 0 : Math.max(0, (now - since) / 1000);

export function statsFromSnapshot(snapshot: StatsSnapshot, now: number): StoreStats {
  const { oldestQueuedAt, oldestClaimedAt, oldestPingAt, ...counts } = snapshot;
  return {
    ...counts,
    oldestQueuedAgeSeconds: ageSeconds(now, oldestQueuedAt),
    oldestInFlightAgeSeconds: ageSeconds(now, oldestClaimedAt),
    maxLeaseAgeSeconds: ageSeconds(now, oldestPingAt),
  };
}
