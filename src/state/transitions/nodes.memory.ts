/** Registry transitions; the twin of nodes.redis.lua (one function per script, same order). */
import { randomInt } from 'node:crypto';
import { QueueOrder } from '../queue-order';
import { scheduleFreshFirst, type SchedulableNode } from '../scheduler';
import type {
  SelectNodeCommand,
  SelectNodeResult,
  UnregisterNodeCommand,
  UnregisterNodeResult,
  UpsertNodeCommand,
  UpsertNodeResult,
} from '../state-store';
import type { NodeView } from '../state.types';
import {
  credentialMatches,
  evictAt,
  isGone,
  isLapsed,
  leaseMs,
  removeNode,
  touch,
} from './lifecycle.memory';
import { begin, type MemoryState, type NodeRec, type Tx } from './memory-state';

/** tpUpsertNode */
export function upsertNode(s: MemoryState, cmd: UpsertNodeCommand): UpsertNodeResult {
  const tx = begin(s, cmd.now);
  let node = s.nodes.get(cmd.nodeId);
  if (node && isGone(s, node, tx.now)) {
    removeNode(tx, node, 'stale_lease', true);
    node = undefined;
  }
  if (!node) {
    if (cmd.requireExisting) {
      return { status: 'not_found', transitions: tx.t };
    }
    if (s.nodes.size >= s.limits.maxNodes) {
      return { status: 'nodes_full', transitions: tx.t };
    }
    createNode(tx, cmd);
    const issued = cmd.dialect === 'v1' && cmd.newCredentialDigest !== undefined;
    return { status: 'created', credentialIssued: issued, transitions: tx.t };
  }
  if (node.dialect !== cmd.dialect) {
    if (cmd.dialect === 'legacy' || cmd.requireExisting) {
      return { status: 'dialect_conflict', transitions: tx.t };
    }
    // A `/sink` node re-registering through API v1 becomes a v1 node: its legacy work cannot be
    // served by a v1 node, so it ends as cancelled; it moves to the end of the registry.
    removeNode(tx, node, 'unregistered', false);
    createNode(tx, cmd);
    const issued = cmd.newCredentialDigest !== undefined;
    return { status: 'created', credentialIssued: issued, transitions: tx.t };
  }
  touch(tx, node);
  if (cmd.pollingUntil !== undefined) {
    node.pollingUntil = cmd.pollingUntil;
  }
  if (cmd.capabilities !== undefined) {
    node.capabilities = cmd.capabilities;
  }
  if (cmd.fallback !== undefined && node.dialect === 'v1') {
    node.fallback = cmd.fallback;
  }
  let issued = false;
  if (node.dialect === 'v1' && node.credentialDigest === null && cmd.newCredentialDigest) {
    node.credentialDigest = cmd.newCredentialDigest;
    issued = true;
  }
  return { status: 'renewed', credentialIssued: issued, transitions: tx.t };
}

function createNode(tx: Tx, cmd: UpsertNodeCommand): void {
  const { s } = tx;
  const node: NodeRec = {
    nodeId: cmd.nodeId,
    dialect: cmd.dialect,
    seq: s.nodeSeq++,
    lastPingAt: tx.now,
    pollingUntil: cmd.pollingUntil ?? 0,
    capabilities: cmd.dialect === 'v1' ? (cmd.capabilities ?? null) : null,
    credentialDigest: cmd.dialect === 'v1' ? (cmd.newCredentialDigest ?? null) : null,
    fallback: cmd.dialect === 'v1' && cmd.fallback === true,
    queue: new QueueOrder(),
    claims: new Map(),
    activeClaims: new Set(),
  };
  s.nodes.set(node.nodeId, node);
  s.leases[node.dialect].set(node.nodeId, evictAt(s, node));
  if (node.dialect === 'legacy') {
    s.legacyPos.set(node.nodeId, s.legacyIds.length);
    s.legacyIds.push(node.nodeId);
  }
}

/** tpUnregisterNode */
export function unregisterNode(s: MemoryState, cmd: UnregisterNodeCommand): UnregisterNodeResult {
  const tx = begin(s, cmd.now);
  const node = s.nodes.get(cmd.nodeId);
  if (!node) {
    return { status: 'absent', transitions: tx.t };
  }
  if (
    node.dialect === 'v1' &&
    cmd.force !== true &&
    !credentialMatches(node.credentialDigest, cmd.credentialDigest)
  ) {
    return { status: 'forbidden', transitions: tx.t };
  }
  removeNode(tx, node, 'unregistered', true);
  return { status: 'removed', transitions: tx.t };
}

/** tpListNodes */
export function listNodes(s: MemoryState, now: number): NodeView[] {
  const out: NodeView[] = [];
  for (const node of s.nodes.values()) {
    if (isGone(s, node, now)) {
      continue;
    }
    out.push({
      nodeId: node.nodeId,
      dialect: node.dialect,
      lastPingAt: node.lastPingAt,
      leaseMs: leaseMs(s, node.dialect),
      queueDepth: node.queue.size,
      inFlightCount: node.activeClaims.size,
      capabilities: node.capabilities,
      fallback: node.fallback,
    });
  }
  return out;
}

/** tpPickLegacyNode: a random fresh legacy node, else a lapsed one (gone ones are the sweep's). */
export function pickLegacyNode(s: MemoryState, now: number): string | null {
  const count = s.legacyIds.length;
  const start = count > 0 ? randomInt(count) : 0;
  let lapsed: string | null = null;
  for (let i = 0; i < count; i += 1) {
    const id = s.legacyIds[(start + i) % count] as string;
    const node = s.nodes.get(id);
    if (!node || isGone(s, node, now)) {
      continue;
    }
    if (!isLapsed(s, node, now)) {
      return id;
    }
    lapsed ??= id;
  }
  return lapsed;
}

/**
 * tpSelectNode: the scheduler over the fresh nodes, then over the lapsed and fallback ones too;
 * advances its cursors.
 */
export function selectNode(s: MemoryState, cmd: SelectNodeCommand): SelectNodeResult {
  const fresh: SchedulableNode[] = [];
  const lapsed: SchedulableNode[] = [];
  for (const node of s.nodes.values()) {
    if (node.dialect !== 'v1' || isGone(s, node, cmd.now)) {
      continue;
    }
    (node.fallback || isLapsed(s, node, cmd.now) ? lapsed : fresh).push({
      nodeId: node.nodeId,
      seq: node.seq,
      capabilities: node.capabilities,
      queueDepth: node.queue.size,
      inFlightCount: node.activeClaims.size,
    });
  }
  return scheduleFreshFirst(fresh, lapsed, cmd.model, cmd.tier, cmd.maxQueueDepth, s.cursors);
}
