import { Redis } from 'ioredis';
import type { Clock } from '../../common/clock';
import { StoreUnavailableError } from '../store-unavailable.error';
import {
  createClient,
  createSubscriber,
  primaryFor,
  type RedisClient,
  type RedisConnectionSettings,
  type WakeSubscriber,
} from './connection';
import { migratePrefix } from './prefix-migration';
import { toStoreError } from './redis-error.mapper';
import type { ScriptArg } from './script-call';
import { LAYOUT_UPGRADE_SCRIPT, SCHEMA_VERSION, UPGRADABLE_LAYOUTS } from './script.registry';
import { WakeChannel, type HandOffHandlers } from './wake.channel';

/** Where the store reports connection changes (Nest's Logger in the app). */
export interface StoreLog {
  log(message: object): void;
  warn(message: object): void;
  error(message: object): void;
}

/** How ioredis refuses a call it did not send (its offline queue is off). */
const NOT_SENT = "Stream isn't writeable";

type ScriptHost = Partial<Record<string, (...args: ScriptArg[]) => Promise<unknown>>>;

/** How often readiness re-reads the server's eviction policy. */
const SERVER_RECHECK_MS = 30_000;
const RECHECK_WHEN_REFUSED_MS = 1_000;
const LOG_REPEAT_MS = 10_000;
const QUIT_TIMEOUT_MS = 1_000;

/**
 * The Redis store's three connections (commands, the delivery lane, wake-ups) and whether they
 * may be used: it (re)connects on its own, checks on every connection that the server is a
 * writable primary that never evicts and holds this replica's data layout, and otherwise refuses
 * every call with {@link StoreUnavailableError} (503) saying why. Readiness (`ping`) asks it.
 */
export class ConnectionSupervisor {
  private readonly cmd: RedisClient;
  /**
   * The delivery lane: a second command connection that carries only claims, the call a woken
   * long-poll makes. Behind the bulk of a busy replica's commands on `cmd` (enqueues, answers,
   * renewals), a claim would wait for every command already in flight there; on its own socket
   * Redis serves it in its next turn. Claims are not acknowledged transitions (no WAIT), and a
   * later acknowledged transition on `cmd` has a larger replication offset, so WAIT still covers
   * them. When the lane is not ready, claims fall back to `cmd`.
   */
  private readonly lane: RedisClient;
  private readonly sub: WakeSubscriber;
  /** Long-poll wake-ups across replicas, on the `sub` connection. */
  readonly wake: WakeChannel;
  /** The key every script declares, so a Cluster routes it to the slot of the prefix's hash tag. */
  private readonly routingKey: string;
  /** False once ROLE was refused (ACL): readiness then checks writability by PING alone. */
  private roleAllowed = true;
  private usable = false;
  private closed = false;
  private problem = 'connecting to redis';
  private lastError = '';
  private checkedAt = 0;
  private readonly logged = new Map<string, number>();
  private readyListeners: Array<() => void> = [];
  /** Calls waiting for the store to be usable again (a READONLY retry). */
  private usableListeners: Array<() => void> = [];

  constructor(
    settings: RedisConnectionSettings,
    private readonly prefix: string,
    /** An earlier prefix whose keys move under `prefix` once (see prefix-migration.ts). */
    private readonly migrateFrom: string | null,
    clock: Clock,
    private readonly log: StoreLog,
    /** Given to the wake-up channel: what becomes of the hand-offs it receives. */
    handOffs: HandOffHandlers,
  ) {
    this.routingKey = `${prefix}schema`;
    this.cmd = createClient(settings, 'tokenplace-relay');
    this.lane = createClient(settings, 'tokenplace-relay-delivery');
    this.sub = createSubscriber(settings, 'tokenplace-relay-wake');
    this.wake = new WakeChannel(this.sub, `${prefix}wake`, clock, handOffs);
    this.watch();
  }

