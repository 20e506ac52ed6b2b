import { Inject, Injectable } from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
import { RelayConfig } from '../config/relay-config';
import { DEFAULT_MODEL } from '../registry/capabilities';
import { OperatorService } from '../registry/operator.service';
import { RegistryService } from '../registry/registry.service';
import { isPlainObject } from '../common/envelope-body';
import { isTruthy } from '../common/validators';
import { WireResponse } from '../common/wire-response';
import { LifecycleService } from '../lifecycle/lifecycle.service';
import { GatewayErrors } from './gateway.errors';
import { GatewayKeysService } from './keys.service';
import { unixSeconds, v1Model, v2Model } from './openai.format';
import { canonicalModel, type ApiVersion } from './request.validation';

/**
 * What the gateway offers: models (those the live API v1 nodes serve, most widely served first,
 * the catalogue model first on ties), its public key, and its health (gateway.md §3.1–3.3, §6).
 */
@Injectable()
export class CatalogService {
  constructor(
    private readonly registry: RegistryService,
    private readonly keys: GatewayKeysService,
    private readonly operator: OperatorService,
    private readonly config: RelayConfig,
    private readonly lifecycle: LifecycleService,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /** Model ids the live API v1 nodes serve. */
  async liveModels(): Promise<string[]> {
    const counts = new Map<string, number>();
    for (const node of await this.registry.nodes()) {
      if (node.dialect !== 'v1' || !node.capabilities) {
        continue;
      }
      for (const model of node.capabilities.supported_model_ids) {
        counts.set(model, (counts.get(model) ?? 0) + 1);
      }
    }
    return [...counts.entries()]
      .sort(
        (a, b) =>
          b[1] - a[1] ||
          (a[0] === DEFAULT_MODEL ? -1 : b[0] === DEFAULT_MODEL ? 1 : a[0].localeCompare(b[0])),
      )
      .map(([id]) => id);
  }

  /**
   * Whether a v2 request may name this model: a live node serves it (after aliases), or it is the
   * catalogue model, so that with no node at all the answer is 503 "no node", not "no model".
   */
  async knownToV2(): Promise<(id: string) => boolean> {
    const live = new Set(await this.liveModels());
    return (id) => {
      const canonical = canonicalModel(id);
      return canonical === DEFAULT_MODEL || live.has(canonical);
    };
  }

  async list(api: ApiVersion): Promise<object> {
    const ids = await this.liveModels();
    return { object: 'list', data: ids.map(api === 'v1' ? v1Model : v2Model) };
  }

  /** v1 resolves aliases (the canonical object comes back); v2 wants the exact id. */
  async one(api: ApiVersion, id: string): Promise<object> {
    const ids = await this.liveModels();
    const wanted = api === 'v1' ? canonicalModel(id) : id;
    if (!ids.includes(wanted)) {
      throw GatewayErrors.modelNotFound(id);
    }
    return api === 'v1' ? v1Model(wanted) : v2Model(wanted);
  }

  /** 503 `starting` until the relay can take a chat (the demo node registered), like `/healthz`. */
  health(api: ApiVersion): WireResponse {
    const starting = this.lifecycle.starting.length > 0;
    return new WireResponse(
      starting ? 503 : 200,
      {
        status: starting ? 'starting' : 'ok',
        version: api,
        service: this.config.gateway.serviceName,
        timestamp: unixSeconds(this.clock.now()),
      },
      starting ? { 'Retry-After': '1' } : {},
    );
  }

  async publicKey(): Promise<object> {
    if (!this.config.gateway.enabled) {
      throw GatewayErrors.disabled();
    }
    try {
      return { public_key: (await this.keys.relayKey()).publicKeyB64 };
    } catch {
      throw GatewayErrors.publicKeyUnavailable();
    }
  }

  /** Operator-gated exactly like `/relay/unregister` (gateway.md §3.2). */
  async rotate(header: string | undefined, authorization: string | undefined): Promise<object> {
    this.operator.authenticate(header, authorization);
    if (!this.config.gateway.enabled) {
      throw GatewayErrors.disabled();
    }
    return { public_key: (await this.keys.rotate()).publicKeyB64 };
  }

  /**
   * `/server-providers`, `/community/providers`: the existing relay lists curated sample files;
   * this relay ships none (its live nodes are in `/relay/diagnostics`), so the list is empty.
   */
  providers(): object {
    return { object: 'list', data: [] };
  }

  /** `/images/generations`: the body checks of gateway.md §3.6, then 501 (no image models). */
  images(body: unknown): never {
    if (!isTruthy(body)) {
      throw GatewayErrors.emptyChatBody();
    }
    if (!isPlainObject(body)) {
      throw GatewayErrors.imagesBody('Invalid request body: expected a JSON object');
    }
    if (typeof body.prompt !== 'string' || body.prompt.trim() === '') {
      throw GatewayErrors.imagesBody('prompt must be a non-empty string', 'prompt');
    }
    throw GatewayErrors.imagesUnsupported();
  }

  community(): never {
    throw GatewayErrors.communityUnsupported();
  }
}
