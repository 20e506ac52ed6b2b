import { IsIn } from 'class-validator';
import { Env } from './env.decorator';
import { BoolEnv, IntEnv, PatternEnv, ToWord, Trim, splitList } from './env-kinds';

/** `host:port,host:port` (IPv6 in brackets), or empty. */
const HOST_PORT_LIST =
  /^((\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5})?(\s*,\s*(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5})*$/;
const HOST_PORT_LIST_MESSAGE =
  'must be comma-separated host:port (e.g. redis-0:26379,redis-1:26379)';

/** Which state store runs (state/state.module.ts) and where its Redis is (state/redis/). */
export class RedisEnv {
  @Env('TOKENPLACE_RELAY_STATE_STORE', 'memory (one process) or redis (several replicas)')
  @ToWord()
  @IsIn(['memory', 'redis'])
  stateStore = 'memory';

  @PatternEnv(
    ['TOKENPLACE_RELAY_REDIS_URL', 'REDIS_URL'],
    'redis:// or rediss:// URL with optional password and db (required with the redis store, except on Sentinel or a Cluster)',
    /^(rediss?:\/\/\S+)?$/,
    'must be a redis:// or rediss:// URL',
    { secret: true },
  )
  redisUrl = '';

  @PatternEnv(
    'TOKENPLACE_RELAY_REDIS_KEY_PREFIX',
    'Prefix of every Redis key the relay writes; its {hash tag} puts every key of a deployment in one Redis Cluster slot',
    /^(?=[A-Za-z0-9:_{}.-]{1,64}$)[^{}]*(\{[^{}]+\}[^{}]*)?$/,
    'must be 1-64 characters of A-Z a-z 0-9 : _ { } . - with at most one hash tag, a non-empty {...} (e.g. {tokenplace}:)',
    { trim: false },
  )
  redisKeyPrefix = '{tokenplace}:';

  @PatternEnv(
    'TOKENPLACE_RELAY_REDIS_MIGRATE_FROM_PREFIX',
    'Earlier key prefix whose keys are renamed to the current prefix once at boot (then fenced); empty means tokenplace: (the old default) while the prefix is left at its default; off turns it off',
    /^(off|[A-Za-z0-9:_{}.-]{1,64})?$/,
    'must be empty, off, or 1-64 characters of A-Z a-z 0-9 : _ { } . -',
    { trim: false },
  )
  redisMigrateFromPrefix = '';

  @Env(
    'TOKENPLACE_RELAY_REDIS_PASSWORD',
    'Password of the Redis data nodes (overrides one in the URL; needed with Sentinel or Cluster when the URL is not set)',
    true,
  )
  redisPassword = '';

  @PatternEnv(
    'TOKENPLACE_RELAY_REDIS_SENTINELS',
    'Comma-separated host:port of Redis Sentinels; the relay then asks them for the primary and follows failovers',
    HOST_PORT_LIST,
    HOST_PORT_LIST_MESSAGE,
  )
  redisSentinels = '';

  @PatternEnv(
    'TOKENPLACE_RELAY_REDIS_SENTINEL_MASTER',
    'Name the Sentinels monitor (Bitnami charts: mymaster); required with TOKENPLACE_RELAY_REDIS_SENTINELS',
    /^[A-Za-z0-9._-]{0,128}$/,
    'must be a Sentinel master name',
  )
  redisSentinelMaster = '';

  @Env(
    'TOKENPLACE_RELAY_REDIS_SENTINEL_PASSWORD',
    'Password of the Sentinels themselves (requirepass of sentinel.conf), when they have one',
    true,
  )
  redisSentinelPassword = '';

  @BoolEnv('TOKENPLACE_RELAY_REDIS_SENTINEL_TLS', 'Talk TLS to the Sentinels')
  redisSentinelTls = false;

  @PatternEnv(
    'TOKENPLACE_RELAY_REDIS_CLUSTER_NODES',
    'Comma-separated host:port of Redis Cluster nodes (a few suffice); the relay then runs on the cluster, all keys in one slot',
    HOST_PORT_LIST,
    HOST_PORT_LIST_MESSAGE,
  )
  redisClusterNodes = '';

  @BoolEnv(
    'TOKENPLACE_RELAY_REDIS_TLS',
    'Talk TLS to the Redis data nodes (a rediss:// URL turns it on too)',
  )
  redisTls = false;

  @Env(
    'TOKENPLACE_RELAY_REDIS_TLS_CA_FILE',
    'PEM file of the CA that signed the Redis (and Sentinel) certificates; empty trusts the system CAs',
  )
  @Trim()
  redisTlsCaFile = '';

