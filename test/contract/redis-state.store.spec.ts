import { Redis } from 'ioredis';
import { ManualClock } from '../../src/common/clock';
import { InMemoryStateStore } from '../../src/state/in-memory-state.store';
import type { SelectNodeCommand } from '../../src/state/state-store';
import { SCHEMA_VERSION } from '../../src/state/redis/script.registry';
import { RedisStateStore } from '../../src/state/redis-state.store';
import type { StoreLimits, TransitionCounts } from '../../src/state/state.types';
import {
  NO_TRANSITION_SINK,
  type HandOffResult,
  type TransitionSink,
} from '../../src/state/transition.sink';
import { StoreUnavailableError } from '../../src/state/store-unavailable.error';
import { EMPTYING_KEYS, LASTING_KEYS, PER_ENTITY_FAMILIES } from '../helpers/redis-keys';
import {
  CapturedLog,
  checkPlacementView,
  deletePrefix,
  keysWithTtl,
  randomPrefix,
  sharedRedisUrl,
} from '../helpers/redis-server';
import { describeIf } from '../helpers/requirements';
import { eventually } from '../helpers/eventually';
import {
  CAPS,
  CAPS_64K,
  CONTRACT_LIMITS,
  counts,
  envelope,
  job,
  runStateStoreContract,
} from './state-store.contract';

const REDIS_URL = sharedRedisUrl('Redis state store');
/** What an API v1 poll's wait would claim (one job). */
const V1_POLL = { dialect: 'v1', max: 1 } as const;
const available = REDIS_URL !== '';

function openStore(
  prefix: string,
  clock: ManualClock,
  limits: StoreLimits = CONTRACT_LIMITS,
  sink?: TransitionSink,
): Promise<RedisStateStore> {
  return RedisStateStore.open(
    { url: REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 2000, limits, sink },
    clock,
    new CapturedLog(),
  );
}

/** A sink that keeps the hand-off results a store reports (and drops the rest). */
function handOffSink(results: HandOffResult[]): TransitionSink {
  return {
    transitions: () => undefined,
    replicationTimeout: () => undefined,
    handOff: (result) => results.push(result),
  };
}

if (available) {
  runStateStoreContract(RedisStateStore.name, async (limits, clock) => {
    const prefix = randomPrefix('contract');
    const store = await openStore(prefix, clock, limits);
    return { store, dispose: () => deletePrefix(REDIS_URL, prefix) };
  });
}

