import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Injectable } from '@nestjs/common';
import { Errors } from '../common/relay-error';
import { RelayConfig } from '../config/relay-config';
import {
  LISTED_NODES,
  RegistryViewService,
  type RegistryView,
} from '../registry/registry-view.service';
import { RateLimitService } from '../edge/rate-limit.service';
import { loadScore } from '../state/scheduler';
import type { NodeCapabilities, NodeOrigin, NodeView } from '../state/state.types';

/** The relay's own package version (package.json ships next to dist/ in every build). */
const PACKAGE_VERSION = readPackageVersion();

function readPackageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
      version?: unknown;
    };
    return typeof pkg.version === 'string' ? sanitise(pkg.version) || 'dev' : 'dev';
  } catch {
    return 'dev';
  }
}

const ENV_ALIASES: Record<string, 'prod' | 'staging' | 'dev'> = {
  prod: 'prod',
  production: 'prod',
  staging: 'staging',
  stage: 'staging',
  dev: 'dev',
  development: 'dev',
  local: 'dev',
  localhost: 'dev',
  testing: 'dev',
  test: 'dev',
};

/** Node view as `/relay/diagnostics` and `/healthz` print it (spec §4.4.11). */
/**
 * Capabilities with at most `models` model ids, and `supported_model_count` when some were left
 * out: the public node lists stay small whatever a node declares (spec §4.2 allows 64 of 128
 * characters).
 */
export function compactCapabilities(
  caps: NodeCapabilities | null,
  models: number,
): Record<string, unknown> | null {
  if (caps === null || caps.supported_model_ids.length <= models) {
    return caps === null ? null : { ...caps };
  }
  return {
    ...caps,
    supported_model_ids: caps.supported_model_ids.slice(0, models),
    supported_model_count: caps.supported_model_ids.length,
  };
}

/** Model ids each listed node shows in `/relay/diagnostics` (`/healthz` shows fewer). */
export const LISTED_MODELS = 16;

export function describeNode(
  node: NodeView,
  now: number,
  key: string,
  models = LISTED_MODELS,
): Record<string, unknown> {
  const v1 = node.dialect === 'v1';
  return {
    server_public_key: key,
    age_seconds: Math.round(now - node.lastPingAt) / 1000,
    next_ping_in_x_seconds: node.leaseMs / 1000,
    queue_depth: node.queueDepth,
    in_flight_count: v1 ? node.inFlightCount : 0,
    max_concurrency: v1 ? (node.capabilities?.max_concurrency ?? null) : null,
    load_score: v1 ? loadScore(node) : node.queueDepth,
    capabilities: v1 ? compactCapabilities(node.capabilities, models) : null,
  };
}

/** Read-only views of the relay for browsers and operators: diagnostics, models, release metadata. */
@Injectable()
export class DiscoveryService {
  constructor(
    private readonly config: RelayConfig,
    private readonly views: RegistryViewService,
    private readonly limits: RateLimitService,
  ) {}

  /** The upstream fields shared by `/healthz` and `/relay/diagnostics` (spec §5.3). */
  upstream(): { relayOnly: boolean; active: string[]; required: string[]; configured: string[] } {
    const c = this.config;
    const relayOnly = !c.requireUpstreamHealth && !c.explicitUpstreamConfig;
    const active = relayOnly
      ? []
      : c.upstreamUrlConfigured || c.configuredUpstreams.length === 0
        ? [c.upstreamUrl]
        : c.configuredUpstreams;
    return {
      relayOnly,
      active,
      required: c.requireUpstreamHealth ? [c.upstreamUrl] : [],
      configured: c.configuredUpstreams,
    };
  }

  /**
   * `/relay/diagnostics` as JSON text, rendered once per registry reading and handed to every
   * reader. The node lists hold the first {@link LISTED_NODES} nodes (registration order, shown
   * sorted by key), the totals count them all; the demo node is counted and listed apart. The full
   * form is rate-limited per address; `summary` (the counts alone, what the page polls) is not.
   */
  async diagnostics(summary: boolean, origin: NodeOrigin): Promise<string> {
    if (!summary) {
      await this.chargeDiagnostics(origin);
    }
    const view = await this.views.view();
    return view.memo(summary ? 'diagnostics-summary' : 'diagnostics', () =>
      JSON.stringify(summary ? this.diagnosticsSummary(view) : this.diagnosticsBody(view)),
    );
  }