  @IntEnv(
    'TOKENPLACE_RELAY_REDIS_WAIT_REPLICAS',
    'Before answering 2xx for an acknowledged transition, wait until this many replicas have it (Redis WAIT); 0 does not wait',
    0,
    16,
  )
  redisWaitReplicas = 0;

  @IntEnv(
    'TOKENPLACE_RELAY_REDIS_WAIT_TIMEOUT_MS',
    'How long a transition waits for its replicas; past it the caller gets 503 + Retry-After and may retry with the same request_id',
    1,
    60000,
  )
  redisWaitTimeoutMs = 500;

  @IntEnv(
    'TOKENPLACE_RELAY_REDIS_COMMAND_TIMEOUT_MS',
    'A Redis command slower than this fails the request with 503',
    10,
    60000,
  )
  redisCommandTimeoutMs = 2000;
}

/** One Redis address. */
export interface RedisEndpoint {
  host: string;
  port: number;
}

/** Where the Redis store connects. */
export type RedisTopology =
  | { kind: 'standalone' }
  | {
      kind: 'sentinel';
      sentinels: RedisEndpoint[];
      master: string;
      sentinelPassword: string;
      sentinelTls: boolean;
    }
  | { kind: 'cluster'; nodes: RedisEndpoint[] };

export interface RedisSettings {
  readonly stateStore: 'memory' | 'redis';
  readonly redisUrl: string;
  readonly redisKeyPrefix: string;
  readonly redisCommandTimeoutMs: number;
  /** Where Redis is: one server (the URL), Sentinels that name the primary, or a Cluster. */
  readonly redisTopology: RedisTopology;
  /** Data-node password that overrides the URL's ('' keeps it). */
  readonly redisPassword: string;
  /** TLS to the data nodes (rediss:// or TOKENPLACE_RELAY_REDIS_TLS). */
  readonly redisTls: boolean;
  readonly redisTlsCaFile: string | null;
  /** Replicas every acknowledged transition waits for (0: none), and for how long. */
  readonly redisWaitReplicas: number;
  readonly redisWaitTimeoutMs: number;
  /** Earlier prefix whose keys are renamed to {@link redisKeyPrefix} at boot, or null. */
  readonly redisMigrateFromPrefix: string | null;
}

/** `explicitPrefix`: TOKENPLACE_RELAY_REDIS_KEY_PREFIX was set (no default migration then). */
export function redisSettings(s: RedisEnv, explicitPrefix: boolean): RedisSettings {
  return {
    stateStore: storeKind(s),
    redisUrl: s.redisUrl,
    redisKeyPrefix: s.redisKeyPrefix,
    redisCommandTimeoutMs: s.redisCommandTimeoutMs,
    redisTopology: redisTopologyOf(s),
    redisPassword: s.redisPassword,
    redisTls: s.redisTls || s.redisUrl.startsWith('rediss://'),
    redisTlsCaFile: s.redisTlsCaFile || null,
    redisWaitReplicas: s.redisWaitReplicas,
    redisWaitTimeoutMs: s.redisWaitTimeoutMs,
    redisMigrateFromPrefix: migrateFromPrefix(s, explicitPrefix),
  };
}

export function storeKind(s: RedisEnv): 'memory' | 'redis' {
  return s.stateStore === 'redis' ? 'redis' : 'memory';
}

function endpoints(list: string): RedisEndpoint[] {
  return splitList(list).map((item) => {
    const at = item.lastIndexOf(':');
    return { host: item.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(item.slice(at + 1)) };
  });
}

function redisTopologyOf(s: RedisEnv): RedisTopology {
  if (s.redisSentinels) {
    return {
      kind: 'sentinel',
      sentinels: endpoints(s.redisSentinels),
      master: s.redisSentinelMaster,
      sentinelPassword: s.redisSentinelPassword,
      sentinelTls: s.redisSentinelTls,
    };
  }
  if (s.redisClusterNodes) {
    return { kind: 'cluster', nodes: endpoints(s.redisClusterNodes) };
  }
  return { kind: 'standalone' };
}

/** The prefix of the layout before hash tags (0.1): its keys move to the default prefix at boot. */
export const PRE_HASH_TAG_PREFIX = 'tokenplace:';