describeIf(available)(`${RedisStateStore.name} across replicas`, () => {
  let clock: ManualClock;
  let prefix: string;
  let a: RedisStateStore;
  let b: RedisStateStore;
  let admin: Redis;
  let handOffs: { a: HandOffResult[]; b: HandOffResult[] };
  const digest = 'digest-of-node-a';

  beforeEach(async () => {
    clock = new ManualClock();
    prefix = randomPrefix('replicas');
    handOffs = { a: [], b: [] };
    a = await openStore(prefix, clock, CONTRACT_LIMITS, handOffSink(handOffs.a));
    b = await openStore(prefix, clock, CONTRACT_LIMITS, handOffSink(handOffs.b));
    admin = new Redis(REDIS_URL);
  });

  afterEach(async () => {
    await a.close();
    await b.close();
    admin.disconnect();
    await deletePrefix(REDIS_URL, prefix);
  });

  async function registerNode(): Promise<void> {
    await a.upsertNode({
      nodeId: 'node-a',
      dialect: 'v1',
      capabilities: CAPS,
      newCredentialDigest: digest,
      now: clock.now(),
    });
  }

  it('should wake a node long-polling one replica when a client submits on another', async () => {
    await registerNode();
    await a.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: clock.now() });
    const waiting = a.waitForWork('node-a', clock.now() + 60_000, new AbortController().signal);

    const input = job();
    await b.enqueue({ job: input, now: clock.now() });
    await waiting;
    const claimed = await a.claimNext({
      nodeId: 'node-a',
      dialect: 'v1',
      max: 1,
      now: clock.now(),
    });

    expect(claimed.status === 'ok' && claimed.jobs[0]?.jobId).toBe(input.jobId);
  });

  it('should hand a node silent on one replica its queued work when it comes back on another within the grace', async () => {
    await registerNode();
    await a.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: clock.now() });
    const input = job();
    await a.enqueue({ job: input, now: clock.now() });
    clock.advance(CONTRACT_LIMITS.v1LeaseMs + CONTRACT_LIMITS.lapseGraceMs - 1);
    const sweptA = await a.sweep(clock.now());
    const sweptB = await b.sweep(clock.now());

    const back = await b.upsertNode({
      nodeId: 'node-a',
      dialect: 'v1',
      capabilities: CAPS,
      requireExisting: true,
      pollingUntil: clock.now() + 10_000,
      now: clock.now(),
    });
    const claimed = await b.claimNext({
      nodeId: 'node-a',
      dialect: 'v1',
      max: 1,
      now: clock.now(),
    });

    expect(counts(sweptA)).toEqual({ outcomes: {}, evictions: {} });
    expect(counts(sweptB)).toEqual({ outcomes: {}, evictions: {} });
    expect(back.status).toBe('renewed');
    expect(claimed.status === 'ok' && claimed.jobs[0]?.jobId).toBe(input.jobId);
  });

  it('should not lose a wake-up published between an empty claim and the wait', async () => {
    await registerNode();
    await a.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: clock.now() });
    await b.enqueue({ job: job(), now: clock.now() });

    await a.waitForWork('node-a', clock.now() + 60_000, new AbortController().signal);

    const claimed = await a.claimNext({
      nodeId: 'node-a',
      dialect: 'v1',
      max: 1,
      now: clock.now(),
    });
    expect(claimed.status === 'ok' && claimed.jobs.length).toBe(1);
  });

  it('should wake a client retrieving on one replica when the node answers on another', async () => {
    await registerNode();
    const input = job();
    await a.enqueue({ job: input, now: clock.now() });
    await a.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: clock.now() });
    await a.takeResponse({
      dialect: 'v1',
      clientKey: 'client-1',
      requestId: input.requestId,
      now: clock.now(),
    });
    const waiting = a.waitForResponse(
      'client-1',
      input.requestId,
      clock.now() + 60_000,
      new AbortController().signal,
    );

    await b.complete({
      dialect: 'v1',
      clientKey: 'client-1',
      requestId: input.requestId,
      envelope: envelope('answer'),
      now: clock.now(),
    });
    await waiting;

    expect(
      await a.takeResponse({
        dialect: 'v1',
        clientKey: 'client-1',
        requestId: input.requestId,
        now: clock.now(),
      }),
    ).toMatchObject({ status: 'ok', envelope: envelope('answer') });
  });

  describe('one-turn delivery to a held API v1 poll', () => {
    const held = (): Promise<string | null> => admin.hget(`${prefix}hold`, 'node-a');
    const stateOf = (jobId: string): Promise<string | null> =>
      admin.hget(`${prefix}j:${jobId}`, 's');

    /** A poll held on `store` for node-a, once Redis records the hold. */
    async function holdOn(
      store: RedisStateStore,
      abort = new AbortController(),
      until = clock.now() + 60_000,
    ): Promise<{ polling: Promise<unknown> }> {
      await store.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: clock.now() });
      const polling = store.waitForWork('node-a', until, abort.signal, V1_POLL);
      await eventually(async () => ((await held()) === null ? undefined : true), 100, 10);
      // Wrapped: an async function returning the promise itself would wait for it.
      return { polling };
    }

    it('should answer a poll held on one replica with the job a client submits on another, claimed by the enqueue', async () => {
      await registerNode();
      const { polling } = await holdOn(a);
      const input = job();

      const enqueued = await b.enqueue({ job: input, now: clock.now() });
      const handed = await polling;

      expect(enqueued).toEqual({
        status: 'queued',
        deadlineAt: clock.now() + CONTRACT_LIMITS.v1DeadlineMs,
        transitions: { outcomes: {}, evictions: {} },
      });
      expect(handed).toEqual([
        {
          jobId: input.jobId,
          clientKey: 'client-1',
          requestId: input.requestId,
          cancelToken: input.cancelToken,
          stream: false,
          envelope: input.envelope,
          deadlineAt: clock.now() + CONTRACT_LIMITS.v1DeadlineMs,
        },
      ]);
      expect(await stateOf(input.jobId)).toBe('i');
      expect(await held()).toBeNull();
      expect(
        await a.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: clock.now() }),
      ).toMatchObject({ status: 'ok', jobs: [] });
      expect((await b.stats(clock.now())).inFlight).toBe(1);
      expect(handOffs).toEqual({ a: ['taken'], b: [] });
    });

    it('should answer a poll held on the replica the client submits to from the enqueue reply itself', async () => {
      await registerNode();
      const { polling } = await holdOn(a);
      const input = job();

      await a.enqueue({ job: input, now: clock.now() });

      expect(await polling).toEqual([expect.objectContaining({ jobId: input.jobId })]);
      expect(await stateOf(input.jobId)).toBe('i');
      expect(handOffs).toEqual({ a: ['taken'], b: [] });
    });

    it('should give a job claimed for a poll that ended meanwhile back to the head of its queue', async () => {
      await registerNode();
      const abort = new AbortController();
      const { polling } = await holdOn(a, abort);
      abort.abort();
      expect(await polling).toBeNull();
      const input = job();

      await b.enqueue({ job: input, now: clock.now() });
      // Reported once the give-back's reply is read: the job is back in the queue by then.
      await eventually(() => Promise.resolve(handOffs.a.length > 0 ? true : undefined), 100, 10);
      const claimed = await b.claimNext({
        nodeId: 'node-a',
        dialect: 'v1',
        max: 1,
        now: clock.now(),
      });

      expect(claimed).toMatchObject({ status: 'ok', jobs: [{ jobId: input.jobId }] });
      expect(handOffs).toEqual({ a: ['given_back'], b: [] });
    });

    it('should count a hand-off message it cannot read and leave the poll held', async () => {
      await registerNode();
      const abort = new AbortController();
      const { polling } = await holdOn(a, abort);
      const holder = await held();
      let answered = false;
      void polling.then(() => {
        answered = true;
      });

      // Addressed to a's process and its poll, but the claim is not JSON.
      await admin.publish(`${prefix}wake`, `h\n${holder}\n{"not json`);
      await eventually(() => Promise.resolve(handOffs.a.length > 0 ? true : undefined), 100, 10);

      expect(handOffs).toEqual({ a: ['left_to_lease'], b: [] });
      expect(answered).toBe(false);
      abort.abort();
      expect(await polling).toBeNull();
    });

    it('should not claim for a hold past its deadline', async () => {
      await registerNode();
      const { polling } = await holdOn(a, new AbortController(), clock.now() + 1000);
      clock.advance(1000);
      expect(await polling).toBeNull();
      const input = job();

      await b.enqueue({ job: input, now: clock.now() });

      expect(await stateOf(input.jobId)).toBe('q');
      expect(await held()).toBeNull();
      expect(
        await a.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: clock.now() }),
      ).toMatchObject({ status: 'ok', jobs: [{ jobId: input.jobId }] });
    });

    it('should claim in the re-check what came between the empty claim and the wait, recording no hold', async () => {
      await registerNode();
      await a.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: clock.now() });
      const input = job();
      await b.enqueue({ job: input, now: clock.now() });

      const claimed = await a.waitForWork(
        'node-a',
        clock.now() + 60_000,
        new AbortController().signal,
        V1_POLL,
      );

      expect(claimed).toEqual([expect.objectContaining({ jobId: input.jobId })]);
      expect(await stateOf(input.jobId)).toBe('i');
      expect(await held()).toBeNull();
    });

    it('should hold no legacy poll: a legacy wait is woken and claims', async () => {
      await a.upsertNode({ nodeId: 'node-l', dialect: 'legacy', now: clock.now() });
      const input = job({
        dialect: 'legacy',
        nodeId: 'node-l',
        requestId: null,
        cancelToken: null,
      });
      const waiting = a.waitForWork('node-l', clock.now() + 60_000, new AbortController().signal, {
        dialect: 'legacy',
        max: 1,
      });

      await b.enqueue({ job: input, now: clock.now() });

      expect(await waiting).toBeNull();
      expect(await admin.hlen(`${prefix}hold`)).toBe(0);
    });

    it('should wake, not claim for, a held poll when the work is untracked (no request id)', async () => {
      await registerNode();
      const { polling } = await holdOn(a);
      const input = job({ requestId: null, cancelToken: null });

      await b.enqueue({ job: input, now: clock.now() });

      expect(await polling).toBeNull();
      expect(
        await a.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: clock.now() }),
      ).toMatchObject({ status: 'ok', jobs: [{ jobId: input.jobId }] });
    });

    it('should hand the second of two jobs to nobody: the first enqueue takes the hold', async () => {
      await registerNode();
      const { polling } = await holdOn(a);
      const first = job();
      const second = job();

      await b.enqueue({ job: first, now: clock.now() });
      await b.enqueue({ job: second, now: clock.now() });

      expect(await polling).toEqual([expect.objectContaining({ jobId: first.jobId })]);
      expect(await stateOf(second.jobId)).toBe('q');
    });
  });

  it('should wake only local waiters on wakeAll', async () => {
    await registerNode();
    await a.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: clock.now() });
    const onA = a.waitForWork('node-a', clock.now() + 60_000, new AbortController().signal);
    let bWoke = false;
    const onB = b
      .waitForWork('node-a', clock.now() + 5000, new AbortController().signal)
      .then(() => {
        bWoke = true;
      });

    a.wakeAll();
    await onA;
    const bBefore = bWoke;
    clock.advance(5000);
    await onB;

    expect(bBefore).toBe(false);
  });

  it('should count each expiry once when every replica sweeps at the same time', async () => {
    await a.upsertNode({
      nodeId: 'node-a',
      dialect: 'v1',
      capabilities: CAPS,
      newCredentialDigest: digest,
      pollingUntil: clock.now() + 10 * CONTRACT_LIMITS.v1DeadlineMs,
      now: clock.now(),
    });
    for (let i = 0; i < 3; i += 1) {
      await a.enqueue({ job: job({ clientKey: `c${i}` }), now: clock.now() });
    }
    await a.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: clock.now() });
    clock.advance(CONTRACT_LIMITS.v1DeadlineMs);

    const results = await Promise.all([
      a.sweep(clock.now()),
      b.sweep(clock.now()),
      a.sweep(clock.now()),
    ]);

    const total = { expired: 0, timed_out: 0 };
    for (const r of results) {
      total.expired += r.outcomes.expired ?? 0;
      total.timed_out += r.outcomes.timed_out ?? 0;
    }
    expect(total).toEqual({ expired: 3, timed_out: 0 });
  });

  it('should enforce caps atomically under concurrent admission from two replicas', async () => {
    await registerNode();

    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        (i % 2 === 0 ? a : b).enqueue({ job: job({ clientKey: `c${i}` }), now: clock.now() }),
      ),
    );

    expect(results.filter((r) => r.status === 'queued')).toHaveLength(
      CONTRACT_LIMITS.maxQueuePerNode,
    );
    expect((await b.stats(clock.now())).queueDepth).toBe(CONTRACT_LIMITS.maxQueuePerNode);
  });

  it('should hand each job to exactly one of two replicas claiming at once', async () => {
    await registerNode();
    for (let i = 0; i < 3; i += 1) {
      await a.enqueue({ job: job({ clientKey: `c${i}` }), now: clock.now() });
    }

    const claims = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        (i % 2 === 0 ? a : b).claimNext({
          nodeId: 'node-a',
          dialect: 'v1',
          max: 1,
          now: clock.now(),
        }),
      ),
    );

    const ids = claims.flatMap((c) => (c.status === 'ok' ? c.jobs.map((j) => j.jobId) : []));
    expect(ids).toHaveLength(3);
    expect(new Set(ids).size).toBe(3);
  });

  /** The server's CLIENT LIST line of one of the store's own connections, found by its port. */
  async function serverSideOf(connection: Redis): Promise<Record<string, string>> {
    const port = (connection as unknown as { stream: { localPort: number } }).stream.localPort;
    const list = (await admin.client('LIST')) as string;
    const line = list.split('\n').find((l) => l.includes(`addr=127.0.0.1:${port} `));
    if (line === undefined) {
      throw new Error(`no client on port ${port}`);
    }
    return Object.fromEntries(
      line.split(' ').map((f: string) => f.split('=', 2) as [string, string]),
    );
  }

  it('should send claims on their own delivery connection, and on the command connection while that one is down', async () => {
    const lane = (a as unknown as { connections: { lane: Redis } }).connections.lane;
    await registerNode();
    const first = job({ clientKey: 'c1' });
    const second = job({ clientKey: 'c2' });
    await b.enqueue({ job: first, now: clock.now() });
    await b.enqueue({ job: second, now: clock.now() });
    const before = await serverSideOf(lane);

    const claimed = await a.claimNext({
      nodeId: 'node-a',
      dialect: 'v1',
      max: 1,
      now: clock.now(),
    });
    const after = await serverSideOf(lane);
    const dropped = new Promise((resolve) => lane.once('close', resolve));
    await admin.client('KILL', 'ID', after.id as string);
    await dropped;
    const fallback = await a.claimNext({
      nodeId: 'node-a',
      dialect: 'v1',
      max: 1,
      now: clock.now(),
    });

    expect(before.name).toBe('tokenplace-relay-delivery');
    expect(before.cmd).not.toMatch(/^eval/);
    expect(after.cmd).toMatch(/^eval/);
    expect(claimed.status === 'ok' && claimed.jobs.map((j) => j.jobId)).toEqual([first.jobId]);
    expect(fallback.status === 'ok' && fallback.jobs.map((j) => j.jobId)).toEqual([second.jobId]);
  });

  it('should recover when Redis forgets its scripts (SCRIPT FLUSH, restart, failover)', async () => {
    await registerNode();
    await a.enqueue({ job: job(), now: clock.now() });

    await admin.script('FLUSH');
    const claimed = await b.claimNext({
      nodeId: 'node-a',
      dialect: 'v1',
      max: 1,
      now: clock.now(),
    });
    await admin.script('FLUSH');
    const stats = await a.stats(clock.now());

    expect(claimed.status === 'ok' && claimed.jobs).toHaveLength(1);
    expect(stats.inFlight).toBe(1);
  });

  it('should refuse to serve state written in another data layout', async () => {
    await admin.set(`${prefix}schema`, 'tokenplace-relay/0');

    const attempt = a.listNodes(clock.now());

    await expect(attempt).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(a.ping()).rejects.toThrow(/layout tokenplace-relay\/0/);
    await admin.set(`${prefix}schema`, SCHEMA_VERSION);
    await expect(a.ping()).resolves.toBeUndefined();
    await expect(a.listNodes(clock.now())).resolves.toEqual([]);
  });

  it('should keep the placement view as a rebuild writes it, and place as the memory store does, after every transition', async () => {
    const memory = new InMemoryStateStore(CONTRACT_LIMITS, clock);
    const now = (): number => clock.now();
    const asks: Array<Omit<SelectNodeCommand, 'now'>> = [
      { model: 'qwen3-8b-instruct', tier: '8k-fast', maxQueueDepth: 3 },
      { model: 'qwen3-8b-instruct', tier: '8k-fast', maxQueueDepth: 3, atCapacity: 'least_loaded' },
      { model: 'm2', tier: '64k-full', maxQueueDepth: 1, exclude: ['node-b'] },
    ];
    const steps: string[] = [];
    const both = async (
      step: string,
      act: (s: InMemoryStateStore | RedisStateStore) => Promise<unknown>,
    ) => {
      const m = await act(memory);
      const r = await act(a);
      const view = await checkPlacementView(admin, prefix);
      const placed = [];
      for (const ask of asks) {
        placed.push({
          memory: await memory.selectNode({ ...ask, now: now() }),
          redis: await b.selectNode({ ...ask, now: now() }),
        });
      }
      steps.push(step);
      expect({ step, reply: r, view: view.stored }).toEqual({ step, reply: m, view: view.rebuilt });
      expect({ step, placed: placed.map((p) => p.redis) }).toEqual({
        step,
        placed: placed.map((p) => p.memory),
      });
    };
    const claim = (nodeId: string) => (s: InMemoryStateStore | RedisStateStore) =>
      s.claimNext({ nodeId, dialect: 'v1', max: 1, now: now() });
    const control = (requestId: string) => (s: InMemoryStateStore | RedisStateStore) =>
      s.control({
        nodeId: 'node-a',
        requestId,
        credentialDigest: digest,
        acknowledge: false,
        now: now(),
      });
    const first = job();
    const second = job();
    const third = job({ nodeId: 'node-b' });

    await both('register a', (s) =>
      s.upsertNode({
        nodeId: 'node-a',
        dialect: 'v1',
        capabilities: CAPS,
        newCredentialDigest: digest,
        now: now(),
      }),
    );
    await both('register b (64k)', (s) =>
      s.upsertNode({ nodeId: 'node-b', dialect: 'v1', capabilities: CAPS_64K, now: now() }),
    );
    await both('register fallback', (s) =>
      s.upsertNode({
        nodeId: 'node-f',
        dialect: 'v1',
        capabilities: CAPS,
        fallback: true,
        now: now(),
      }),
    );
    await both('register legacy', (s) =>
      s.upsertNode({ nodeId: 'node-l', dialect: 'legacy', now: now() }),
    );
    await both('enqueue 1', (s) => s.enqueue({ job: first, now: now() }));
    await both('enqueue 2', (s) => s.enqueue({ job: second, now: now() }));
    await both('enqueue 3 at b', (s) => s.enqueue({ job: third, now: now() }));
    await both('claim 1', claim('node-a'));
    await both('control 1', control(first.requestId as string));
    clock.advance(CONTRACT_LIMITS.inFlightTtlMs + 1);
    await both('claim lease lapsed, sweep', (s) => s.sweep(now()));
    await both('control 1 again', control(first.requestId as string));
    await both('renew a, polling', (s) =>
      s.upsertNode({
        nodeId: 'node-a',
        dialect: 'v1',
        requireExisting: true,
        pollingUntil: now() + 60_000,
        now: now(),
      }),
    );
    await both('claim 3 at b', claim('node-b'));
    clock.advance(CONTRACT_LIMITS.inFlightTtlMs + 1);
    await both('unconfirmed claim requeued, sweep', (s) => s.sweep(now()));
    await both('answer 1', (s) =>
      s.complete({
        dialect: 'v1',
        clientKey: 'client-1',
        requestId: first.requestId,
        envelope: envelope('a'),
        now: now(),
      }),
    );
    await both('cancel 2', (s) =>
      s.cancel({
        clientKey: 'client-1',
        requestId: second.requestId as string,
        cancelToken: second.cancelToken as string,
        status: 'cancelled',
        reason: 'requester_cancelled',
        now: now(),
      }),
    );
    await both('capabilities dropped on b', (s) =>
      s.upsertNode({ nodeId: 'node-b', dialect: 'v1', capabilities: null, now: now() }),
    );
    await both('b back with capabilities', (s) =>
      s.upsertNode({ nodeId: 'node-b', dialect: 'v1', capabilities: CAPS_64K, now: now() }),
    );
    await both('mark a unusable', (s) => s.markKeyUnusable('node-a', now()));
    clock.advance(CONTRACT_LIMITS.v1LeaseMs + 1);
    await both('lapsed', (s) => s.sweep(now()));
    await both('b renews', (s) =>
      s.upsertNode({ nodeId: 'node-b', dialect: 'v1', requireExisting: true, now: now() }),
    );
    clock.advance(60_000);
    await both('a gone (its poll ended), swept', (s) => s.sweep(now()));
    await both('l again, as v1', (s) =>
      s.upsertNode({ nodeId: 'node-l', dialect: 'v1', capabilities: CAPS, now: now() }),
    );
    await both('unregister b', (s) =>
      s.unregisterNode({ nodeId: 'node-b', credentialDigest: null, force: true, now: now() }),
    );
    await memory.close();

    expect(steps).toHaveLength(24);
    expect(await admin.hlen(`${prefix}pv`)).toBe(1);
  });

  it('should upgrade the layout of the previous release at boot: the placement view rebuilt, the layout key moved on', async () => {
    await registerNode();
    await a.upsertNode({ nodeId: 'node-b', dialect: 'v1', capabilities: CAPS, now: clock.now() });
    await a.enqueue({ job: job(), now: clock.now() });
    const view = await checkPlacementView(admin, prefix);
    await admin.del(`${prefix}pv`, `${prefix}pq`, `${prefix}pa`);
    await admin.set(`${prefix}schema`, 'tokenplace-relay/1');
    const log = new CapturedLog();

    const upgraded = await RedisStateStore.open(
      { url: REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 2000, limits: CONTRACT_LIMITS },
      clock,
      log,
    );
    const picked = await upgraded.selectNode({
      model: 'qwen3-8b-instruct',
      tier: '8k-fast',
      maxQueueDepth: 10,
      now: clock.now(),
    });
    await upgraded.close();

    expect(await admin.get(`${prefix}schema`)).toBe(SCHEMA_VERSION);
    expect((await checkPlacementView(admin, prefix)).stored).toEqual(view.stored);
    expect(picked.status === 'selected' && picked.selected.nodeId).toBe('node-b');
    expect(JSON.stringify(log.entries)).toContain('upgraded the relay state');
  });

  it('should keep every key under its prefix, with a TTL or an index that removes it, and leave nothing behind', async () => {
    const now = (): number => clock.now();
    await registerNode();
    await a.upsertNode({ nodeId: 'node-b', dialect: 'v1', capabilities: CAPS, now: now() });
    await a.upsertNode({
      nodeId: 'node-l',
      dialect: 'legacy',
      origin: { owner: 'owner-l', group: 'group-l' },
      maxPerGroup: 2,
      now: now(),
    });
    const tie = await a.selectNode({
      model: 'qwen3-8b-instruct',
      tier: '8k-fast',
      maxQueueDepth: 10,
      now: now(),
    });
    const claimed = job({ clientKey: 'c1' });
    const cancelled = job({ clientKey: 'c4' });
    const queued = job({ clientKey: 'c2' });
    const answered = job({ clientKey: 'c5' });
    const handed = job({ clientKey: 'c6', nodeId: 'node-b' });
    const streamed = job({
      dialect: 'legacy',
      nodeId: 'node-l',
      requestId: null,
      cancelToken: null,
      stream: true,
      clientKey: 'c3',
    });
    for (const input of [claimed, cancelled, answered, handed, streamed]) {
      await a.enqueue({ job: input, now: now() });
      await a.claimNext({ nodeId: input.nodeId, dialect: input.dialect, max: 1, now: now() });
    }
    await a.enqueue({ job: queued, now: now() });
    await a.cancel({
      clientKey: 'c4',
      requestId: cancelled.requestId as string,
      cancelToken: cancelled.cancelToken as string,
      status: 'cancelled',
      reason: 'requester_cancelled',
      now: now(),
    });
    for (const input of [answered, handed]) {
      await a.complete({
        dialect: 'v1',
        clientKey: input.clientKey as string,
        requestId: input.requestId,
        envelope: envelope('a'),
        now: now(),
      });
    }
    await a.takeResponse({
      dialect: 'v1',
      clientKey: 'c6',
      requestId: handed.requestId,
      now: now(),
    });
    await a.appendStreamChunk({
      sessionId: streamed.jobId,
      chunk: '{"t":"x"}',
      chunkBytes: 1,
      final: false,
      now: now(),
    });
    await a.complete({
      dialect: 'v1',
      clientKey: 'c9',
      requestId: null,
      envelope: envelope('u'),
      now: now(),
    });
    for (const clientKey of ['c8', 'c7']) {
      await a.complete({
        dialect: 'legacy',
        clientKey,
        requestId: null,
        envelope: envelope('l'),
        now: now(),
      });
    }
    await a.takeResponse({ dialect: 'legacy', clientKey: 'c7', requestId: null, now: now() });
    await a.hitRateLimit({ key: 'k', limit: 3, windowMs: 1000, now: now() });
    // A held API v1 poll that ended before any work came: its hold stays until its deadline.
    const abort = new AbortController();
    const polling = a.waitForWork('node-b', now() + 60_000, abort.signal, V1_POLL);
    await eventually(
      async () => ((await admin.hlen(`${prefix}hold`)) === 1 ? true : undefined),
      100,
      10,
    );
    abort.abort();
    await polling;
    const during = await keysWithTtl(REDIS_URL, prefix);

    for (let round = 0; round < 2; round += 1) {
      clock.advance(24 * 3600 * 1000);
      await a.sweep(now());
    }
    const after = await keysWithTtl(REDIS_URL, prefix);

    const family = (key: string): string | null => /^([a-z]+):/.exec(key)?.[1] ?? null;
    const perEntity = [...during].filter(([k]) => !k.startsWith('ctr:') && family(k) !== null);
    const fixed = [...during.keys()].filter((k) => k.startsWith('ctr:') || family(k) === null);
    expect(tie.status).toBe('selected');
    expect(new Set(perEntity.map(([k]) => family(k)))).toEqual(new Set(PER_ENTITY_FAMILIES));
    expect(perEntity.filter(([, ttl]) => ttl < 0)).toEqual([]);
    expect(fixed.sort()).toEqual([...LASTING_KEYS, ...EMPTYING_KEYS].sort());
    expect([...after.keys()].sort()).toEqual([...LASTING_KEYS].sort());
  });

  it('should answer a reply that breaks its script header with a store outage (503), not a wrong value', async () => {
    await registerNode();
    await admin.hset(`${prefix}term`, 'client-1\nreq-x', 'vanished\nnobody_knows');
    await admin.hset(`${prefix}n:node-a`, 'caps', JSON.stringify({ ...CAPS, api_version: 'v2' }));

    const take = a.takeResponse({
      dialect: 'v1',
      clientKey: 'client-1',
      requestId: 'req-x',
      now: clock.now(),
    });
    const list = a.listNodes(clock.now());

    await expect(take).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(take).rejects.toThrow(/malformed reply from tpTakeResponse: terminal status/);
    await expect(list).rejects.toThrow(/malformed reply from tpListNodes: node list at 0/);
  });

  it('should publish wake-ups only on the prefix channel', async () => {
    const listener = new Redis(REDIS_URL);
    const seen: string[] = [];
    await listener.psubscribe('*');
    listener.on('pmessage', (_pattern: string, channel: string) => {
      if (channel.startsWith('tpt:') && channel.includes(prefix.split(':')[2] as string)) {
        seen.push(channel);
      }
    });
    await registerNode();

    await a.enqueue({ job: job(), now: clock.now() });
    await a.ping();
    await listener.ping();
    listener.disconnect();

    expect(new Set(seen)).toEqual(new Set([`${prefix}wake`]));
  });

  it('should report transitions to the replica that performed them', async () => {
    await registerNode();
    const input = job();
    await a.enqueue({ job: input, now: clock.now() });

    const cancel = await b.cancel({
      clientKey: 'client-1',
      requestId: input.requestId as string,
      cancelToken: input.cancelToken as string,
      status: 'cancelled',
      reason: 'requester_cancelled',
      now: clock.now(),
    });
    const again = await a.sweep(clock.now());

    expect(counts(cancel.transitions)).toEqual({ outcomes: { cancelled: 1 }, evictions: {} });
    expect(counts(again)).toEqual({ outcomes: {}, evictions: {} });
  });

  it('should report each transition to its sink once, on the replica that performed it', async () => {
    const told = { a: [] as TransitionCounts[], b: [] as TransitionCounts[] };
    const sinkOf = (list: TransitionCounts[]): TransitionSink => ({
      ...NO_TRANSITION_SINK,
      transitions: (t) => list.push(t),
    });
    const sa = await RedisStateStore.open(
      {
        url: REDIS_URL,
        keyPrefix: prefix,
        commandTimeoutMs: 2000,
        limits: CONTRACT_LIMITS,
        sink: sinkOf(told.a),
      },
      clock,
      new CapturedLog(),
    );
    const sb = await RedisStateStore.open(
      {
        url: REDIS_URL,
        keyPrefix: prefix,
        commandTimeoutMs: 2000,
        limits: CONTRACT_LIMITS,
        sink: sinkOf(told.b),
      },
      clock,
      new CapturedLog(),
    );
    try {
      await registerNode();
      const input = job();
      await sa.enqueue({ job: input, now: clock.now() });
      await sb.cancel({
        clientKey: 'client-1',
        requestId: input.requestId as string,
        cancelToken: input.cancelToken as string,
        status: 'cancelled',
        reason: 'requester_cancelled',
        now: clock.now(),
      });
      await sa.sweep(clock.now());
    } finally {
      await sa.close();
      await sb.close();
    }

    const nonEmpty = (list: TransitionCounts[]) =>
      list
        .map(counts)
        .filter((t) => Object.keys(t.outcomes).length + Object.keys(t.evictions).length > 0);
    expect(nonEmpty(told.a)).toEqual([]);
    expect(nonEmpty(told.b)).toEqual([{ outcomes: { cancelled: 1 }, evictions: {} }]);
  });
});
