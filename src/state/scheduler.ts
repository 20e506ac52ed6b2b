import { createHash } from 'node:crypto';
import type { AtCapacityPolicy, SelectNodeResult, SelectionCandidate } from './state-store';
import { CONTEXT_TIERS, type ContextTier, type NodeCapabilities } from './state.types';

/** A live API v1 node as the scheduler sees it. */
export interface SchedulableNode {
  nodeId: string;
  /** Its name in tie sets ({@link tieName}), computed once when the node registers. */
  tieName: string;
  /** Registration sequence number (registration order). */
  seq: number;
  capabilities: NodeCapabilities | null;
  queueDepth: number;
  inFlightCount: number;
}

/**
 * A node id's name in tie sets: the first 16 hex digits of its SHA-1, as the Redis placement view
 * names it (`lifecycle.redis.lua`), so both stores name the same tie set alike.
 */
export function tieName(nodeId: string): string {
  return createHash('sha1').update(nodeId).digest('hex').slice(0, 16);
}

/** Round-robin memory of the scheduler: a global cursor plus one cursor per tie set. */
export interface CursorState {
  globalCursor: number;
  /** Tie-set digest → seq of the node picked last from that set, least recently used first. */
  tieCursors: Map<string, number>;
  /** Most tie cursors kept (`StoreLimits.maxTieCursors`). */
  readonly limit: number;
}

/** Load scores are rounded to this many parts per unit (both stores compute them). */
export const LOAD_SCORE_SCALE = 1e6;

export function loadScore(
  node: Pick<SchedulableNode, 'capabilities' | 'queueDepth' | 'inFlightCount'>,
): number {
  const concurrency = node.capabilities?.max_concurrency ?? 1;
  const load = (node.queueDepth + node.inFlightCount) / concurrency;
  return Math.round(load * LOAD_SCORE_SCALE) / LOAD_SCORE_SCALE;
}

/**
 * `best_fit_smallest_capable_least_loaded_v1`: among nodes serving the model with a tier at least
 * as large as requested, skip those at capacity, take the smallest tier, then the lowest load, and
 * break ties round-robin. With `busyOk`, a node at its concurrency still counts as available while
 * its queue has room (only a full queue is capacity). Pure apart from the cursor state it advances.
 */
export function schedule(
  nodes: readonly SchedulableNode[],
  model: string,
  tier: ContextTier,
  maxQueueDepth: number,
  cursors: CursorState,
  busyOk = false,
): SelectNodeResult {
  if (nodes.length === 0) {
    return { status: 'no_nodes' };
  }
  const wanted = CONTEXT_TIERS[tier];
  const eligibleTierCounts: Partial<Record<ContextTier, number>> = {};
  const capacityLimitedTierCounts: Partial<Record<ContextTier, number>> = {};
  let eligibleCount = 0;
  let capacityLimitedCount = 0;
  const available: SchedulableNode[] = [];
  for (const node of nodes) {
    const caps = node.capabilities;
    if (
      !caps ||
      CONTEXT_TIERS[caps.active_context_tier] < wanted ||
      caps.maximum_total_context_tokens < wanted ||
      !caps.supported_model_ids.includes(model)
    ) {
      continue;
    }
    const nodeTier = caps.active_context_tier;
    eligibleCount += 1;
    eligibleTierCounts[nodeTier] = (eligibleTierCounts[nodeTier] ?? 0) + 1;
    if (
      (!busyOk && node.inFlightCount >= caps.max_concurrency) ||
      node.queueDepth >= maxQueueDepth
    ) {
      capacityLimitedCount += 1;
      capacityLimitedTierCounts[nodeTier] = (capacityLimitedTierCounts[nodeTier] ?? 0) + 1;
      continue;
    }
    available.push(node);
  }
  if (eligibleCount === 0 || available.length === 0) {
    return {
      status: eligibleCount === 0 ? 'no_match' : 'no_capacity',
      eligibleTierCounts,
      eligibleCount,
      capacityLimitedCount,
      capacityLimitedTierCounts,
    };
  }

  const tierOf = (n: SchedulableNode): number =>
    CONTEXT_TIERS[(n.capabilities as NodeCapabilities).active_context_tier];
  const smallestTier = Math.min(...available.map(tierOf));
  const sameTier = available.filter((n) => tierOf(n) === smallestTier);
  const lowestLoad = Math.min(...sameTier.map(loadScore));
  const ties = sameTier.filter((n) => loadScore(n) === lowestLoad).sort((a, b) => a.seq - b.seq);

  const picked = pickRoundRobin(ties, cursors);
  const caps = picked.capabilities as NodeCapabilities;
  const selected: SelectionCandidate = {
    nodeId: picked.nodeId,
    tier: caps.active_context_tier,
    modelSupport: [...caps.supported_model_ids],
    queueDepth: picked.queueDepth,
    inFlightCount: picked.inFlightCount,
    loadScore: loadScore(picked),
  };
  return { status: 'selected', selected, eligibleTierCounts, eligibleCount };
}

/**
 * {@link schedule} over the fresh nodes; only when none of them can take the request, over the
 * fresh and the second-tier ones: lapsed nodes (past their lease, within the grace) and fallback
 * nodes (the demo node). A late node, or the demo node, still gets work when it is the only one
 * that could do it, and never while a fresh node could. When every matching node is at capacity
 * and `atCapacity` is `least_loaded`, the same two tiers again with busy nodes counted in
 * (`busyOk`): the request queues at a busy fresh node before a busy second-tier one.
 */
export function scheduleFreshFirst(
  fresh: readonly SchedulableNode[],
  lapsed: readonly SchedulableNode[],
  model: string,
  tier: ContextTier,
  maxQueueDepth: number,
  cursors: CursorState,
  atCapacity: AtCapacityPolicy = 'refuse',
): SelectNodeResult {
  const tiers = (busyOk: boolean): SelectNodeResult => {
    const first = schedule(fresh, model, tier, maxQueueDepth, cursors, busyOk);
    if (first.status === 'selected' || lapsed.length === 0) {
      return first;
    }
    const all = [...fresh, ...lapsed].sort((a, b) => a.seq - b.seq);
    return schedule(all, model, tier, maxQueueDepth, cursors, busyOk);
  };
  const strict = tiers(false);
  if (strict.status !== 'no_capacity' || atCapacity === 'refuse') {
    return strict;
  }
  const busy = tiers(true);
  return busy.status === 'selected' ? busy : strict;
}

function pickRoundRobin(ties: SchedulableNode[], cursors: CursorState): SchedulableNode {
  const first = ties[0] as SchedulableNode;
  if (ties.length === 1) {
    cursors.globalCursor = first.seq + 1;
    return first;
  }
  // Named by the ties' short names, not their ids: real ids are ~600-character keys, and hashing
  // a thousand of them on every placement cost ~1 ms.
  const tieKey = createHash('sha256')
    .update(ties.map((n) => n.tieName).join('\n'))
    .digest('hex');
  const previous = cursors.tieCursors.get(tieKey);
  let picked: SchedulableNode;
  if (previous === undefined) {
    picked = ties.find((n) => n.seq >= cursors.globalCursor) ?? first;
  } else {
    picked = ties.find((n) => n.seq > previous) ?? first;
  }
  cursors.tieCursors.delete(tieKey);
  cursors.tieCursors.set(tieKey, picked.seq);
  if (cursors.tieCursors.size > cursors.limit) {
    const oldest = cursors.tieCursors.keys().next().value;
    if (oldest !== undefined) {
      cursors.tieCursors.delete(oldest);
    }
  }
  cursors.globalCursor = picked.seq + 1;
  return picked;
}