/** The prefix to migrate keys from at boot, or null. */
function migrateFromPrefix(s: RedisEnv, explicitPrefix: boolean): string | null {
  const from =
    s.redisMigrateFromPrefix === '' && !explicitPrefix
      ? PRE_HASH_TAG_PREFIX
      : s.redisMigrateFromPrefix;
  return from === '' || from === 'off' || from === s.redisKeyPrefix ? null : from;
}

/**
 * The Redis settings that only make sense together. `source` maps schema properties to the
 * variable that set them.
 */
export function redisProblems(s: RedisEnv, source: Readonly<Record<string, string>>): string[] {
  const problems: string[] = [];
  if (s.stateStore === 'redis') {
    problems.push(...topologyProblems(s, source.redisKeyPrefix !== undefined));
    const urlProblem = checkRedisUrl(s.redisUrl);
    if (urlProblem !== null) {
      problems.push(`${source.redisUrl ?? 'TOKENPLACE_RELAY_REDIS_URL'}=(hidden): ${urlProblem}`);
    }
  }
  if (s.stateStore === 'memory' && s.redisUrl && source.redisUrl === 'TOKENPLACE_RELAY_REDIS_URL') {
    problems.push(
      'TOKENPLACE_RELAY_REDIS_URL is set but TOKENPLACE_RELAY_STATE_STORE is memory: set TOKENPLACE_RELAY_STATE_STORE=redis or unset the URL',
    );
  }
  return problems;
}

function topologyProblems(s: RedisEnv, explicitPrefix: boolean): string[] {
  const problems: string[] = [];
  const sentinel = s.redisSentinels !== '';
  const cluster = s.redisClusterNodes !== '';
  if (!s.redisUrl && !sentinel && !cluster) {
    problems.push('TOKENPLACE_RELAY_STATE_STORE=redis needs TOKENPLACE_RELAY_REDIS_URL');
  }
  if (sentinel && cluster) {
    problems.push(
      'TOKENPLACE_RELAY_REDIS_SENTINELS and TOKENPLACE_RELAY_REDIS_CLUSTER_NODES exclude each other: a deployment runs on Sentinel or on a Cluster',
    );
  }
  if (sentinel && !s.redisSentinelMaster) {
    problems.push(
      'TOKENPLACE_RELAY_REDIS_SENTINELS needs TOKENPLACE_RELAY_REDIS_SENTINEL_MASTER (the name the Sentinels monitor)',
    );
  }
  if (badPort(s.redisSentinels) || badPort(s.redisClusterNodes)) {
    problems.push('Redis Sentinel and Cluster ports must be 1-65535');
  }
  if (cluster && !/\{[^{}]+\}/.test(s.redisKeyPrefix)) {
    problems.push(
      `TOKENPLACE_RELAY_REDIS_KEY_PREFIX=${JSON.stringify(s.redisKeyPrefix)}: a Redis Cluster needs a hash tag in the prefix (e.g. {tokenplace}:) so every key of the deployment is in one slot`,
    );
  }
  if (s.redisWaitReplicas > 0 && s.redisWaitTimeoutMs >= s.redisCommandTimeoutMs) {
    problems.push(
      `TOKENPLACE_RELAY_REDIS_WAIT_TIMEOUT_MS (${s.redisWaitTimeoutMs}) must be less than TOKENPLACE_RELAY_REDIS_COMMAND_TIMEOUT_MS (${s.redisCommandTimeoutMs})`,
    );
  }
  const from = migrateFromPrefix(s, explicitPrefix);
  if (from !== null && (from.startsWith(s.redisKeyPrefix) || s.redisKeyPrefix.startsWith(from))) {
    problems.push(
      `TOKENPLACE_RELAY_REDIS_MIGRATE_FROM_PREFIX=${JSON.stringify(from)}: one prefix may not start with the other (${JSON.stringify(s.redisKeyPrefix)}); set it empty to turn the migration off`,
    );
  }
  return problems;
}

/** True when a host:port list holds a port outside 1-65535. */
function badPort(list: string): boolean {
  return endpoints(list).some((e) => !(e.port >= 1 && e.port <= 65535));
}

/** Why a Redis URL cannot be used (unparsable, no host, a non-numeric db), or null. */
function checkRedisUrl(value: string): string | null {
  if (value === '') {
    return null;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'is not a valid URL (redis://[:password@]host[:port][/db] or rediss://...)';
  }
  if (url.hostname === '') {
    return 'needs a host';
  }
  if (!/^\/?(\d{1,5})?$/.test(url.pathname)) {
    return 'the database after the host must be a number (e.g. redis://redis:6379/0)';
  }
  return null;
}
