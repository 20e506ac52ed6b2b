import { Inject, Injectable } from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
import { newControlCredential, sha256Hex } from '../common/ids';
import { Errors } from '../common/relay-error';
import { RelayConfig } from '../config/relay-config';
import { STATE_STORE, type StateStore, type UpsertNodeResult } from '../state/state-store';
import type { NodeOrigin, NodeView } from '../state/state.types';
import { normaliseCapabilities } from './capabilities';
import { isUsableNodeKey } from './node-key';
import { RegistryViewService } from './registry-view.service';
import { TokenService } from './token.service';

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
    private readonly tokens: TokenService,
    private readonly view: RegistryViewService,
  ) {}

  /**
   * Most nodes one address may hold: only while registration is open. With a node token, token
   * holders are trusted (an operator vouched for them) and only the registry's cap applies.
   */
  private get share(): number | undefined {
    return this.tokens.open ? this.config.maxNodesPerAddress : undefined;
  }

  /**
   * Whether a node's address bounds what it may hold (its registrations, its held polls): only
   * while registration is open, for the reason {@link share} gives.
   */
  get boundsNodesByAddress(): boolean {
    return this.tokens.open;
  }

  /**
   * A `/sink` heartbeat. False when the key belongs to an API v1 node (no work crosses dialects),
   * or to a live node at another address: the caller is answered as if nothing were queued.
   */
  async pingLegacy(nodeId: string, origin: NodeOrigin, pollingUntil?: number): Promise<boolean> {
    const result = await this.store.upsertNode({
      nodeId,
      dialect: 'legacy',
      pollingUntil,
      origin,
      maxPerGroup: this.share,
      now: this.clock.now(),
    });
    refuseNewNode(result);
    this.noteCreated(result);
    return result.status === 'created' || result.status === 'renewed';
  }

  /**
   * Marks a key as this process's fallback node (the demo node): when it registers, the scheduler
   * offers it only when no other fresh node can take the request, and the public node lists show
   * it apart. It still registers, polls and answers over HTTP like any node.
   */
  markFallback(nodeId: string): void {
    this.fallbackIds.add(nodeId);
  }

  /**
   * `/servers/register`: checks the key and the capabilities, issues the control credential once.
   * A live key is renewed only for its owner: from the address it is bound to, or with its
   * control credential (403 otherwise).
   */
  async registerV1(
    nodeId: string,
    rawCapabilities: unknown,
    origin: NodeOrigin,
    credential?: string,
  ): Promise<V1Registration> {
    const capabilities = normaliseCapabilities(rawCapabilities);
    if (!isUsableNodeKey(nodeId)) {
      throw Errors.invalidServerKey();
    }
    const issued = newControlCredential();
    const result = await this.store.upsertNode({
      nodeId,
      dialect: 'v1',
      capabilities,
      newCredentialDigest: sha256Hex(issued),
      fallback: this.fallbackIds.has(nodeId),
      origin,
      presentedDigest: credential === undefined ? undefined : sha256Hex(credential),
      maxPerGroup: this.share,
      now: this.clock.now(),
    });
    refuseNewNode(result);
    this.noteCreated(result);
    if (result.status === 'forbidden') {
      throw Errors.controlCredential();
    }
    if (result.status !== 'created' && result.status !== 'renewed') {
      throw Errors.serverNotFound();
    }
    return { credential: result.credentialIssued ? issued : null };
  }

  /**
   * `/servers/poll` heartbeat: renews the lease, replaces capabilities when sent; 404 if unknown,
   * 403 for a caller that is not the node's owner (as for registration).
   */
  async renewV1(
    nodeId: string,
    rawCapabilities: unknown,
    pollingUntil: number,
    origin: NodeOrigin,
    credential?: string,
  ): Promise<void> {
    const capabilities =
      rawCapabilities === undefined || rawCapabilities === null
        ? undefined
        : normaliseCapabilities(rawCapabilities);
    if (!isUsableNodeKey(nodeId)) {
      // A key registered before keys were checked: it lapses, and may not register again.
      throw Errors.invalidServerKey();
    }
    const result = await this.store.upsertNode({
      nodeId,
      dialect: 'v1',
      capabilities,
      requireExisting: true,
      pollingUntil,
      fallback: this.fallbackIds.has(nodeId),
      origin,
      presentedDigest: credential === undefined ? undefined : sha256Hex(credential),
      now: this.clock.now(),
    });
    if (result.status === 'forbidden') {
      throw Errors.controlCredential();
    }
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
    if (result.status === 'removed') {
      this.view.changed();
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
    if (result.status === 'removed') {
      this.view.changed();
    }
    return result.status === 'removed';
  }

  /** A node joined: the public views read the registry again. */
  private noteCreated(result: UpsertNodeResult): void {
    if (result.status === 'created') {
      this.view.changed();
    }
  }

  pickLegacy(): Promise<string | null> {
    return this.store.pickLegacyNode(this.clock.now());
  }

  nodes(): Promise<NodeView[]> {
    return this.store.listNodes(this.clock.now());
  }
}

/** A new key past the registry's cap (503) or past its address's share (429). */
function refuseNewNode(result: UpsertNodeResult): void {
  if (result.status === 'nodes_full') {
    throw Errors.capacity('Relay node registry is full', 30, 503);
  }
  if (result.status === 'group_full') {
    throw Errors.capacity(
      'Too many compute nodes are registered from this address; retry later',
      30,
      429,
    );
  }
}
