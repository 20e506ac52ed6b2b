import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis, type Cluster } from 'ioredis';
import { relayScripts } from '../../src/state/redis/script.registry';
import type { StoreLog } from '../../src/state/redis-state.store';
import { requirement } from './requirements';

/**
 * The shared test Redis (`REDIS_URL`), or '' after announcing that `name` skips (an error under
 * `TOKENPLACE_REQUIRE_REDIS=1`).
 */
export function sharedRedisUrl(name: string): string {
  const url = process.env.REDIS_URL ?? '';
  const available = requirement(
    name,
    url !== '',
    'TOKENPLACE_REQUIRE_REDIS',
    'set REDIS_URL (e.g. `redis-server --port 6391 --save "" --daemonize yes` and REDIS_URL=redis://127.0.0.1:6391)',
  );
  return available ? url : '';
}

/** A log sink that keeps what the store reported, for assertions and quiet test output. */
export class CapturedLog implements StoreLog {
  readonly entries: Array<{ level: string } & Record<string, unknown>> = [];
  log(message: object): void {
    this.entries.push({ level: 'log', ...message });
  }
  warn(message: object): void {
    this.entries.push({ level: 'warn', ...message });
  }
  error(message: object): void {
    this.entries.push({ level: 'error', ...message });
  }
}

/** `REDIS_SERVER_BIN`, or `redis-server` on PATH, or null. */
export function redisServerBin(): string | null {
  const candidate = process.env.REDIS_SERVER_BIN || 'redis-server';
  const probe = spawnSync(candidate, ['--version'], { encoding: 'utf8' });
  return probe.status === 0 ? candidate : null;
}

/** A fresh key prefix, so tests sharing one Redis never see each other's keys. */
export function randomPrefix(label = 't'): string {
  return `tpt:${label}:${randomBytes(6).toString('hex')}:`;
}

/** A fresh prefix with a hash tag (every key in one Redis Cluster slot), like the default one. */
export function randomTaggedPrefix(label = 't'): string {
  return `{tpt:${label}:${randomBytes(6).toString('hex')}}:`;
}

/** Deletes every key under `prefix`. */
export async function deletePrefix(url: string, prefix: string): Promise<void> {
  const admin = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    disconnectTimeout: 10,
  });
  try {
    await admin.connect();
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) {
        await admin.del(...keys);
      }
    } while (cursor !== '0');
  } finally {
    admin.disconnect();
  }
}

/** Every key under `prefix` with its TTL in ms (-1: none). */
export async function keysWithTtl(url: string, prefix: string): Promise<Map<string, number>> {
  const admin = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    disconnectTimeout: 10,
  });
  const out = new Map<string, number>();
  try {
    await admin.connect();
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      for (const key of keys) {
        out.set(key.slice(prefix.length), await admin.pttl(key));
      }
    } while (cursor !== '0');
  } finally {
    admin.disconnect();
  }
  return out;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface RedisServerOptions {
  /** A port reserved earlier (e.g. to boot a relay before its Redis exists). */
  port?: number;
  /** Append-only file with fsync on every write (survives kill -9). */
  aof?: boolean;
  password?: string;
  extraArgs?: string[];
  /**
   * Runs `redis-server <dir>/sentinel.conf --sentinel` with these config lines (a Sentinel
   * rewrites its config file, so it needs one of its own).
   */
  sentinelConfig?: string[];
}

