import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Injectable } from '@nestjs/common';
import { RelayConfig } from '../config/relay-config';
import { RegistryService } from '../registry/registry.service';
import { loadScore } from '../state/scheduler';
import type { NodeView } from '../state/state.types';

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
export function describeNode(node: NodeView, now: number, key: string): Record<string, unknown> {
  const v1 = node.dialect === 'v1';
  return {
    server_public_key: key,
    age_seconds: Math.round(now - node.lastPingAt) / 1000,
    next_ping_in_x_seconds: node.leaseMs / 1000,
    queue_depth: node.queueDepth,
    in_flight_count: v1 ? node.inFlightCount : 0,
    max_concurrency: v1 ? (node.capabilities?.max_concurrency ?? null) : null,
    load_score: v1
      ? loadScore({
          nodeId: node.nodeId,
          seq: 0,
          capabilities: node.capabilities,
          queueDepth: node.queueDepth,
          inFlightCount: node.inFlightCount,
        })
      : node.queueDepth,
    capabilities: v1 ? node.capabilities : null,
  };
}

/**
 * The public node lists count the compute nodes people run; the demo node (`--use_mock_llm`, a
 * fallback node) is shown apart, as the existing relay's mock mode shows no node.
 */
export function apartFromDemo(listed: NodeView[]): { nodes: NodeView[]; demo: NodeView[] } {
  return { nodes: listed.filter((n) => !n.fallback), demo: listed.filter((n) => n.fallback) };
}

/** Read-only views of the relay for browsers and operators: diagnostics, models, release metadata. */
@Injectable()
export class DiscoveryService {
  constructor(
    private readonly config: RelayConfig,
    private readonly registry: RegistryService,
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

  /** Node lists sorted by key; the demo node only in `demo_compute_nodes` ({@link apartFromDemo}). */
  async diagnostics(now: number): Promise<object> {
    const listed = (await this.registry.nodes()).sort((a, b) =>
      a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0,
    );
    const { nodes, demo: demoNodes } = apartFromDemo(listed);
    const all = nodes.map((n) => describeNode(n, now, n.nodeId));
    const v1 = nodes.filter((n) => n.dialect === 'v1').map((n) => describeNode(n, now, n.nodeId));
    const demo = demoNodes.map((n) => describeNode(n, now, n.nodeId));
    const up = this.upstream();
    return {
      relay_only: up.relayOnly,
      upstream_health_required: this.config.requireUpstreamHealth,
      active_upstream_servers: up.active,
      required_upstream_servers: up.required,
      registered_compute_nodes: all,
      total_registered_compute_nodes: all.length,
      api_v1_registered_compute_nodes: v1,
      total_api_v1_registered_compute_nodes: v1.length,
      ...(demo.length > 0 ? { demo_compute_nodes: demo } : {}),
      configured_upstream_servers: up.configured,
    };
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
