import { BoolEnv, IntEnv, PatternEnv, TextEnv, splitList } from './env-kinds';

/**
 * What /healthz reports beyond the relay itself: the upstream of legacy deployments (reported
 * only; the relay never calls an upstream) and how node keys are shown.
 */
export class HealthEnv {
  @PatternEnv(
    'TOKENPLACE_RELAY_UPSTREAM_URL',
    'Upstream GPU endpoint of legacy deployments; reported by /healthz only when set',
    /^(https?:\/\/\S+)?$/,
    'must be an http(s) URL',
  )
  upstreamUrl = '';

  @TextEnv(
    ['TOKENPLACE_GPU_HOST', 'GPU_SERVER_HOST'],
    'GPU host name, reported by /healthz only when set (or when upstream health is required; default: from the upstream URL, else gpu-server)',
    253,
  )
  gpuHost = '';

  @IntEnv(
    ['TOKENPLACE_GPU_PORT', 'GPU_SERVER_PORT'],
    'GPU port, reported with the GPU host (default: from the upstream URL, else 3000)',
    1,
    65535,
    { optional: true },
  )
  gpuPort?: number;

  @BoolEnv(
    'TOKENPLACE_RELAY_REQUIRE_UPSTREAM_HEALTH',
    'When on, /healthz resolves the GPU host and reports degraded (503) if it does not resolve',
  )
  requireUpstreamHealth = false;

  @TextEnv(
    'TOKEN_PLACE_RELAY_UPSTREAMS',
    'Comma list of configured upstream URLs (affects relayOnly in /healthz)',
    4096,
  )
  upstreams = '';

  @TextEnv(
    'PERSONAL_GAMING_PC_URL',
    'An extra configured upstream URL (affects relayOnly in /healthz)',
    2048,
  )
  personalGamingPcUrl = '';

  @BoolEnv(
    'TOKENPLACE_RELAY_HEALTH_EXPOSE_KEYS',
    'Show whole node public keys in /healthz registeredServers instead of sha256 fingerprints (/relay/diagnostics always shows keys, as the existing relay)',
  )
  healthExposeKeys = false;
}

export interface HealthSettings {
  readonly upstreamUrl: string;
  readonly gpuHost: string;
  readonly gpuPort: number;
  readonly requireUpstreamHealth: boolean;
  readonly explicitUpstreamConfig: boolean;
  /** TOKENPLACE_RELAY_UPSTREAM_URL was set (it then is the one active upstream in /healthz). */
  readonly upstreamUrlConfigured: boolean;
  /** An upstream URL or GPU host was set, or upstream health is required: /healthz reports them. */
  readonly upstreamReported: boolean;
  /** The configured upstream pool; empty when none is configured. */
  readonly configuredUpstreams: string[];
  readonly healthExposeKeys: boolean;
}

export function healthSettings(s: HealthEnv): HealthSettings {
  const upstream = parseUrl(s.upstreamUrl);
  const gpuHost = s.gpuHost || upstream?.hostname || 'gpu-server';
  const gpuPort = s.gpuPort ?? (upstream?.port ? Number(upstream.port) : 3000);
  const pool = [...splitList(s.upstreams), ...splitList(s.personalGamingPcUrl)];
  return {
    upstreamUrl: s.upstreamUrl || `http://${gpuHost}:${gpuPort}`,
    gpuHost,
    gpuPort,
    requireUpstreamHealth: s.requireUpstreamHealth,
    explicitUpstreamConfig: pool.length > 0 || s.upstreamUrl !== '',
    upstreamUrlConfigured: s.upstreamUrl !== '',
    upstreamReported:
      s.upstreamUrl !== '' ||
      s.gpuHost !== '' ||
      s.gpuPort !== undefined ||
      s.requireUpstreamHealth,
    configuredUpstreams: pool,
    healthExposeKeys: s.healthExposeKeys,
  };
}

function parseUrl(value: string): URL | null {
  try {
    return value ? new URL(value) : null;
  } catch {
    return null;
  }
}