/** A redis-server child process of the test, on a free loopback port, data in a temp dir. */
export class RedisServer {
  private child: ChildProcess | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'tp-redis-'));

  private constructor(
    private readonly bin: string,
    readonly port: number,
    private readonly options: RedisServerOptions,
  ) {}

  static async start(bin: string, options: RedisServerOptions = {}): Promise<RedisServer> {
    const server = new RedisServer(bin, options.port ?? (await freePort()), options);
    await server.spawn();
    return server;
  }

  get url(): string {
    const auth = this.options.password ? `:${encodeURIComponent(this.options.password)}@` : '';
    return `redis://${auth}127.0.0.1:${this.port}`;
  }

  /** A URL with another password, to test authentication failures. */
  urlWithPassword(password: string): string {
    return `redis://:${encodeURIComponent(password)}@127.0.0.1:${this.port}`;
  }

  /** An admin connection (caller disconnects it). */
  admin(): Redis {
    return new Redis(this.url, { maxRetriesPerRequest: 1, disconnectTimeout: 10 });
  }

  /** Starts the server again on the same port and data directory. */
  async spawn(): Promise<void> {
    const sentinel = this.options.sentinelConfig;
    const file = join(this.dir, 'sentinel.conf');
    if (sentinel !== undefined && !existsSync(file)) {
      writeFileSync(
        file,
        [
          `port ${this.port}`,
          'bind 127.0.0.1',
          `dir ${this.dir}`,
          // Sentinel's events (+sdown, +try-failover, +new-epoch, -failover-abort-…) are logged at
          // warning level: kept in a file, so a test can tell what Sentinel did (see sentinelLog).
          `logfile ${join(this.dir, 'sentinel.log')}`,
          'loglevel warning',
          ...sentinel,
        ].join('\n') + '\n',
      );
    }
    const args =
      sentinel !== undefined
        ? [file, '--sentinel']
        : [
            '--port',
            String(this.port),
            '--bind',
            '127.0.0.1',
            '--dir',
            this.dir,
            '--save',
            '',
            '--appendonly',
            this.options.aof ? 'yes' : 'no',
            '--appendfsync',
            'always',
            '--logfile',
            '',
            '--loglevel',
            'warning',
            ...(this.options.password ? ['--requirepass', this.options.password] : []),
            ...(this.options.extraArgs ?? []),
          ];
    const child = spawn(this.bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    for (let i = 0; i < 200; i += 1) {
      if (child.exitCode !== null) {
        throw new Error(`redis-server exited (${child.exitCode}): ${stderr}`);
      }
      const probe = new Redis(this.url, {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
        disconnectTimeout: 10,
      });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        await probe.ping();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 25));
      } finally {
        probe.disconnect();
      }
    }
    throw new Error(`redis-server on ${this.port} did not start: ${stderr}`);
  }

  /** What a Sentinel logged so far ('' for a data server, or before it logged anything). */
  sentinelLog(): string {
    const file = join(this.dir, 'sentinel.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  /** kill -9: no shutdown, no final save (only what the AOF already holds survives). */
  async crash(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) {
      return;
    }
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  /** SIGSTOP: the process freezes with its sockets open (a partition-like stall). */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  /** SIGCONT after {@link pause}. */
  resume(): void {
    this.child?.kill('SIGCONT');
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<void> {
    this.resume();
    await this.crash();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The placement view (`pv`, `pq`, `pa`) as stored, and as rebuilt from the nodes' own keys. */
export interface PlacementViewCheck {
  stored: Record<string, Record<string, string>>;
  rebuilt: Record<string, Record<string, string>>;
}

/**
 * Reads the placement view `tpSelectNode` relies on, rebuilds it from scratch with
 * `tpRebuildPlacementView` (a no-op when the scripts kept it right) and reads it again: a view
 * that drifted from the nodes' own keys shows as a difference.
 */
export async function checkPlacementView(
  client: Redis | Cluster,
  prefix: string,
): Promise<PlacementViewCheck> {
  const read = async (): Promise<Record<string, Record<string, string>>> => ({
    pv: await client.hgetall(`${prefix}pv`),
    pq: await client.hgetall(`${prefix}pq`),
    pa: await client.hgetall(`${prefix}pa`),
  });
  const stored = await read();
  const lua = relayScripts()['tpRebuildPlacementView'] as string;
  await client.eval(lua, 1, `${prefix}schema`, prefix, '{}', '0');
  return { stored, rebuilt: await read() };
}
