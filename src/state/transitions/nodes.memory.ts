/** Registry transitions; the twin of nodes.redis.lua (one function per script, same order). */
import { randomInt } from 'node:crypto';
import { QueueOrder } from '../queue-order';
import { scheduleFreshFirst, tieName, type SchedulableNode } from '../scheduler';
import type {
  SelectNodeCommand,
  SelectNodeResult,
  SummarizeNodesCommand,
  UnregisterNodeCommand,
  UnregisterNodeResult,
  UpsertNodeCommand,
  UpsertNodeResult,
} from '../state-store';
import type { NodeSummary, NodeView } from '../state.types';
import {
  credentialMatches,
  evictAt,
  isGone,
  isLapsed,
  nodeView,
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
    if (
      cmd.maxPerGroup !== undefined &&
      cmd.origin !== undefined &&
      (s.groups.get(cmd.origin.group)?.size ?? 0) >= cmd.maxPerGroup
    ) {
      return { status: 'group_full', transitions: tx.t };
    }
    if (s.nodes.size >= s.limits.maxNodes && !makeRoom(tx, cmd)) {
      return { status: 'nodes_full', transitions: tx.t };
    }
    createNode(tx, cmd);
    const issued = cmd.dialect === 'v1' && cmd.newCredentialDigest !== undefined;
    return { status: 'created', credentialIssued: issued, transitions: tx.t };
  }
  if (!ownedBy(node, cmd)) {
    return { status: 'forbidden', transitions: tx.t };
  }
  if (cmd.origin !== undefined && (cmd.presentedDigest !== undefined || node.owner === null)) {
    // Shown the credential (or bound to no one yet): the key now belongs to the caller's address.
    node.owner = cmd.origin.owner;
  }
  if (node.dialect !== cmd.dialect) {
    if (cmd.dialect === 'legacy' || cmd.requireExisting) {
      return { status: 'dialect_conflict', transitions: tx.t };
    }
    // A `/sink` node re-registering through API v1 becomes a v1 node: its legacy work cannot be
    // served by a v1 node, so it ends as cancelled; it moves to the end of the registry.
    removeNode(tx, node, 'unregistered', false);
    createNode(tx, cmd, node.owner);
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

/**
 * Whether the caller may act for a live node: with its credential from anywhere, without one only
 * from the address the node is bound to (an unbound node, or a caller of unknown origin, passes).
 */
function ownedBy(node: NodeRec, cmd: UpsertNodeCommand): boolean {
  if (cmd.presentedDigest !== undefined) {
    return node.dialect === 'v1' && credentialMatches(node.credentialDigest, cmd.presentedDigest);
  }
  return cmd.origin === undefined || node.owner === null || node.owner === cmd.origin.owner;
}

/**
 * Open registration with a full registry: the group holding the most nodes (ties: the greatest
 * name) gives up its newest one (`capacity_loss`) when it holds at least two more than the
 * caller's group, so an address can always register while others hold more than it.
 */
function makeRoom(tx: Tx, cmd: UpsertNodeCommand): boolean {
  const { s } = tx;
  if (cmd.maxPerGroup === undefined || cmd.origin === undefined) {
    return false;
  }
  const own = s.groups.get(cmd.origin.group)?.size ?? 0;
  let largest: [string, Set<string>] | null = null;
  for (const entry of s.groups) {
    if (
      largest === null ||
      entry[1].size > largest[1].size ||
      (entry[1].size === largest[1].size && entry[0] > largest[0])
    ) {
      largest = entry;
    }
  }
  if (largest === null || largest[1].size <= own + 1) {
    return false;
  }
  const newest = [...largest[1]].pop();
  const victim = newest === undefined ? undefined : s.nodes.get(newest);
  if (!victim) {
    return false;
  }
  removeNode(tx, victim, 'capacity_loss', true);
  return true;
}

/** A new node, counted in the caller's group; `owner` binds it elsewhere (a dialect change). */
function createNode(tx: Tx, cmd: UpsertNodeCommand, owner?: string | null): void {
  const { s } = tx;
  const group = cmd.origin?.group ?? null;
  const node: NodeRec = {
    nodeId: cmd.nodeId,
    tieName: tieName(cmd.nodeId),
    dialect: cmd.dialect,
    seq: s.nodeSeq++,
    lastPingAt: tx.now,
    pollingUntil: cmd.pollingUntil ?? 0,
    capabilities: cmd.dialect === 'v1' ? (cmd.capabilities ?? null) : null,
    credentialDigest: cmd.dialect === 'v1' ? (cmd.newCredentialDigest ?? null) : null,
    fallback: cmd.dialect === 'v1' && cmd.fallback === true,
    owner: owner !== undefined ? owner : (cmd.origin?.owner ?? null),
    group,
    keyUnusable: false,
    queue: new QueueOrder(),
    claims: new Map(),
    activeClaims: new Set(),
  };
  s.nodes.set(node.nodeId, node);
  if (group !== null) {
    const members = s.groups.get(group) ?? new Set<string>();
    members.add(node.nodeId);
    s.groups.set(group, members);
  }
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
    if (!isGone(s, node, now)) {
      out.push(nodeView(s, node));
    }
  }
  return out;
}

/** tpSummarizeNodes: counts of the live nodes, and the first `limit` of them as views. */
export function summarizeNodes(s: MemoryState, cmd: SummarizeNodesCommand): NodeSummary {
  const out: NodeSummary = {
    legacy: 0,
    v1: 0,
    fallback: 0,
    unusable: 0,
    listed: [],
    fallbackListed: [],
  };
  for (const node of s.nodes.values()) {
    if (isGone(s, node, cmd.now)) {
      continue;
    }
    if (node.dialect === 'legacy') {
      out.legacy += 1;
    } else if (node.fallback) {
      out.fallback += 1;
    } else {
      out.v1 += 1;
      out.unusable += node.keyUnusable ? 1 : 0;
    }
    const list = node.fallback ? out.fallbackListed : out.listed;
    if (list.length < cmd.limit) {
      list.push(nodeView(s, node));
    }
  }
  return out;
}

/** tpMarkKeyUnusable */
export function markKeyUnusable(s: MemoryState, nodeId: string): boolean {
  const node = s.nodes.get(nodeId);
  if (!node) {
    return false;
  }
  node.keyUnusable = true;
  return true;
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
 * tpSelectNode: the scheduler over the fresh nodes, then over the lapsed and fallback ones too (and
 * again with busy nodes counted in, when `atCapacity` says so); nodes whose key is unusable or that
 * the caller excludes are never offered. Advances its cursors.
 */
export function selectNode(s: MemoryState, cmd: SelectNodeCommand): SelectNodeResult {
  const fresh: SchedulableNode[] = [];
  const lapsed: SchedulableNode[] = [];
  const excluded = cmd.exclude ?? [];
  for (const node of s.nodes.values()) {
    if (
      node.dialect !== 'v1' ||
      node.keyUnusable ||
      isGone(s, node, cmd.now) ||
      excluded.includes(node.nodeId)
    ) {
      continue;
    }
    (node.fallback || isLapsed(s, node, cmd.now) ? lapsed : fresh).push({
      nodeId: node.nodeId,
      tieName: node.tieName,
      seq: node.seq,
      capabilities: node.capabilities,
      queueDepth: node.queue.size,
      inFlightCount: node.activeClaims.size,
    });
  }
  return scheduleFreshFirst(
    fresh,
    lapsed,
    cmd.model,
    cmd.tier,
    cmd.maxQueueDepth,
    s.cursors,
    cmd.atCapacity,
  );
}
