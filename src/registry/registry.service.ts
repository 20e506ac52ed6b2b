import { Inject, Injectable } from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
import { newControlCredential, sha256Hex } from '../common/ids';
import { Errors } from '../common/relay-error';
import { RelayConfig } from '../config/relay-config';
import { STATE_STORE, type SelectNodeResult, type StateStore } from '../state/state-store';
import type { ContextTier, NodeView } from '../state/state.types';
import { normaliseCapabilities } from './capabilities';

export interface V1Registration {
  /** The raw control credential, present only on the first registration. */
  credential: string | null;
}

/** Who is registered, under which dialect and lease, and which node a client should use. */
@Injectable()
export class RegistryService {
  /** Keys of this process's own fallback nodes (the demo node), set before they register. */
  private readonly fallbackIds = new Set<string>();

  constructor(
    @Inject(STATE_STORE) private readonly store: StateStore,
    @Inject(CLOCK) private readonly clock: Clock,
    private readonly config: RelayConfig,
  ) {}

  /** A `/sink` heartbeat. False when the key belongs to an API v1 node (no work crosses dialects). */
  async pingLegacy(nodeId: string, pollingUntil?: number): Promise<boolean> {
    const result = await this.store.upsertNode({
      nodeId,
      dialect: 'legacy',
      pollingUntil,
      now: this.clock.now(),
    });
    if (result.status === 'nodes_full') {
      throw Errors.capacity('Relay node registry is full', 30, 503);
    }
    return result.status !== 'dialect_conflict';
  }

  /**
   * Marks a key as this process's fallback node (the demo node): when it registers, the scheduler
   * offers it only when no other fresh node can take the request, and the public node lists show
   * it apart. It still registers, polls and answers over HTTP like any node.
   */
  markFallback(nodeId: string): void {
    this.fallbackIds.add(nodeId);
  }

  /** `/servers/register`: validates capabilities, issues the control credential once. */
  async registerV1(nodeId: string, rawCapabilities: unknown): Promise<V1Registration> {
    const capabilities = normaliseCapabilities(rawCapabilities);
    const credential = newControlCredential();
    const result = await this.store.upsertNode({
      nodeId,
      dialect: 'v1',
      capabilities,
      newCredentialDigest: sha256Hex(credential),
      fallback: this.fallbackIds.has(nodeId),
      now: this.clock.now(),
    });
    if (result.status === 'nodes_full') {
      throw Errors.capacity('Relay node registry is full', 30, 503);
    }
    if (result.status !== 'created' && result.status !== 'renewed') {
      throw Errors.serverNotFound();
    }
    return { credential: result.credentialIssued ? credential : null };
  }

  /** `/servers/poll` heartbeat: renews the lease, replaces capabilities when sent; 404 if unknown. */
  async renewV1(nodeId: string, rawCapabilities: unknown, pollingUntil: number): Promise<void> {
    const capabilities =
      rawCapabilities === undefined || rawCapabilities === null
        ? undefined
        : normaliseCapabilities(rawCapabilities);
    const result = await this.store.upsertNode({
      nodeId,
      dialect: 'v1',
      capabilities,
      requireExisting: true,
      pollingUntil,
      fallback: this.fallbackIds.has(nodeId),
      now: this.clock.now(),
    });
    if (result.status !== 'renewed') {
      throw Errors.serverNotFound();
    }
  }

  /** Removes a node; API v1 nodes must prove ownership with their control credential. */
  async unregister(nodeId: string, credential: string | null): Promise<boolean> {
    const result = await this.store.unregisterNode({
      nodeId,
      credentialDigest: credential === null ? null : sha256Hex(credential),
      now: this.clock.now(),
    });
    if (result.status === 'forbidden') {
      throw Errors.controlCredential();
    }
    return result.status === 'removed';
  }

  /** Operator removal: no owner credential needed. */
  async forceUnregister(nodeId: string): Promise<boolean> {
    const result = await this.store.unregisterNode({
      nodeId,
      credentialDigest: null,
      force: true,
      now: this.clock.now(),
    });
    return result.status === 'removed';
  }

  select(model: string, tier: ContextTier): Promise<SelectNodeResult> {
    return this.store.selectNode({
      model,
      tier,
      maxQueueDepth: this.config.maxQueuePerNode,
      now: this.clock.now(),
    });
  }

  pickLegacy(): Promise<string | null> {
    return this.store.pickLegacyNode(this.clock.now());
  }

  nodes(): Promise<NodeView[]> {
    return this.store.listNodes(this.clock.now());
  }
}
