import { Redis } from 'ioredis';
import { RedisServer } from './redis-server';

/** The name Sentinel monitors in the tests. */
export const SENTINEL_MASTER = 'tp-test';

async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) {
        return value;
      }
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const reason = last instanceof Error ? `: ${last.message}` : '';
  throw new Error(`timed out waiting for ${what}${reason}`);
}

async function withAdmin<T>(port: number, fn: (admin: Redis) => Promise<T>): Promise<T> {
  const admin = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1000,
    commandTimeout: 1000,
    disconnectTimeout: 10,
  });
  admin.on('error', () => undefined);
  try {
    await admin.connect();
    return await fn(admin);
  } finally {
    admin.disconnect();
  }
}

/** `role` of the server on `port` ("master", "slave", …), or null when it does not answer. */
export async function roleOf(port: number): Promise<string | null> {
  try {
    const reply = (await withAdmin(port, (a) => a.call('ROLE'))) as unknown[];
    return String(reply[0]);
  } catch {
    return null;
  }
}

/** Options that make every server of a topology durable (AOF fsync always) and quick to fail over. */
const DATA_ARGS = [
  '--appendonly',
  'yes',
  '--appendfsync',
  'always',
  '--repl-ping-replica-period',
  '1',
];

/**
 * One primary, `replicas` replicas (default 2) and three Sentinels on loopback, every one a real
 * process, with timeouts tuned for tests (down after 1 s, failover timeout 5 s). Two replicas,
 * because with WAIT_REPLICAS=1 a promoted replica needs a replica of its own before it can
 * acknowledge anything: with one, writes wait until the old primary is back.
 */
export class SentinelTopology {
  private constructor(
    readonly data: RedisServer[],
    readonly sentinels: RedisServer[],
    /** Sentinel's down-after-milliseconds: how long an instance may not answer before +sdown. */
    readonly downAfterMs: number,
    /**
     * Sentinel's failover-timeout. Among other things, a Sentinel whose failover attempt did not
     * complete (e.g. an election nobody won) does not try again for twice this long.
     */
    readonly failoverTimeoutMs: number,
  ) {}

  static async start(
    bin: string,
    options: {
      replicas?: number;
      downAfterMs?: number;
      failoverTimeoutMs?: number;
      dataArgs?: string[];
    } = {},
  ): Promise<SentinelTopology> {
    const dataArgs = [...DATA_ARGS, ...(options.dataArgs ?? [])];
    const primary = await RedisServer.start(bin, { extraArgs: dataArgs });
    const replicas: RedisServer[] = [];
    for (let i = 0; i < (options.replicas ?? 2); i += 1) {
      const replica = await RedisServer.start(bin, {
        extraArgs: [...dataArgs, '--replicaof', '127.0.0.1', String(primary.port)],
      });
      await until('the replica to sync', async () => {
        const info = await withAdmin(replica.port, (a) => a.info('replication'));
        return /master_link_status:up/.test(info) ? true : undefined;
      });
      replicas.push(replica);
    }
    const down = options.downAfterMs ?? 1000;
    const failover = options.failoverTimeoutMs ?? 5000;
    const sentinels: RedisServer[] = [];
    for (let i = 0; i < 3; i += 1) {
      sentinels.push(
        await RedisServer.start(bin, {
          sentinelConfig: [
            `sentinel monitor ${SENTINEL_MASTER} 127.0.0.1 ${primary.port} 2`,
            `sentinel down-after-milliseconds ${SENTINEL_MASTER} ${down}`,
            `sentinel failover-timeout ${SENTINEL_MASTER} ${failover}`,
            `sentinel parallel-syncs ${SENTINEL_MASTER} 1`,
          ],
        }),
      );
    }
    const topology = new SentinelTopology([primary, ...replicas], sentinels, down, failover);
    await until('every Sentinel to see the replicas and the other Sentinels', async () => {
      for (const s of sentinels) {
        const [seen, others] = await withAdmin(s.port, async (a) => [
          (await a.call('SENTINEL', 'REPLICAS', SENTINEL_MASTER)) as unknown[],
          (await a.call('SENTINEL', 'SENTINELS', SENTINEL_MASTER)) as unknown[],
        ]);
        if (seen.length < replicas.length || others.length < 2) {
          return undefined;
        }
      }
      return true;
    });
    return topology;
  }