  /**
   * Defines a script on the command connection (and on the lane with `onLane`). One declared key
   * (the layout key, under the prefix): a Cluster routes the script to the slot of the prefix's
   * hash tag, where every key it builds from the prefix lives.
   */
  define(name: string, lua: string, onLane: boolean): void {
    this.cmd.defineCommand(name, { numberOfKeys: 1, lua });
    if (onLane) {
      this.lane.defineCommand(name, { numberOfKeys: 1, lua });
    }
  }

  /** The primary the command connection writes to (where WAIT is asked). */
  primary(): Promise<Redis> {
    return primaryFor(this.cmd, this.routingKey);
  }

  /**
   * Sends one script call (its ARGV after the routing key) once the store is usable, on the
   * delivery lane when asked and ready; a refusal becomes a {@link StoreUnavailableError}, a
   * demotion seen a {@link ReadOnlyReply}.
   */
  async send(name: string, onLane: boolean, argv: ScriptArg[]): Promise<unknown> {
    if (!this.usable && !this.closed && this.cmd.status === 'ready') {
      // Connected but refused earlier (policy, layout, a failed check): look again, at most 1/s.
      if (Date.now() - this.checkedAt > RECHECK_WHEN_REFUSED_MS) {
        await this.checkServer();
      }
    }
    if (!this.usable) {
      throw new StoreUnavailableError(this.problem);
    }
    try {
      if (onLane && this.lane.status === 'ready') {
        try {
          return await this.sendOn(this.lane, name, argv);
        } catch (error) {
          // The lane dropped before the call left (nothing reached Redis): the command
          // connection takes it. A call lost in flight is not re-sent (a claim is not idempotent).
          if (!(error instanceof Error) || !error.message.startsWith(NOT_SENT)) {
            throw error;
          }
        }
      }
      return await this.sendOn(this.cmd, name, argv);
    } catch (error) {
      const mapped = toStoreError(error);
      if (mapped.message.startsWith('redis: TPSCHEMA')) {
        this.refuse(mapped.message);
      }
      // Only a reply of the server itself counts as a demotion seen (not a fast refusal that
      // repeats the last problem): that one call may be retried once the primary is found.
      throw mapped.message.startsWith('redis: READONLY')
        ? new ReadOnlyReply(mapped.message)
        : mapped;
    }
  }

  private sendOn(connection: RedisClient, name: string, argv: ScriptArg[]): Promise<unknown> {
    const fn = (connection as unknown as ScriptHost)[name];
    if (!fn) {
      throw new Error(`script ${name} is not defined`);
    }
    return fn.call(connection, this.routingKey, ...argv);
  }

