import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RedisEndpoint, RedisTopology } from '../../config/relay-config';

/** A connection of the store: one server (standalone, or the primary Sentinel names) or a Cluster. */
export type RedisClient = Redis | Cluster;

/** Where and how the store connects (from the config, or a test). */
export interface RedisConnectionSettings {
  /** redis:// or rediss:// URL; with Sentinel or Cluster only its credentials, db and scheme count. */
  url: string;
  topology: RedisTopology;
  /** Data-node password that overrides the URL's ('' keeps it). */
  password?: string;
  /** TLS to the data nodes (also on for rediss://). */
  tls?: boolean;
  /** PEM CA bundle for the data nodes and the Sentinels ('' or null: system CAs). */
  tlsCaFile?: string | null;
  commandTimeoutMs: number;
}

/** Reconnect backoff: 200 ms doubling to 2 s, for ever (the store serves 503 meanwhile). */
export function reconnectDelay(times: number): number {
  return Math.min(100 * 2 ** Math.min(times, 5), 2000);
}

/**
 * A write that meets `READONLY` was sent to a demoted primary: drop the connection so it
 * reconnects, which with Sentinel asks the Sentinels for the new primary. The command itself is
 * not resent here; the store decides whether the transition may be retried.
 */
export function reconnectOnReadOnly(error: Error): 1 | false {
  return error.message.startsWith('READONLY') ? 1 : false;
}

interface Credentials {
  username?: string;
  password?: string;
  db: number;
  tls?: ConnectionOptions;
}

function credentials(settings: RedisConnectionSettings): Credentials {
  const out: Credentials = { db: 0 };
  if (settings.url) {
    const url = new URL(settings.url);
    if (url.username) {
      out.username = decodeURIComponent(url.username);
    }
    if (url.password) {
      out.password = decodeURIComponent(url.password);
    }
    const db = url.pathname.replace(/^\//, '');
    out.db = db === '' ? 0 : Number(db);
  }
  if (settings.password) {
    out.password = settings.password;
  }
  if (settings.tls === true || settings.url.startsWith('rediss://')) {
    out.tls = tlsOptions(settings);
  }
  return out;
}

function tlsOptions(settings: RedisConnectionSettings): ConnectionOptions {
  return settings.tlsCaFile ? { ca: readFileSync(settings.tlsCaFile) } : {};
}

/**
 * What every relay connection shares: fail fast instead of queueing (a request gets 503 at once
 * while Redis is away), never resend a command on its own (a resent transition could apply twice),
 * reconnect for ever with backoff.
 */
function commonOptions(settings: RedisConnectionSettings, name: string): RedisOptions {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    autoResubscribe: false,
    enableReadyCheck: true,
    commandTimeout: settings.commandTimeoutMs,
    connectTimeout: Math.max(1000, settings.commandTimeoutMs),
    keepAlive: 10_000,
    disconnectTimeout: 200,
    connectionName: name,
    reconnectOnError: reconnectOnReadOnly,
  };
}

/** One connection of the store, named `name` on the server (CLIENT LIST). */
export function createClient(settings: RedisConnectionSettings, name: string): RedisClient {
  const topology = settings.topology;
  const creds = credentials(settings);
  const common = commonOptions(settings, name);
  switch (topology.kind) {
    case 'standalone': {
      // Options built from the URL here (ioredis would let the URL's password win over ours).
      const url = new URL(settings.url);
      return new Redis({
        ...common,
        ...creds,
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port === '' ? 6379 : Number(url.port),
        retryStrategy: reconnectDelay,
      });
    }
    case 'sentinel':
      // ioredis asks the Sentinels for the primary on every (re)connection, checks the role it
      // finds, and with failoverDetector drops the connection as soon as a Sentinel announces
      // +switch-master, so every connection follows a failover by itself.
      return new Redis({
        ...common,
        ...creds,
        sentinels: topology.sentinels,
        name: topology.master,
        role: 'master',
        sentinelPassword: topology.sentinelPassword || undefined,
        sentinelTLS: topology.sentinelTls ? tlsOptions(settings) : undefined,
        enableTLSForSentinelMode: creds.tls !== undefined,
        sentinelCommandTimeout: settings.commandTimeoutMs,
        sentinelRetryStrategy: reconnectDelay,
        sentinelReconnectStrategy: reconnectDelay,
        failoverDetector: true,
        updateSentinels: true,
        retryStrategy: reconnectDelay,
      });
    case 'cluster':
      return createCluster(topology.nodes, settings, common, creds);
    default: {
      const never: never = topology;
      throw new Error(`unknown Redis topology ${String(never)}`);
    }
  }
}