  /** Every Sentinel's event lines (`+try-failover`, `+new-epoch 2`, …), prefixed with its port. */
  sentinelEvents(): string[] {
    return this.sentinels.flatMap((s) =>
      s
        .sentinelLog()
        .split('\n')
        .filter((line) => / [#*-] [+-][a-z]/.test(line))
        .map((line) => `${s.port} ${line.replace(/^\d+:X /, '')}`),
    );
  }

  /**
   * How many failover attempts (elections) the Sentinels needed: the highest epoch they logged
   * (`+new-epoch N`). 1 for a failover elected at the first try; 0 before any.
   */
  failoverAttempts(): number {
    let epoch = 0;
    for (const line of this.sentinelEvents()) {
      const m = / \+new-epoch (\d+)/.exec(line);
      if (m) {
        epoch = Math.max(epoch, Number(m[1]));
      }
    }
    return epoch;
  }

  /** `host:port,host:port,host:port` of the Sentinels. */
  get sentinelList(): string {
    return this.sentinels.map((s) => `127.0.0.1:${s.port}`).join(',');
  }

  /** The data server Sentinel currently names as primary. */
  async primaryPort(): Promise<number> {
    const reply = await withAdmin(
      this.sentinels[0]!.port,
      (a) => a.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER) as Promise<string[]>,
    );
    return Number(reply[1]);
  }

  /** The data server process listening on `port`. */
  server(port: number): RedisServer {
    const found = this.data.find((s) => s.port === port);
    if (!found) {
      throw new Error(`no data server on ${port}`);
    }
    return found;
  }

  /** Resolves once every Sentinel names a primary other than `oldPort`, and that server says master. */
  async promotedAway(oldPort: number, timeoutMs = 30_000): Promise<number> {
    return until(
      'Sentinel to promote the replica',
      async () => {
        const ports = await Promise.all(
          this.sentinels.map((s) =>
            withAdmin(s.port, (a) =>
              a.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER),
            ).then((r) => Number((r as string[])[1])),
          ),
        );
        const port = ports[0];
        if (port === undefined || port === oldPort || ports.some((p) => p !== port)) {
          return undefined;
        }
        return (await roleOf(port)) === 'master' ? port : undefined;
      },
      timeoutMs,
    );
  }

  /** Resolves once the server on `port` is a replica with its link up. */
  async isReplicaAgain(port: number, timeoutMs = 30_000): Promise<void> {
    await until(
      `the server on ${port} to rejoin as a replica`,
      async () => {
        const info = await withAdmin(port, (a) => a.info('replication'));
        return /role:slave/.test(info) && /master_link_status:up/.test(info) ? true : undefined;
      },
      timeoutMs,
    );
  }

  async stop(): Promise<void> {
    await Promise.all([...this.sentinels, ...this.data].map((s) => s.stop()));
  }
}

/**
 * A Redis Cluster on loopback: `primaries` primaries, each with one replica, slots split evenly,
 * built with CLUSTER ADDSLOTSRANGE / MEET / REPLICATE (no redis-cli needed).
 */
export class ClusterTopology {
  private constructor(readonly servers: RedisServer[]) {}

  static async start(bin: string, primaries = 3): Promise<ClusterTopology> {
    const args = [
      '--cluster-enabled',
      'yes',
      '--cluster-node-timeout',
      '2000',
      '--appendonly',
      'no',
    ];
    const servers: RedisServer[] = [];
    for (let i = 0; i < primaries * 2; i += 1) {
      servers.push(await RedisServer.start(bin, { extraArgs: args }));
    }
    const topology = new ClusterTopology(servers);
    const ids = await Promise.all(
      servers.map((s) => withAdmin(s.port, (a) => a.call('CLUSTER', 'MYID') as Promise<string>)),
    );
    const per = Math.floor(16384 / primaries);
    for (let i = 0; i < primaries; i += 1) {
      const from = i * per;
      const to = i === primaries - 1 ? 16383 : from + per - 1;
      await withAdmin(servers[i]!.port, (a) =>
        a.call('CLUSTER', 'ADDSLOTSRANGE', String(from), String(to)),
      );
    }
    for (const s of servers.slice(1)) {
      await withAdmin(servers[0]!.port, (a) =>
        a.call('CLUSTER', 'MEET', '127.0.0.1', String(s.port)),
      );
    }
    await until('every node to know every other', async () => {
      for (const s of servers) {
        const nodes = await withAdmin(s.port, (a) => a.call('CLUSTER', 'NODES') as Promise<string>);
        if (nodes.trim().split('\n').length < servers.length || nodes.includes('handshake')) {
          return undefined;
        }
      }
      return true;
    });
    for (let i = 0; i < primaries; i += 1) {
      await withAdmin(servers[primaries + i]!.port, (a) => a.call('CLUSTER', 'REPLICATE', ids[i]!));
    }
    await until('cluster_state:ok on every node', async () => {
      for (const s of servers) {
        const info = await withAdmin(s.port, (a) => a.call('CLUSTER', 'INFO') as Promise<string>);
        if (!/cluster_state:ok/.test(info)) {
          return undefined;
        }
      }
      return true;
    });
    return topology;
  }

  /** Every node's address (what the store's cluster topology takes). */
  get endpoints(): Array<{ host: string; port: number }> {
    return this.servers.map((s) => ({ host: '127.0.0.1', port: s.port }));
  }

  /** `host:port,…` of every node (what TOKENPLACE_RELAY_REDIS_CLUSTER_NODES takes). */
  get nodeList(): string {
    return this.servers.map((s) => `127.0.0.1:${s.port}`).join(',');
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
  }
}