  /**
   * A call was refused with READONLY (the primary was demoted under us: the connection is already
   * reconnecting to the new one). Resolves when the store is usable again, or after `ms` (the
   * next call then reports why not).
   */
  afterDemotion(reason: string, ms: number): Promise<void> {
    this.usable = false;
    this.problem = reason;
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.usableListeners = this.usableListeners.filter((l) => l !== done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.usableListeners.push(done);
    });
  }

  /**
   * Readiness: the store is usable and the server it writes to is a writable primary (ROLE; a
   * demoted primary makes the connection look for the new one, and readiness fails until found).
   */
  async ping(): Promise<void> {
    if (this.closed) {
      throw new StoreUnavailableError('redis: store closed');
    }
    if (!this.usable && this.cmd.status === 'ready') {
      await this.checkServer();
    }
    if (!this.usable) {
      throw new StoreUnavailableError(this.problem);
    }
    try {
      await this.checkWritable();
    } catch (error) {
      throw toStoreError(error);
    }
    if (Date.now() - this.checkedAt > SERVER_RECHECK_MS) {
      await this.checkServer();
      if (!this.usable) {
        throw new StoreUnavailableError(this.problem);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.usable = false;
    this.problem = 'redis: store closed';
    this.wake.wakeAll();
    await Promise.all([quit(this.cmd), quit(this.lane), quit(this.sub)]);
  }

  /** Connects, and resolves once usable or after `waitMs` (then serving degraded). */
  async start(waitMs: number): Promise<void> {
    const ready = new Promise<void>((resolve) => this.readyListeners.push(resolve));
    this.cmd.connect().catch(() => undefined);
    this.lane.connect().catch(() => undefined);
    this.sub.connect().catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs);
    });
    await Promise.race([ready, timeout]);
    clearTimeout(timer);
    if (!this.usable) {
      this.log.warn({
        msg: 'redis state store unreachable at boot: serving degraded (503) until it connects',
        reason: this.problem,
      });
    }
  }

  private watch(): void {
    this.cmd.on('ready', () => {
      void this.checkServer();
    });
    this.cmd.on('error', (error: Error) => {
      this.lastError = error.message;
      this.warnOnce('redis connection error', error.message);
    });
    this.cmd.on('close', () => {
      if (this.closed) {
        return;
      }
      if (this.usable) {
        this.log.warn({ msg: 'redis connection lost', reason: this.lastError || 'closed' });
      }
      this.usable = false;
      this.problem = `redis: connection lost${this.lastError ? ` (${this.lastError})` : ''}`;
      this.wake.wakeAll();
    });
    this.cmd.on('reconnecting', () => {
      if (!this.closed) {
        this.problem = `redis: reconnecting${this.lastError ? ` (${this.lastError})` : ''}`;
      }
    });
    this.lane.on('error', (error: Error) => {
      this.warnOnce('redis delivery connection error', error.message);
    });
    this.sub.on('ready', () => {
      void this.subscribe();
    });
    this.sub.on('error', (error: Error) => {
      this.warnOnce('redis wake-up connection error', error.message);
    });
    this.sub.on('close', () => {
      this.wake.lost();
    });
  }

  private async subscribe(): Promise<void> {
    while (!this.closed && this.sub.status === 'ready' && !this.wake.ready) {
      try {
        await this.wake.subscribe();
        this.notifyReady();
      } catch (error) {
        this.warnOnce('redis wake-up subscription failed', (error as Error).message);
        await new Promise((r) => setTimeout(r, 250).unref());
      }
    }
  }

  /**
   * Runs on every (re)connection and from readiness: the server must not evict keys (that would
   * silently drop accepted requests) and must hold this replica's data layout.
   */
  private async checkServer(): Promise<void> {
    this.checkedAt = Date.now();
    try {
      await this.checkWritable();
      const policy = await this.evictionPolicy();
      if (policy !== null && policy !== 'noeviction') {
        this.refuse(
          `redis: maxmemory-policy is ${policy}, which may evict relay state; set maxmemory-policy noeviction`,
        );
        return;
      }
      const schemaKey = this.routingKey;
      await this.migrate();
      await this.upgradeLayout();
      await this.cmd.set(schemaKey, SCHEMA_VERSION, 'NX');
      const schema = await this.cmd.get(schemaKey);
      if (schema !== SCHEMA_VERSION) {
        this.refuse(
          `redis: TPSCHEMA Redis holds relay state of layout ${String(schema)}; this replica speaks ${SCHEMA_VERSION}`,
        );
        return;
      }
      if (!this.usable) {
        this.log.log({ msg: 'redis state store ready' });
      }
      this.usable = true;
      this.problem = '';
      this.notifyReady();
      const waiting = this.usableListeners;
      this.usableListeners = [];
      for (const listener of waiting) {
        listener();
      }
    } catch (error) {
      this.usable = false;
      this.problem = toStoreError(error).message;
    }
  }

  /**
   * The server this store writes to must be a primary: ROLE (one round trip, as cheap as PING).
   * A replica there (a demoted primary, or a URL naming a replica) refuses service; with Sentinel
   * the connection is dropped so that it asks the Sentinels for the current primary.
   */
  private async checkWritable(): Promise<void> {
    const server = await primaryFor(this.cmd, this.routingKey);
    if (!this.roleAllowed) {
      await server.ping();
      return;
    }
    let role: string;
    try {
      role = String(((await server.call('ROLE')) as unknown[])[0]);
    } catch (error) {
      const mapped = toStoreError(error);
      if (!mapped.message.includes('NOPERM')) {
        throw error;
      }
      this.roleAllowed = false;
      this.warnOnce(
        'cannot read the redis role (ROLE not permitted); readiness uses PING',
        mapped.message,
      );
      await server.ping();
      return;
    }
    if (role !== 'master') {
      const reason = `redis: READONLY the server is a ${role === 'slave' ? 'replica' : role}, not a writable primary`;
      this.refuse(reason);
      if (this.cmd instanceof Redis && this.cmd.options.sentinels) {
        this.cmd.disconnect(true);
      }
      throw new StoreUnavailableError(reason);
    }
  }

  /** Renames an earlier prefix's keys under this one, once (see prefix-migration.ts). */
  private async migrate(): Promise<void> {
    if (this.migrateFrom === null || !(this.cmd instanceof Redis)) {
      return;
    }
    const result = await migratePrefix(this.cmd, this.migrateFrom, this.prefix, [
      SCHEMA_VERSION,
      ...UPGRADABLE_LAYOUTS,
    ]);
    if (result.status === 'moved') {
      this.log.warn({
        msg: 'redis: moved the relay state to the new key prefix; replicas of earlier releases now refuse to serve',
        from: this.migrateFrom,
        to: this.prefix,
        keys: result.keys,
      });
    }
  }

  /**
   * Upgrades an earlier release's layout in place, once (one atomic script, see
   * `tpRebuildPlacementView`): replicas of that release then refuse to serve (TPSCHEMA, 503).
   */
  private async upgradeLayout(): Promise<void> {
    const layout = await this.cmd.get(this.routingKey);
    if (layout === null || !UPGRADABLE_LAYOUTS.includes(layout)) {
      return;
    }
    const nodes = await this.sendOn(this.cmd, LAYOUT_UPGRADE_SCRIPT, [this.prefix, '{}', 0]);
    this.log.warn({
      msg: "redis: upgraded the relay state to this release's layout; replicas of earlier releases now refuse to serve",
      from: layout,
      to: SCHEMA_VERSION,
      nodes,
    });
  }

  /** The server's maxmemory-policy, or null when INFO is not allowed (managed services). */
  private async evictionPolicy(): Promise<string | null> {
    try {
      const info = await this.cmd.info('memory');
      return /maxmemory_policy:(\S+)/.exec(info)?.[1] ?? null;
    } catch (error) {
      const mapped = toStoreError(error);
      if (mapped.message.includes('NOPERM')) {
        this.warnOnce('cannot read redis maxmemory-policy (INFO not permitted)', mapped.message);
        return null;
      }
      throw error;
    }
  }

  private refuse(reason: string): void {
    if (this.usable || this.problem !== reason) {
      this.log.error({ msg: 'redis state store refused', reason });
    }
    this.usable = false;
    this.problem = reason;
  }

  private notifyReady(): void {
    if (this.usable && this.wake.ready) {
      const listeners = this.readyListeners;
      this.readyListeners = [];
      for (const listener of listeners) {
        listener();
      }
    }
  }

  private warnOnce(msg: string, reason: string): void {
    const now = Date.now();
    const key = `${msg}\n${reason}`;
    if (now - (this.logged.get(key) ?? 0) < LOG_REPEAT_MS) {
      return;
    }
    if (this.logged.size > 100) {
      this.logged.clear();
    }
    this.logged.set(key, now);
    this.log.warn({ msg, reason });
  }
}

/** The server answered READONLY: the connection reached a replica (a demoted primary). */
export class ReadOnlyReply extends StoreUnavailableError {}

async function quit(connection: RedisClient | WakeSubscriber): Promise<void> {
  if (connection.status !== 'ready') {
    connection.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const quitted = await Promise.race([
    connection.quit().then(
      () => true,
      () => false,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), QUIT_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  if (!quitted) {
    connection.disconnect();
  }
}