function createCluster(
  nodes: RedisEndpoint[],
  settings: RedisConnectionSettings,
  common: RedisOptions,
  creds: Credentials,
): Cluster {
  const redisOptions: ClusterOptions['redisOptions'] = {
    connectionName: common.connectionName,
    commandTimeout: common.commandTimeout,
    connectTimeout: common.connectTimeout,
    keepAlive: common.keepAlive,
    disconnectTimeout: common.disconnectTimeout,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    autoResubscribe: false,
    reconnectOnError: reconnectOnReadOnly,
    ...(creds.username ? { username: creds.username } : {}),
    ...(creds.password ? { password: creds.password } : {}),
    ...(creds.tls ? { tls: creds.tls } : {}),
  };
  return new Cluster(nodes, {
    lazyConnect: true,
    enableOfflineQueue: false,
    enableReadyCheck: true,
    // A moved slot or a failover inside the cluster: ioredis follows MOVED/ASK and refreshes the
    // slot map; a command meeting CLUSTERDOWN or TRYAGAIN fails (503) instead of being retried.
    maxRedirections: 4,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 0,
    retryDelayOnTryAgain: 0,
    slotsRefreshTimeout: Math.max(1000, settings.commandTimeoutMs),
    slotsRefreshInterval: 5_000,
    clusterRetryStrategy: reconnectDelay,
    redisOptions,
  });
}

/** What the wake-up channel needs of its subscriber connection. */
export interface WakeSubscriber {
  readonly status: string;
  connect(): Promise<void>;
  subscribe(channel: string): Promise<unknown>;
  quit(): Promise<unknown>;
  disconnect(): void;
  on(event: 'message', listener: (channel: string, message: string) => void): this;
  on(event: 'ready' | 'close', listener: () => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
}

/** The subscriber connection: like the command connection, except on a Cluster (below). */
export function createSubscriber(settings: RedisConnectionSettings, name: string): WakeSubscriber {
  const topology = settings.topology;
  if (topology.kind !== 'cluster') {
    return createClient(settings, name);
  }
  const creds = credentials(settings);
  return new ClusterNodeSubscriber(topology.nodes, {
    ...commonOptions(settings, name),
    ...(creds.username ? { username: creds.username } : {}),
    ...(creds.password ? { password: creds.password } : {}),
    ...(creds.tls ? { tls: creds.tls } : {}),
  });
}

/**
 * On a Cluster, PUBLISH (also from a script) reaches every node over the cluster bus, so the
 * wake-up subscription may sit on any node. This holds one plain connection to one of the
 * configured nodes; when that node stays unreachable (three reconnection attempts) it moves to the
 * next one, and reports every drop ('close') so the channel falls back to re-checks and wakes its
 * waiters after resubscribing.
 */
class ClusterNodeSubscriber extends EventEmitter implements WakeSubscriber {
  private current: Redis | null = null;
  private next = 0;
  private stopped = false;

  constructor(
    private readonly nodes: RedisEndpoint[],
    private readonly options: RedisOptions,
  ) {
    super();
  }

  get status(): string {
    return this.current?.status ?? 'wait';
  }

  connect(): Promise<void> {
    this.open();
    return Promise.resolve();
  }

  subscribe(channel: string): Promise<unknown> {
    if (!this.current) {
      return Promise.reject(new Error('wake-up subscriber not connected'));
    }
    return this.current.subscribe(channel);
  }

  async quit(): Promise<unknown> {
    this.stopped = true;
    return this.current?.quit();
  }

  disconnect(): void {
    this.stopped = true;
    this.current?.disconnect();
  }

  private open(): void {
    const node = this.nodes[this.next % this.nodes.length] as RedisEndpoint;
    this.next += 1;
    const connection = new Redis({
      ...this.options,
      host: node.host,
      port: node.port,
      retryStrategy: (times: number) => (times > 3 ? null : reconnectDelay(times)),
    });
    this.current = connection;
    connection.on('ready', () => this.emit('ready'));
    connection.on('close', () => this.emit('close'));
    connection.on('error', (error: Error) => this.emit('error', error));
    connection.on('message', (channel: string, message: string) =>
      this.emit('message', channel, message),
    );
    connection.once('end', () => {
      if (!this.stopped && this.current === connection) {
        setTimeout(() => {
          if (!this.stopped) {
            this.open();
          }
        }, 200).unref();
      }
    });
    connection.connect().catch(() => undefined);
  }
}

/**
 * The server that holds `key` and runs the scripts routed by it: the connection itself, or in a
 * Cluster the primary's connection the Cluster sends that slot to (found with CLUSTER KEYSLOT, so
 * a WAIT or ROLE sent there speaks of the same connection the transitions used).
 */
export async function primaryFor(client: RedisClient, key: string): Promise<Redis> {
  if (client instanceof Redis) {
    return client;
  }
  let slots = slotCache.get(client);
  if (!slots) {
    slots = new Map();
    slotCache.set(client, slots);
  }
  let slot = slots.get(key);
  if (slot === undefined) {
    slot = Number(await client.call('CLUSTER', 'KEYSLOT', key));
    slots.set(key, slot);
  }
  const owner = client.slots[slot]?.[0];
  const node = client
    .nodes('master')
    .find((n) => `${n.options.host ?? ''}:${n.options.port ?? ''}` === owner);
  if (!node) {
    throw new Error(`no connection to the primary of slot ${slot}`);
  }
  return node;
}

/** The slot of a key never changes: asked once per Cluster connection and key. */
const slotCache = new WeakMap<Cluster, Map<string, number>>();