  private diagnosticsBody(view: RegistryView): object {
    const { summary: s, at } = view;
    const byKey = (a: NodeView, b: NodeView): number =>
      a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0;
    const listed = [...s.listed].sort(byKey);
    const all = listed.map((n) => describeNode(n, at, n.nodeId));
    const v1 = listed.filter((n) => n.dialect === 'v1').map((n) => describeNode(n, at, n.nodeId));
    const demo = [...s.fallbackListed].sort(byKey).map((n) => describeNode(n, at, n.nodeId));
    const total = s.legacy + s.v1;
    return {
      ...this.upstreamHead(),
      registered_compute_nodes: all,
      total_registered_compute_nodes: total,
      api_v1_registered_compute_nodes: v1,
      total_api_v1_registered_compute_nodes: s.v1,
      ...(demo.length > 0 ? { demo_compute_nodes: demo } : {}),
      ...(total > all.length || s.fallback > demo.length
        ? { listed_compute_nodes_limit: LISTED_NODES }
        : {}),
      ...(s.unusable > 0 ? { unusable_compute_nodes_count: s.unusable } : {}),
      configured_upstream_servers: this.config.configuredUpstreams,
    };
  }

  private diagnosticsSummary(view: RegistryView): object {
    const s = view.summary;
    return {
      ...this.upstreamHead(),
      total_registered_compute_nodes: s.legacy + s.v1,
      total_api_v1_registered_compute_nodes: s.v1,
      demo_compute_nodes_count: s.fallback,
      unusable_compute_nodes_count: s.unusable,
      configured_upstream_servers: this.config.configuredUpstreams,
    };
  }

  /** The upstream fields both diagnostics forms open with. */
  private upstreamHead(): object {
    const up = this.upstream();
    return {
      relay_only: up.relayOnly,
      upstream_health_required: this.config.requireUpstreamHealth,
      active_upstream_servers: up.active,
      required_upstream_servers: up.required,
    };
  }

  /** The full diagnostics body's per-address limit (`TOKENPLACE_RELAY_DIAGNOSTICS_RATE_LIMIT`). */
  private async chargeDiagnostics(origin: NodeOrigin): Promise<void> {
    const limit = this.config.diagnosticsRateLimit;
    if (limit === null) {
      return;
    }
    const result = await this.limits.hit(`d:diagnostics:${origin.group}`, limit);
    if (!result.allowed) {
      throw Errors.rateLimited(limit.text, result.resetSeconds);
    }
  }

  /** `GET /api/v1/relay/server-nodes`: the configured upstream pool (spec §4.4.14). */
  serverNodes(): object {
    const pool = this.config.configuredUpstreams;
    return {
      configured_servers: pool,
      primary: pool[0] ?? null,
      secondary: pool.slice(1),
      total: pool.length,
    };
  }

  /** `/api/v1/meta` and `/api/v1/version` (spec §4.4.12). */
  meta(host: string | undefined): object {
    const c = this.config;
    const explicit = (c.deployEnv || '').trim().toLowerCase();
    const byProfile = ENV_ALIASES[c.tokenPlaceEnv.trim().toLowerCase()];
    const hostname = (host ?? '').split(':')[0]?.toLowerCase() ?? '';
    const byHost =
      hostname === 'token.place'
        ? 'prod'
        : hostname === 'staging.token.place'
          ? 'staging'
          : undefined;
    const environment = explicit
      ? (ENV_ALIASES[explicit] ?? 'dev')
      : (byHost ?? (c.tokenPlaceEnv !== 'development' ? byProfile : undefined) ?? 'dev');
    // Spec §4.4.12: release version, else the packaged version, else `dev`; the image tag is the ref.
    const release = sanitise(c.releaseVersion);
    const version = release && release !== 'dev' ? release : PACKAGE_VERSION;
    const ref =
      c.imageTag && /^(main-[0-9a-f]{7,40}|sha-[0-9a-f]{7,40}|v?\d+\.\d+\.\d+.*)$/.test(c.imageTag)
        ? c.imageTag
        : c.gitSha
          ? `main-${c.gitSha.slice(0, 7)}`
          : undefined;
    const display = environment === 'prod' ? version : (ref ?? version);
    return { environment, version, label: `${environment} ${display}`, ...(ref ? { ref } : {}) };
  }
}

function sanitise(value: string): string {
  return value.replace(/[^A-Za-z0-9._-]/g, '').slice(0, 64);
}
