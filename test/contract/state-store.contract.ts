import { ManualClock } from '../../src/common/clock';
import type { StateStore, UpsertNodeCommand } from '../../src/state/state-store';
import {
  answerBytes,
  PROTOCOL_ID,
  type Dialect,
  type Envelope,
  type JobInput,
  type NodeCapabilities,
  type StoreLimits,
  type TransitionCounts,
} from '../../src/state/state.types';

/** A store built for one test; `dispose` releases it (and, for Redis, removes its keys). */
export interface StoreUnderTest {
  store: StateStore;
  dispose?: () => Promise<void>;
}

/** Builds a fresh, empty store with the given limits and clock. */
export type StoreFactory = (limits: StoreLimits, clock: ManualClock) => Promise<StoreUnderTest>;

/** Small limits, so every cap is reachable in a few calls. */
export const CONTRACT_LIMITS: StoreLimits = {
  maxNodes: 4,
  maxQueuePerNode: 3,
  maxQueuedTotal: 5,
  maxQueuedBytes: 10_000,
  maxPendingPerClient: 3,
  maxResponsesPerClient: 2,
  maxAnswerBytes: 10_000_000,
  answerReserveBytes: 2_500_000,
  answerRetryMs: 5_000,
  maxStoredResponses: 4,
  maxTerminalRecords: 3,
  maxStreamSessions: 2,
  maxStreamChunks: 3,
  maxStreamBytes: 100,
  maxRateLimitBuckets: 3,
  maxTieCursors: 1024,
  legacyLeaseMs: 10_000,
  v1LeaseMs: 30_000,
  inFlightTtlMs: 20_000,
  v1DeadlineMs: 480_000,
  legacyRequestTtlMs: 300_000,
  responseTtlMs: 300_000,
  deliveryGraceMs: 30_000,
  lapseGraceMs: 5_000,
  terminalTtlMs: 300_000,
  tombstoneTtlMs: 60_000,
  streamTtlMs: 120_000,
};

export const CAPS: NodeCapabilities = {
  api_version: 'v1',
  supported_model_ids: ['qwen3-8b-instruct', 'm2'],
  active_context_tier: '8k-fast',
  maximum_total_context_tokens: 8192,
  default_output_token_reservation: 1024,
  maximum_output_tokens: 8192,
  max_concurrency: 1,
  backend_class: 'cuda',
};

export const CAPS_64K: NodeCapabilities = {
  ...CAPS,
  active_context_tier: '64k-full',
  maximum_total_context_tokens: 65536,
};

/** An opaque envelope whose fields are easy to recognise on the way out. */
export function envelope(tag: string): Envelope {
  return {
    ciphertext: `ct/${tag}+=é€`,
    cipherkey: `ck-${tag}`,
    iv: `iv-${tag}`,
    extra: { protocol: PROTOCOL_ID, version: 1, request_id: `rid-${tag}` },
  };
}

let jobCounter = 0;

/** A job as the services build it: API v1 with a request id and a cancel token by default. */
export function job(overrides: Partial<JobInput> = {}): JobInput {
  jobCounter += 1;
  const n = jobCounter;
  const e = overrides.envelope ?? envelope(`job${n}`);
  return {
    jobId: `job-${n}-${Math.random().toString(36).slice(2, 10)}`,
    dialect: 'v1',
    nodeId: 'node-a',
    clientKey: 'client-1',
    requestId: `req-${n}`,
    cancelToken: `tok-${n}`,
    stream: false,
    envelope: e,
    bytes: e.ciphertext.length + e.cipherkey.length + e.iv.length,
    ...overrides,
  };
}

function legacyJob(overrides: Partial<JobInput> = {}): JobInput {
  return job({ dialect: 'legacy', requestId: null, cancelToken: null, ...overrides });
}

/** Counts with zero entries dropped, for exact comparison. */
export function counts(t: TransitionCounts): TransitionCounts {
  const clean = <K extends string>(r: Partial<Record<K, number>>): Partial<Record<K, number>> =>
    Object.fromEntries(Object.entries(r).filter(([, v]) => v !== 0 && v !== undefined)) as Partial<
      Record<K, number>
    >;
  return { outcomes: clean(t.outcomes), evictions: clean(t.evictions) };
}

const NONE: TransitionCounts = { outcomes: {}, evictions: {} };
const digestOf = (nodeId: string): string => `digest-of-${nodeId}`;

/**
 * The behaviour every {@link StateStore} must have, run against a fresh store per test with a
 * manual clock. The in-memory store is the reference; the Redis store must be indistinguishable.
 */
export function runStateStoreContract(label: string, factory: StoreFactory): void {
  describe(`StateStore contract (${label})`, () => {
    let clock: ManualClock;
    let store: StateStore;
    let limits: StoreLimits;
    let disposers: Array<() => Promise<void>> = [];

    async function open(overrides: Partial<StoreLimits> = {}): Promise<StateStore> {
      limits = { ...CONTRACT_LIMITS, ...overrides };
      const built = await factory(limits, clock);
      disposers.push(async () => {
        await built.store.close();
        await built.dispose?.();
      });
      return built.store;
    }

    const now = (): number => clock.now();

    function upsert(
      s: StateStore,
      nodeId: string,
      dialect: Dialect,
      extra: Partial<UpsertNodeCommand> = {},
    ): ReturnType<StateStore['upsertNode']> {
      return s.upsertNode({
        nodeId,
        dialect,
        ...(dialect === 'v1' ? { capabilities: CAPS, newCredentialDigest: digestOf(nodeId) } : {}),
        now: now(),
        ...extra,
      });
    }

    async function enqueueOk(s: StateStore, input: JobInput): Promise<number> {
      const result = await s.enqueue({ job: input, now: now() });
      if (result.status !== 'queued') {
        throw new Error(`expected queued, got ${result.status}`);
      }
      return result.deadlineAt;
    }

    async function claimOne(s: StateStore, nodeId = 'node-a', dialect: Dialect = 'v1') {
      const result = await s.claimNext({ nodeId, dialect, max: 1, now: now() });
      if (result.status !== 'ok') {
        throw new Error(`expected ok, got ${result.status}`);
      }
      return result.jobs[0];
    }

    function take(s: StateStore, input: JobInput) {
      return s.takeResponse({
        dialect: input.dialect,
        clientKey: input.clientKey as string,
        requestId: input.requestId,
        now: now(),
      });
    }

    /** A retrieval as the relay does it: hand the answer out, then confirm it was written. */
    async function retrieve(s: StateStore, input: JobInput) {
      const result = await take(s, input);
      if (result.status === 'ok') {
        await s.confirmDelivery({
          dialect: input.dialect,
          clientKey: input.clientKey as string,
          requestId: input.requestId,
          now: now(),
        });
      }
      return result;
    }

    function control(
      s: StateStore,
      nodeId: string,
      requestId: string,
      acknowledge = false,
      credentialDigest = digestOf(nodeId),
    ) {
      return s.control({ nodeId, requestId, credentialDigest, acknowledge, now: now() });
    }

    function complete(s: StateStore, input: JobInput, tag = 'answer') {
      return s.complete({
        dialect: input.dialect,
        clientKey: input.clientKey as string,
        requestId: input.requestId,
        envelope: envelope(tag),
        now: now(),
      });
    }

    beforeEach(async () => {
      clock = new ManualClock();
      disposers = [];
      store = await open();
    });

    afterEach(async () => {
      for (const dispose of disposers.reverse()) {
        await dispose();
      }
    });

    describe('nodes', () => {
      it('should create a legacy node and renew it without issuing credentials', async () => {
        const created = await upsert(store, 'node-l', 'legacy');
        clock.advance(1000);
        const renewed = await upsert(store, 'node-l', 'legacy');
        const nodes = await store.listNodes(now());

        expect(created).toEqual({ status: 'created', credentialIssued: false, transitions: NONE });
        expect(renewed).toEqual({ status: 'renewed', credentialIssued: false, transitions: NONE });
        expect(nodes).toEqual([
          {
            nodeId: 'node-l',
            dialect: 'legacy',
            lastPingAt: now(),
            leaseMs: limits.legacyLeaseMs,
            queueDepth: 0,
            inFlightCount: 0,
            fallback: false,
            keyUnusable: false,
            capabilities: null,
          },
        ]);
      });

      it('should issue the v1 credential digest once and keep it on re-registration', async () => {
        const first = await upsert(store, 'node-a', 'v1');
        const second = await upsert(store, 'node-a', 'v1', { newCredentialDigest: 'other' });
        const withFirst = await control(store, 'node-a', 'r-unknown');
        const withSecond = await control(store, 'node-a', 'r-unknown', false, 'other');

        expect(first).toMatchObject({ status: 'created', credentialIssued: true });
        expect(second).toMatchObject({ status: 'renewed', credentialIssued: false });
        expect(withFirst).toMatchObject({ status: 'ok', state: 'completed_unavailable' });
        expect(withSecond.status).toBe('forbidden');
      });

      it('should issue a digest on renewal when the node has none yet', async () => {
        const created = await upsert(store, 'node-a', 'v1', { newCredentialDigest: undefined });
        const renewed = await upsert(store, 'node-a', 'v1');

        expect(created).toMatchObject({ status: 'created', credentialIssued: false });
        expect(renewed).toMatchObject({ status: 'renewed', credentialIssued: true });
        expect(await control(store, 'node-a', 'r')).toMatchObject({ status: 'ok' });
      });

      it('should refuse an unknown node when it must exist (API v1 poll)', async () => {
        const result = await upsert(store, 'ghost', 'v1', { requireExisting: true });

        expect(result).toEqual({ status: 'not_found', transitions: NONE });
        expect(await store.listNodes(now())).toEqual([]);
      });

      it('should replace capabilities when given, keep them when undefined and clear them with null', async () => {
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-a', 'v1', { capabilities: CAPS_64K });
        const replaced = (await store.listNodes(now()))[0]?.capabilities;
        await upsert(store, 'node-a', 'v1', { capabilities: undefined });
        const kept = (await store.listNodes(now()))[0]?.capabilities;
        await upsert(store, 'node-a', 'v1', { capabilities: null });
        const cleared = (await store.listNodes(now()))[0]?.capabilities;

        expect(replaced).toEqual(CAPS_64K);
        expect(kept).toEqual(CAPS_64K);
        expect(cleared).toBeNull();
      });

      it('should keep the dialects apart: a /sink ping or a v1 poll on the other dialect conflicts', async () => {
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-l', 'legacy');

        const sinkOnV1 = await upsert(store, 'node-a', 'legacy');
        const pollOnLegacy = await upsert(store, 'node-l', 'v1', { requireExisting: true });
        const claimV1AsLegacy = await store.claimNext({
          nodeId: 'node-a',
          dialect: 'legacy',
          max: 1,
          now: now(),
        });
        const legacyToV1 = await store.enqueue({
          job: legacyJob({ nodeId: 'node-a' }),
          now: now(),
        });
        const v1ToLegacy = await store.enqueue({ job: job({ nodeId: 'node-l' }), now: now() });

        expect(sinkOnV1).toEqual({ status: 'dialect_conflict', transitions: NONE });
        expect(pollOnLegacy).toEqual({ status: 'dialect_conflict', transitions: NONE });
        expect(claimV1AsLegacy).toEqual({ status: 'dialect_conflict', transitions: NONE });
        expect(legacyToV1.status).toBe('node_not_found');
        expect(v1ToLegacy.status).toBe('node_not_found');
      });

      it('should turn a /sink node that registers through API v1 into a v1 node at the end of the registry', async () => {
        await upsert(store, 'node-l', 'legacy');
        await upsert(store, 'node-b', 'v1');
        await enqueueOk(store, legacyJob({ nodeId: 'node-l' }));

        const result = await upsert(store, 'node-l', 'v1');
        const nodes = await store.listNodes(now());

        expect(result).toEqual({
          status: 'created',
          credentialIssued: true,
          transitions: { outcomes: { cancelled: 1 }, evictions: {} },
        });
        expect(nodes.map((n) => [n.nodeId, n.dialect, n.queueDepth])).toEqual([
          ['node-b', 'v1', 0],
          ['node-l', 'v1', 0],
        ]);
      });

      it('should refuse new nodes at the cap while renewals still succeed', async () => {
        const s = await open({ maxNodes: 2 });
        await upsert(s, 'n1', 'v1');
        await upsert(s, 'n2', 'legacy');

        const third = await upsert(s, 'n3', 'v1');
        const renewal = await upsert(s, 'n1', 'v1');
        const legacyRenewal = await upsert(s, 'n2', 'legacy');
        await s.unregisterNode({ nodeId: 'n2', credentialDigest: null, now: now() });
        const afterRemoval = await upsert(s, 'n3', 'v1');

        expect(third).toEqual({ status: 'nodes_full', transitions: NONE });
        expect(renewal.status).toBe('renewed');
        expect(legacyRenewal.status).toBe('renewed');
        expect(afterRemoval.status).toBe('created');
      });

      it('should evict a node silent past its lease and grace that comes back, and register it afresh', async () => {
        await upsert(store, 'node-l', 'legacy');
        await enqueueOk(store, legacyJob({ nodeId: 'node-l' }));
        clock.advance(limits.legacyLeaseMs + limits.lapseGraceMs + 1);

        const result = await upsert(store, 'node-l', 'legacy');

        expect(result).toEqual({
          status: 'created',
          credentialIssued: false,
          transitions: { outcomes: { cancelled: 1 }, evictions: { stale_lease: 1 } },
        });
        expect((await store.listNodes(now()))[0]?.queueDepth).toBe(0);
      });

      it('should list only nodes within lease and grace, in registration order, with queue and in-flight counts', async () => {
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-l', 'legacy');
        await upsert(store, 'node-b', 'v1', { capabilities: CAPS_64K });
        await enqueueOk(store, job({ nodeId: 'node-b' }));
        await enqueueOk(store, job({ nodeId: 'node-b', clientKey: 'client-2' }));
        await claimOne(store, 'node-b');
        const silence = limits.legacyLeaseMs + limits.lapseGraceMs + 1;
        clock.advance(silence);

        const nodes = await store.listNodes(now());

        expect(nodes).toEqual([
          {
            nodeId: 'node-a',
            dialect: 'v1',
            lastPingAt: now() - silence,
            leaseMs: limits.v1LeaseMs,
            queueDepth: 0,
            inFlightCount: 0,
            fallback: false,
            keyUnusable: false,
            capabilities: CAPS,
          },
          {
            nodeId: 'node-b',
            dialect: 'v1',
            lastPingAt: now() - silence,
            leaseMs: limits.v1LeaseMs,
            queueDepth: 1,
            inFlightCount: 1,
            fallback: false,
            keyUnusable: false,
            capabilities: CAPS_64K,
          },
        ]);
      });

      it('should not count a long-polling node or a node with active work as stale', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + limits.v1LeaseMs + 5000 });
        await upsert(store, 'node-b', 'v1');
        await enqueueOk(store, job({ nodeId: 'node-b' }));
        await claimOne(store, 'node-b');
        clock.advance(limits.v1LeaseMs + 1);

        const live = (await store.listNodes(now())).map((n) => n.nodeId);
        clock.advance(5000);
        const later = (await store.listNodes(now())).map((n) => n.nodeId);

        expect(live).toEqual(['node-a', 'node-b']);
        expect(later).toEqual(['node-b']);
      });

      it('should unregister only with the owner credential (or by force) and report what it did', async () => {
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-b', 'v1');
        await upsert(store, 'node-l', 'legacy');
        const base = { credentialDigest: null, now: now() };

        const absent = await store.unregisterNode({ ...base, nodeId: 'ghost' });
        const noCredential = await store.unregisterNode({ ...base, nodeId: 'node-a' });
        const wrong = await store.unregisterNode({
          ...base,
          nodeId: 'node-a',
          credentialDigest: 'x',
        });
        const right = await store.unregisterNode({
          ...base,
          nodeId: 'node-a',
          credentialDigest: digestOf('node-a'),
        });
        const again = await store.unregisterNode({
          ...base,
          nodeId: 'node-a',
          credentialDigest: digestOf('node-a'),
        });
        const legacy = await store.unregisterNode({ ...base, nodeId: 'node-l' });
        const forced = await store.unregisterNode({ ...base, nodeId: 'node-b', force: true });

        expect(absent).toEqual({ status: 'absent', transitions: NONE });
        expect(noCredential).toEqual({ status: 'forbidden', transitions: NONE });
        expect(wrong).toEqual({ status: 'forbidden', transitions: NONE });
        expect(right).toEqual({
          status: 'removed',
          transitions: { outcomes: {}, evictions: { unregistered: 1 } },
        });
        expect(again.status).toBe('absent');
        expect(legacy.status).toBe('removed');
        expect(forced.status).toBe('removed');
        expect(await store.listNodes(now())).toEqual([]);
      });

      it('should cancel queued work and tombstone in-flight work of an unregistered node', async () => {
        await upsert(store, 'node-a', 'v1');
        const inFlight = job();
        const queued = job({ clientKey: 'client-2' });
        await enqueueOk(store, inFlight);
        await enqueueOk(store, queued);
        await claimOne(store);

        const result = await store.unregisterNode({
          nodeId: 'node-a',
          credentialDigest: digestOf('node-a'),
          now: now(),
        });
        const queuedFate = await take(store, queued);
        const inFlightFate = await take(store, inFlight);
        const nodeView = await control(store, 'node-a', inFlight.requestId as string);
        const late = await complete(store, inFlight);

        expect(counts(result.transitions)).toEqual({
          outcomes: { cancelled: 2 },
          evictions: { unregistered: 1 },
        });
        expect(queuedFate).toMatchObject({
          status: 'terminal',
          terminal: 'cancelled',
          reason: 'server_unregistered',
        });
        expect(inFlightFate).toMatchObject({
          status: 'terminal',
          terminal: 'cancelled',
          reason: 'server_unregistered',
        });
        expect(nodeView).toMatchObject({ status: 'ok', state: 'cancelled' });
        expect(late).toMatchObject({ status: 'gone', code: 'cancelled' });
      });

      it('should pick only live legacy nodes for /next_server', async () => {
        const none = await store.pickLegacyNode(now());
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'old', 'legacy');
        clock.advance(limits.legacyLeaseMs + 1);
        await upsert(store, 'l1', 'legacy');
        await upsert(store, 'l2', 'legacy');

        const picks = new Set<string | null>();
        for (let i = 0; i < 40; i += 1) {
          picks.add(await store.pickLegacyNode(now()));
        }

        expect(none).toBeNull();
        expect([...picks].sort()).toEqual(['l1', 'l2']);
      });
    });

    describe('lapsed nodes (silent past their lease, within the grace)', () => {
      const lapse = (lease: number) => clock.advance(lease + limits.lapseGraceMs - 1);

      it("should keep a lapsed API v1 node's queued work and hand it over when it registers again", async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);
        lapse(limits.v1LeaseMs);

        const swept = await store.sweep(now());
        const back = await upsert(store, 'node-a', 'v1');
        const claimed = await claimOne(store);

        expect(counts(swept)).toEqual(NONE);
        expect(back).toEqual({ status: 'renewed', credentialIssued: false, transitions: NONE });
        expect(claimed?.requestId).toBe(input.requestId);
      });

      it('should renew a lapsed node on its next poll instead of answering not_found', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);
        lapse(limits.v1LeaseMs);

        const poll = await upsert(store, 'node-a', 'v1', {
          requireExisting: true,
          pollingUntil: now() + 10_000,
        });
        const claimed = await claimOne(store);

        expect(poll.status).toBe('renewed');
        expect(claimed?.requestId).toBe(input.requestId);
      });

      it("should keep a lapsed /sink node's queued work for its next /sink", async () => {
        await upsert(store, 'node-l', 'legacy');
        const input = legacyJob({ nodeId: 'node-l' });
        await enqueueOk(store, input);
        lapse(limits.legacyLeaseMs);

        const swept = await store.sweep(now());
        const back = await upsert(store, 'node-l', 'legacy');
        const claimed = await claimOne(store, 'node-l', 'legacy');

        expect(counts(swept)).toEqual(NONE);
        expect(back.status).toBe('renewed');
        expect(claimed?.jobId).toBe(input.jobId);
      });

      it('should accept work for a lapsed node and end it cancelled/server_unregistered at the end of the grace, counted once', async () => {
        await upsert(store, 'node-a', 'v1');
        clock.advance(limits.v1LeaseMs + 1);
        const input = job();
        await enqueueOk(store, input);
        clock.advance(limits.lapseGraceMs);

        const evicted = await store.sweep(now());
        const again = await store.sweep(now());
        const fate = await take(store, input);

        expect(counts(evicted)).toEqual({
          outcomes: { cancelled: 1 },
          evictions: { stale_lease: 1 },
        });
        expect(counts(again)).toEqual(NONE);
        expect(fate).toMatchObject({
          status: 'terminal',
          terminal: 'cancelled',
          reason: 'server_unregistered',
        });
        expect(await store.listNodes(now())).toEqual([]);
      });

      it('should list a lapsed node until the end of its grace and count it registered, not healthy', async () => {
        await upsert(store, 'node-a', 'v1');
        lapse(limits.v1LeaseMs);

        const listed = (await store.listNodes(now())).map((n) => n.nodeId);
        const stats = await store.stats(now());
        clock.advance(2);
        const after = await store.listNodes(now());

        expect(listed).toEqual(['node-a']);
        expect(stats).toMatchObject({ v1NodesRegistered: 1, v1NodesHealthy: 0 });
        expect(after).toEqual([]);
      });

      it('should offer a lapsed node only when no fresh node can take the request', async () => {
        const qwenOnly = { ...CAPS, supported_model_ids: ['qwen3-8b-instruct'] };
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-b', 'v1', { capabilities: qwenOnly });
        clock.advance(limits.v1LeaseMs + 1);
        await upsert(store, 'node-b', 'v1', { capabilities: qwenOnly });
        const pick = (model: string) =>
          store.selectNode({ model, tier: '8k-fast', maxQueueDepth: 10, now: now() });

        const picks = [];
        for (let i = 0; i < 4; i += 1) {
          picks.push(await pick('qwen3-8b-instruct'));
        }
        const onlyLapsed = await pick('m2');
        clock.advance(limits.lapseGraceMs);
        const afterGrace = await pick('m2');

        expect(picks.map((p) => (p.status === 'selected' ? p.selected.nodeId : p.status))).toEqual([
          'node-b',
          'node-b',
          'node-b',
          'node-b',
        ]);
        expect(onlyLapsed).toMatchObject({ status: 'selected', selected: { nodeId: 'node-a' } });
        expect(afterGrace).toMatchObject({ status: 'no_match', eligibleCount: 0 });
      });

      it('should pick a fresh legacy node before a lapsed one, the lapsed one when alone, none once gone', async () => {
        await upsert(store, 'old', 'legacy');
        clock.advance(limits.legacyLeaseMs + 1);
        const alone = await store.pickLegacyNode(now());
        await upsert(store, 'new', 'legacy');
        const picks = new Set<string | null>();
        for (let i = 0; i < 20; i += 1) {
          picks.add(await store.pickLegacyNode(now()));
        }
        clock.advance(limits.legacyLeaseMs + limits.lapseGraceMs + 1);
        const none = await store.pickLegacyNode(now());

        expect(alone).toBe('old');
        expect([...picks]).toEqual(['new']);
        expect(none).toBeNull();
      });

      it('should count an authenticated control call as a sign of life', async () => {
        await upsert(store, 'node-a', 'v1');
        clock.advance(limits.v1LeaseMs - 1);
        await control(store, 'node-a', 'r-unknown');
        await control(store, 'node-b', 'r-unknown');
        clock.advance(limits.v1LeaseMs - 1);

        expect(await store.stats(now())).toMatchObject({ v1NodesHealthy: 1 });
        expect((await store.listNodes(now()))[0]?.lastPingAt).toBe(now() - limits.v1LeaseMs + 1);
      });

      it('should count a wrong-credential control call as nothing', async () => {
        await upsert(store, 'node-a', 'v1');
        clock.advance(limits.v1LeaseMs - 1);
        await control(store, 'node-a', 'r-unknown', false, 'wrong');
        clock.advance(2);

        expect(await store.stats(now())).toMatchObject({ v1NodesHealthy: 0 });
      });

      it('should count the answer to a claim as a sign of life of the node that claimed it', async () => {
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-l', 'legacy');
        const v1 = job();
        const legacy = legacyJob({ nodeId: 'node-l' });
        await enqueueOk(store, v1);
        await enqueueOk(store, legacy);
        await claimOne(store);
        await claimOne(store, 'node-l', 'legacy');
        clock.advance(limits.legacyLeaseMs - 1);
        const answeredAt = now();
        await complete(store, v1);
        await complete(store, legacy);
        clock.advance(limits.legacyLeaseMs - 1);

        const nodes = await store.listNodes(now());

        expect(nodes.map((n) => [n.nodeId, n.lastPingAt])).toEqual([
          ['node-a', answeredAt],
          ['node-l', answeredAt],
        ]);
        expect(await store.stats(now())).toMatchObject({ v1NodesHealthy: 1 });
      });

      it('should evict a gone node inline when it calls control instead of renewing it', async () => {
        await upsert(store, 'node-a', 'v1');
        clock.advance(limits.v1LeaseMs + limits.lapseGraceMs + 1);

        const result = await control(store, 'node-a', 'r-unknown');

        expect(result).toEqual({
          status: 'forbidden',
          transitions: { outcomes: {}, evictions: { stale_lease: 1 } },
        });
        expect(await store.listNodes(now())).toEqual([]);
      });

      it('should redeliver a claim a lapsed node never confirmed once it comes back', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);
        clock.advance(limits.inFlightTtlMs + 1);
        await store.sweep(now());
        clock.advance(limits.v1LeaseMs + limits.lapseGraceMs - limits.inFlightTtlMs - 2);
        const swept = await store.sweep(now());

        await upsert(store, 'node-a', 'v1');
        const again = await claimOne(store);

        expect(counts(swept)).toEqual(NONE);
        expect(again?.requestId).toBe(input.requestId);
      });
    });

    describe('fallback nodes (the demo node)', () => {
      const pick = async (model = 'qwen3-8b-instruct', maxQueueDepth = 10): Promise<string> => {
        const r = await store.selectNode({ model, tier: '8k-fast', maxQueueDepth, now: now() });
        return r.status === 'selected' ? r.selected.nodeId : r.status;
      };
      const flags = async (): Promise<Record<string, boolean>> =>
        Object.fromEntries((await store.listNodes(now())).map((n) => [n.nodeId, n.fallback]));

      it('should offer a fallback node when it is the only node, and never while another fresh node can take the work', async () => {
        await upsert(store, 'demo', 'v1', { fallback: true });
        const alone = await pick();
        await upsert(store, 'real', 'v1');
        await store.enqueue({ job: job({ nodeId: 'real' }), now: now() });
        await store.enqueue({ job: job({ nodeId: 'real' }), now: now() });

        const picks = [await pick(), await pick(), await pick()];

        expect(alone).toBe('demo');
        // The real node is busier (two queued) and still chosen every time.
        expect(picks).toEqual(['real', 'real', 'real']);
      });

      it('should offer the fallback node when no other node serves the model or has room', async () => {
        await upsert(store, 'real', 'v1', {
          capabilities: { ...CAPS, supported_model_ids: ['qwen3-8b-instruct'] },
        });
        await upsert(store, 'demo', 'v1', { fallback: true });
        await store.enqueue({ job: job({ nodeId: 'real' }), now: now() });

        const otherModel = await pick('m2');
        const full = await pick('qwen3-8b-instruct', 1);
        const room = await pick('qwen3-8b-instruct', 2);

        expect([otherModel, full, room]).toEqual(['demo', 'demo', 'real']);
      });

      it('should keep the flag across renewals that do not name it, clear it when told, and never set it on a legacy node', async () => {
        await upsert(store, 'demo', 'v1', { fallback: true });
        await upsert(store, 'real', 'v1', { fallback: false });
        await upsert(store, 'sink', 'legacy', { fallback: true });
        const registered = await flags();
        await upsert(store, 'demo', 'v1', { requireExisting: true, pollingUntil: now() + 1000 });
        const renewed = await flags();
        await upsert(store, 'demo', 'v1', { requireExisting: true, fallback: false });
        const cleared = await flags();

        expect(registered).toEqual({ demo: true, real: false, sink: false });
        expect(renewed).toEqual({ demo: true, real: false, sink: false });
        expect(cleared).toEqual({ demo: false, real: false, sink: false });
      });

      it('should prefer neither a lapsed node nor the fallback node over the other: both are second tier', async () => {
        await upsert(store, 'late', 'v1');
        clock.advance(limits.v1LeaseMs + 1);
        await upsert(store, 'demo', 'v1', { fallback: true });
        await store.enqueue({ job: job({ nodeId: 'demo' }), now: now() });

        // Both second tier: the least loaded wins (the demo node has one queued).
        expect(await pick()).toBe('late');
      });
    });

    describe('node ownership and the per-address share', () => {
      const A = { owner: 'owner-a', group: 'group-a' };
      const A2 = { owner: 'owner-a2', group: 'group-a' };
      const B = { owner: 'owner-b', group: 'group-b' };
      const capsOf = async (nodeId: string) =>
        (await store.listNodes(now())).find((n) => n.nodeId === nodeId)?.capabilities;

      it('should renew a live node without a credential only from the address it is bound to', async () => {
        await upsert(store, 'node-a', 'v1', { origin: A });
        await upsert(store, 'node-l', 'legacy', { origin: A });

        const hijack = await upsert(store, 'node-a', 'v1', { origin: B, capabilities: CAPS_64K });
        const poll = await upsert(store, 'node-a', 'v1', { origin: B, requireExisting: true });
        const sink = await upsert(store, 'node-l', 'legacy', { origin: B });
        const owner = await upsert(store, 'node-a', 'v1', { origin: A, requireExisting: true });
        const legacyOwner = await upsert(store, 'node-l', 'legacy', { origin: A });

        expect(hijack).toEqual({ status: 'forbidden', transitions: NONE });
        expect(poll).toEqual({ status: 'forbidden', transitions: NONE });
        expect(sink).toEqual({ status: 'forbidden', transitions: NONE });
        expect(owner.status).toBe('renewed');
        expect(legacyOwner.status).toBe('renewed');
        expect(await capsOf('node-a')).toEqual(CAPS);
      });

      it('should renew a live node from anywhere with its credential, bind it there, and refuse a wrong one', async () => {
        await upsert(store, 'node-a', 'v1', { origin: A });

        const wrong = await upsert(store, 'node-a', 'v1', { origin: A, presentedDigest: 'nope' });
        const moved = await upsert(store, 'node-a', 'v1', {
          origin: B,
          presentedDigest: digestOf('node-a'),
          requireExisting: true,
        });
        const thereAfter = await upsert(store, 'node-a', 'v1', { origin: B });
        const oldAddress = await upsert(store, 'node-a', 'v1', { origin: A });

        expect(wrong).toEqual({ status: 'forbidden', transitions: NONE });
        expect(moved).toMatchObject({ status: 'renewed', credentialIssued: false });
        expect(thereAfter.status).toBe('renewed');
        expect(oldAddress).toEqual({ status: 'forbidden', transitions: NONE });
      });

      it('should bind an unbound node to its next caller, and check nothing for a caller of unknown origin', async () => {
        await upsert(store, 'node-a', 'v1');
        const bound = await upsert(store, 'node-a', 'v1', { origin: A });
        const other = await upsert(store, 'node-a', 'v1', { origin: B });
        const unknown = await upsert(store, 'node-a', 'v1');

        expect(bound.status).toBe('renewed');
        expect(other.status).toBe('forbidden');
        expect(unknown.status).toBe('renewed');
      });

      it('should free the key of a node silent past its lease and grace for anyone, with a new credential', async () => {
        await upsert(store, 'node-a', 'v1', { origin: A });
        clock.advance(limits.v1LeaseMs + limits.lapseGraceMs + 1);

        const result = await upsert(store, 'node-a', 'v1', {
          origin: B,
          newCredentialDigest: 'fresh',
        });

        expect(result).toMatchObject({ status: 'created', credentialIssued: true });
        expect(await control(store, 'node-a', 'r', false, 'fresh')).toMatchObject({ status: 'ok' });
      });

      it('should keep the binding when a /sink node turns into an API v1 node', async () => {
        await upsert(store, 'node-l', 'legacy', { origin: A });

        const converted = await upsert(store, 'node-l', 'v1', { origin: A });
        const stranger = await upsert(store, 'node-l', 'v1', { origin: B });

        expect(converted.status).toBe('created');
        expect(stranger.status).toBe('forbidden');
      });

      it('should admit at most the share of new keys per origin group, both dialects, and renewals always', async () => {
        const share = { maxPerGroup: 2 };
        const first = await upsert(store, 'n1', 'v1', { origin: A, ...share });
        const second = await upsert(store, 'n2', 'legacy', { origin: A2, ...share });
        const third = await upsert(store, 'n3', 'v1', { origin: A, ...share });
        const thirdLegacy = await upsert(store, 'n4', 'legacy', { origin: A, ...share });
        const elsewhere = await upsert(store, 'n5', 'v1', { origin: B, ...share });
        const renewal = await upsert(store, 'n1', 'v1', { origin: A, ...share });
        const unlimited = await upsert(store, 'n6', 'v1', { origin: A });

        expect([first.status, second.status]).toEqual(['created', 'created']);
        expect(third).toEqual({ status: 'group_full', transitions: NONE });
        expect(thirdLegacy).toEqual({ status: 'group_full', transitions: NONE });
        expect(elsewhere.status).toBe('created');
        expect(renewal.status).toBe('renewed');
        expect(unlimited.status).toBe('created');
      });

      it('should give the share back when a node is unregistered or evicted', async () => {
        const share = { maxPerGroup: 1 };
        await upsert(store, 'n1', 'v1', { origin: A, ...share });
        await upsert(store, 'l1', 'legacy', { origin: B, ...share });
        const fullA = await upsert(store, 'n2', 'v1', { origin: A, ...share });
        await store.unregisterNode({
          nodeId: 'n1',
          credentialDigest: digestOf('n1'),
          now: now(),
        });
        const afterUnregister = await upsert(store, 'n2', 'v1', { origin: A, ...share });
        clock.advance(limits.legacyLeaseMs + limits.lapseGraceMs + 1);
        await store.sweep(now());
        const afterEviction = await upsert(store, 'l2', 'legacy', { origin: B, ...share });

        expect(fullA.status).toBe('group_full');
        expect(afterUnregister.status).toBe('created');
        expect(afterEviction.status).toBe('created');
      });

      it('should make room in a full registry: the group holding the most gives up its newest node for a group holding fewer', async () => {
        const s = await open({ maxNodes: 4 });
        const at = (group: string) => ({ origin: { owner: `o-${group}`, group }, maxPerGroup: 3 });
        const reg = (nodeId: string, group: string, extra: Partial<UpsertNodeCommand> = {}) =>
          s.upsertNode({ nodeId, dialect: 'v1', ...at(group), ...extra, now: now() });
        for (const id of ['a1', 'a2', 'a3']) {
          await reg(id, 'A');
        }
        await reg('b1', 'B');
        await s.enqueue({ job: job({ nodeId: 'a3' }), now: now() });

        const c1 = await reg('c1', 'C');
        const d1 = await reg('d1', 'D');
        const e1 = await reg('e1', 'E');
        const backAtA = await reg('a3', 'A');
        const tokenHolder = await s.upsertNode({ nodeId: 'f1', dialect: 'v1', now: now() });
        const live = (await s.listNodes(now())).map((n) => n.nodeId);

        expect(c1).toEqual({
          status: 'created',
          credentialIssued: false,
          transitions: { outcomes: { cancelled: 1 }, evictions: { capacity_loss: 1 } },
        });
        expect(d1.status).toBe('created');
        expect(e1).toEqual({ status: 'nodes_full', transitions: NONE });
        expect(backAtA.status).toBe('nodes_full');
        expect(tokenHolder.status).toBe('nodes_full');
        expect(live).toEqual(['a1', 'b1', 'c1', 'd1']);
      });

      it('should check the share before the registry cap', async () => {
        const s = await open({ maxNodes: 1 });
        await s.upsertNode({ nodeId: 'n1', dialect: 'v1', origin: A, maxPerGroup: 1, now: now() });

        const sameGroup = await s.upsertNode({
          nodeId: 'n2',
          dialect: 'v1',
          origin: A,
          maxPerGroup: 1,
          now: now(),
        });
        const otherGroup = await s.upsertNode({
          nodeId: 'n3',
          dialect: 'v1',
          origin: B,
          maxPerGroup: 1,
          now: now(),
        });

        expect(sameGroup.status).toBe('group_full');
        expect(otherGroup.status).toBe('nodes_full');
      });
    });

    describe('unusable keys', () => {
      const pick = async (): Promise<string> => {
        const r = await store.selectNode({
          model: 'qwen3-8b-instruct',
          tier: '8k-fast',
          maxQueueDepth: 10,
          now: now(),
        });
        return r.status === 'selected' ? r.selected.nodeId : r.status;
      };

      it('should never offer a node whose key is marked unusable, not even before the fallback node', async () => {
        await upsert(store, 'demo', 'v1', { fallback: true });
        await upsert(store, 'junk', 'v1');
        const before = await pick();

        const marked = await store.markKeyUnusable('junk', now());
        const unknown = await store.markKeyUnusable('ghost', now());
        const after = [await pick(), await pick()];
        await upsert(store, 'junk', 'v1');
        const listed = (await store.listNodes(now())).map((n) => [n.nodeId, n.keyUnusable]);

        expect(before).toBe('junk');
        expect([marked, unknown]).toEqual([true, false]);
        expect(after).toEqual(['demo', 'demo']);
        expect(listed).toEqual([
          ['demo', false],
          ['junk', true],
        ]);
      });

      it('should report no_nodes when every API v1 node left has an unusable key', async () => {
        await upsert(store, 'junk', 'v1');
        await store.markKeyUnusable('junk', now());

        expect(await pick()).toBe('no_nodes');
      });
    });

    describe('summarizeNodes', () => {
      it('should count the live nodes by kind and list the first ones, fallback nodes apart', async () => {
        const s = await open({ maxNodes: 10 });
        await upsert(s, 'gone', 'v1');
        clock.advance(limits.v1LeaseMs + limits.lapseGraceMs + 1);
        await upsert(s, 'demo', 'v1', { fallback: true });
        await upsert(s, 'v1a', 'v1');
        await upsert(s, 'sink', 'legacy');
        await upsert(s, 'v1b', 'v1');
        await upsert(s, 'junk', 'v1');
        await s.markKeyUnusable('junk', now());

        const summary = await s.summarizeNodes({ limit: 2, now: now() });
        const everything = await s.summarizeNodes({ limit: 10, now: now() });
        const listed = await s.listNodes(now());

        expect(summary).toMatchObject({ legacy: 1, v1: 3, fallback: 1, unusable: 1 });
        expect(summary.listed.map((n) => n.nodeId)).toEqual(['v1a', 'sink']);
        expect(summary.fallbackListed.map((n) => n.nodeId)).toEqual(['demo']);
        expect(everything.listed).toEqual(listed.filter((n) => !n.fallback));
        expect(everything.fallbackListed).toEqual(listed.filter((n) => n.fallback));
      });

      it('should summarize an empty registry', async () => {
        expect(await store.summarizeNodes({ limit: 5, now: now() })).toEqual({
          legacy: 0,
          v1: 0,
          fallback: 0,
          unusable: 0,
          listed: [],
          fallbackListed: [],
        });
      });
    });

    describe('selectNode', () => {
      const select = (
        s: StateStore,
        model = 'qwen3-8b-instruct',
        tier: '8k-fast' | '64k-full' = '8k-fast',
        maxQueueDepth = 10,
      ) => s.selectNode({ model, tier, maxQueueDepth, now: now() });

      it('should report no_nodes when no live API v1 node exists', async () => {
        await upsert(store, 'node-l', 'legacy');
        await upsert(store, 'gone', 'v1');
        clock.advance(limits.v1LeaseMs + limits.lapseGraceMs + 1);
        await upsert(store, 'node-l', 'legacy');

        expect(await select(store)).toEqual({ status: 'no_nodes' });
      });

      it('should report no_match for an unknown model, a too-small tier or a node without capabilities', async () => {
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'bare', 'v1', { capabilities: null });

        const model = await select(store, 'unknown-model');
        const tier = await select(store, 'qwen3-8b-instruct', '64k-full');

        const noMatch = {
          status: 'no_match',
          eligibleTierCounts: {},
          eligibleCount: 0,
          capacityLimitedCount: 0,
          capacityLimitedTierCounts: {},
        };
        expect(model).toEqual(noMatch);
        expect(tier).toEqual(noMatch);
      });

      it('should pick the smallest capable tier and spill over to a larger one', async () => {
        await upsert(store, 'big', 'v1', { capabilities: CAPS_64K });
        await upsert(store, 'small', 'v1');

        const small = await select(store);
        const big = await select(store, 'qwen3-8b-instruct', '64k-full');
        await store.unregisterNode({
          nodeId: 'small',
          credentialDigest: digestOf('small'),
          now: now(),
        });
        const spill = await select(store);

        expect(small).toEqual({
          status: 'selected',
          selected: {
            nodeId: 'small',
            tier: '8k-fast',
            modelSupport: CAPS.supported_model_ids,
            queueDepth: 0,
            inFlightCount: 0,
            loadScore: 0,
          },
          eligibleTierCounts: { '8k-fast': 1, '64k-full': 1 },
          eligibleCount: 2,
        });
        expect(big).toMatchObject({
          status: 'selected',
          selected: { nodeId: 'big' },
          eligibleCount: 1,
        });
        expect(spill).toMatchObject({
          status: 'selected',
          selected: { nodeId: 'big', tier: '64k-full' },
        });
      });

      it('should skip nodes at capacity and report no_capacity when all are', async () => {
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-b', 'v1');
        await enqueueOk(store, job({ nodeId: 'node-a' }));
        await claimOne(store, 'node-a');
        await enqueueOk(store, job({ nodeId: 'node-b', clientKey: 'c2' }));
        await enqueueOk(store, job({ nodeId: 'node-b', clientKey: 'c3' }));

        const result = await select(store, 'qwen3-8b-instruct', '8k-fast', 2);

        expect(result).toEqual({
          status: 'no_capacity',
          eligibleTierCounts: { '8k-fast': 2 },
          eligibleCount: 2,
          capacityLimitedCount: 2,
          capacityLimitedTierCounts: { '8k-fast': 2 },
        });
        expect(await select(store, 'qwen3-8b-instruct', '8k-fast', 3)).toMatchObject({
          status: 'selected',
          selected: { nodeId: 'node-b', queueDepth: 2, inFlightCount: 0, loadScore: 2 },
        });
      });

      it('should prefer the least loaded node and alternate between equally loaded ones', async () => {
        const caps = { ...CAPS, max_concurrency: 4 };
        await upsert(store, 'node-a', 'v1', { capabilities: caps });
        await upsert(store, 'node-b', 'v1', { capabilities: caps });
        await upsert(store, 'node-c', 'v1', { capabilities: caps });
        await enqueueOk(store, job({ nodeId: 'node-c' }));

        const picks: string[] = [];
        for (let i = 0; i < 4; i += 1) {
          const r = await select(store);
          picks.push(r.status === 'selected' ? r.selected.nodeId : r.status);
        }
        const loaded = await select(store, 'm2');

        expect(picks).toEqual(['node-a', 'node-b', 'node-a', 'node-b']);
        expect(loaded).toMatchObject({ status: 'selected', eligibleCount: 3 });
        expect(loaded.status === 'selected' && loaded.selected.nodeId).not.toBe('node-c');
      });

      it('should never offer an excluded node, falling back to the lapsed and fallback tiers', async () => {
        await upsert(store, 'demo', 'v1', { fallback: true });
        await upsert(store, 'late', 'v1');
        clock.advance(limits.v1LeaseMs + 1);
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-b', 'v1');
        const pick = async (exclude: string[]): Promise<string> => {
          const r = await store.selectNode({
            model: 'qwen3-8b-instruct',
            tier: '8k-fast',
            maxQueueDepth: 10,
            exclude,
            now: now(),
          });
          return r.status === 'selected' ? r.selected.nodeId : r.status;
        };

        const picks = [
          await pick(['node-a']),
          await pick(['node-a']),
          await pick(['node-a', 'node-b']),
          await pick(['node-a', 'node-b']),
          await pick(['node-a', 'node-b', 'late', 'demo']),
        ];

        expect(picks.slice(0, 2)).toEqual(['node-b', 'node-b']);
        // The second tier (a lapsed node and the demo node) only once every fresh one is excluded.
        expect(picks.slice(2, 4).sort()).toEqual(['demo', 'late']);
        expect(picks[4]).toBe('no_nodes');
      });

      it('should queue at the least loaded busy node with atCapacity least_loaded, fresh before fallback', async () => {
        await upsert(store, 'demo', 'v1', { fallback: true });
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-b', 'v1');
        await enqueueOk(store, job({ nodeId: 'node-a' }));
        await claimOne(store, 'node-a');
        await enqueueOk(store, job({ nodeId: 'node-a', clientKey: 'c2' }));
        await enqueueOk(store, job({ nodeId: 'node-b', clientKey: 'c3' }));
        await claimOne(store, 'node-b');
        await enqueueOk(store, job({ nodeId: 'demo', clientKey: 'c4' }));
        await claimOne(store, 'demo');
        const busy = (atCapacity?: 'refuse' | 'least_loaded', maxQueueDepth = 10) =>
          store.selectNode({
            model: 'qwen3-8b-instruct',
            tier: '8k-fast',
            maxQueueDepth,
            atCapacity,
            now: now(),
          });

        const refused = await busy();
        const refusedToo = await busy('refuse');
        const queued = await busy('least_loaded');
        const queueFull = await busy('least_loaded', 1);
        await enqueueOk(store, job({ nodeId: 'node-b', clientKey: 'c5' }));
        const fallbackLast = await busy('least_loaded', 1);

        expect(refused).toMatchObject({ status: 'no_capacity', capacityLimitedCount: 3 });
        expect(refusedToo).toEqual(refused);
        expect(queued).toMatchObject({
          status: 'selected',
          selected: { nodeId: 'node-b', queueDepth: 0, inFlightCount: 1, loadScore: 1 },
        });
        expect(queueFull).toMatchObject({ status: 'selected', selected: { nodeId: 'node-b' } });
        expect(fallbackLast).toMatchObject({ status: 'selected', selected: { nodeId: 'demo' } });
      });

      it('should report the load score of the selected node', async () => {
        await upsert(store, 'node-a', 'v1', { capabilities: { ...CAPS, max_concurrency: 3 } });
        await enqueueOk(store, job());

        expect(await select(store)).toMatchObject({
          status: 'selected',
          selected: { nodeId: 'node-a', queueDepth: 1, loadScore: 0.333333 },
        });
      });
    });

    describe('enqueue', () => {
      it('should refuse an unknown, wrong-dialect or gone node', async () => {
        await upsert(store, 'node-l', 'legacy');
        const unknown = await store.enqueue({ job: job({ nodeId: 'ghost' }), now: now() });
        clock.advance(limits.legacyLeaseMs + limits.lapseGraceMs + 1);
        const stale = await store.enqueue({ job: legacyJob({ nodeId: 'node-l' }), now: now() });

        expect(unknown).toEqual({ status: 'node_not_found', transitions: NONE });
        expect(stale).toEqual({ status: 'node_not_found', transitions: NONE });
      });

      it('should fix the deadline at admission for each dialect', async () => {
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-l', 'legacy');

        const v1 = await store.enqueue({ job: job(), now: now() });
        const legacy = await store.enqueue({ job: legacyJob({ nodeId: 'node-l' }), now: now() });

        expect(v1).toEqual({
          status: 'queued',
          deadlineAt: now() + limits.v1DeadlineMs,
          transitions: NONE,
        });
        expect(legacy).toEqual({
          status: 'queued',
          deadlineAt: now() + limits.legacyRequestTtlMs,
          transitions: NONE,
        });
      });

      it('should refuse past the per-node queue cap', async () => {
        await upsert(store, 'node-a', 'v1');
        for (let i = 0; i < limits.maxQueuePerNode; i += 1) {
          await enqueueOk(store, job({ clientKey: `c${i}` }));
        }

        const result = await store.enqueue({ job: job({ clientKey: 'cx' }), now: now() });

        expect(result).toEqual({ status: 'node_queue_full', transitions: NONE });
      });

      it('should refuse past the total queued count and the total queued bytes', async () => {
        const s = await open({ maxQueuePerNode: 10, maxQueuedTotal: 3, maxQueuedBytes: 100 });
        await upsert(s, 'node-a', 'v1');
        await upsert(s, 'node-b', 'v1');
        await enqueueOk(s, job({ clientKey: 'c1', bytes: 40 }));
        await enqueueOk(s, job({ clientKey: 'c2', nodeId: 'node-b', bytes: 40 }));

        const tooBig = await s.enqueue({ job: job({ clientKey: 'c3', bytes: 21 }), now: now() });
        await enqueueOk(s, job({ clientKey: 'c3', bytes: 20 }));
        const tooMany = await s.enqueue({ job: job({ clientKey: 'c4', bytes: 1 }), now: now() });
        await claimOne(s, 'node-a');
        const afterClaim = await s.enqueue({
          job: job({ clientKey: 'c4', bytes: 40 }),
          now: now(),
        });

        expect(tooBig).toEqual({ status: 'queue_full', transitions: NONE });
        expect(tooMany).toEqual({ status: 'queue_full', transitions: NONE });
        expect(afterClaim.status).toBe('queued');
        expect((await s.stats(now())).queuedBytes).toBe(100);
      });

      it('should cap live requests per client (queued, in flight and answered) and free a slot on retrieval', async () => {
        const s = await open({ maxPendingPerClient: 2 });
        await upsert(s, 'node-a', 'v1');
        const first = job();
        await enqueueOk(s, first);
        await claimOne(s);
        await complete(s, first);
        await enqueueOk(s, job());

        const refused = await s.enqueue({ job: job(), now: now() });
        const otherClient = await s.enqueue({ job: job({ clientKey: 'client-2' }), now: now() });
        await retrieve(s, first);
        const afterRetrieval = await s.enqueue({ job: job(), now: now() });

        expect(refused).toEqual({ status: 'client_pending_full', transitions: NONE });
        expect(otherClient.status).toBe('queued');
        expect(afterRetrieval.status).toBe('queued');
      });

      it('should supersede a live (client, request_id) sent with its cancel token: the old job ends, the new one queues', async () => {
        const s = await open({ maxPendingPerClient: 1 });
        await upsert(s, 'node-a', 'v1');
        const original = job({ requestId: 'same', cancelToken: 'tk', envelope: envelope('old') });
        const replacement = job({
          requestId: 'same',
          cancelToken: 'tk',
          envelope: envelope('new'),
        });
        await enqueueOk(s, original);

        const result = await s.enqueue({ job: replacement, now: now() });
        const claimed = await claimOne(s);
        const next = await claimOne(s);

        expect(result.status).toBe('queued');
        expect(counts(result.transitions)).toEqual({ outcomes: { cancelled: 1 }, evictions: {} });
        expect(claimed?.jobId).toBe(replacement.jobId);
        expect(claimed?.envelope).toEqual(envelope('new'));
        expect(next).toBeUndefined();
        expect(await take(s, replacement)).toMatchObject({ status: 'pending' });
      });

      it('should refuse to replace a live (client, request_id) without its cancel token, on any node', async () => {
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-b', 'v1');
        const original = job({ requestId: 'same', cancelToken: 'tk' });
        await enqueueOk(store, original);
        const answered = job({ requestId: 'done', cancelToken: 'tk2', clientKey: 'client-2' });
        await enqueueOk(store, answered);
        await claimOne(store);
        await claimOne(store);
        await complete(store, answered);

        const refused = [
          await store.enqueue({
            job: job({ requestId: 'same', cancelToken: 'other', nodeId: 'node-b' }),
            now: now(),
          }),
          await store.enqueue({
            job: job({ requestId: 'same', cancelToken: null, nodeId: 'node-b' }),
            now: now(),
          }),
          await store.enqueue({
            job: job({ requestId: 'done', cancelToken: 'x', clientKey: 'client-2' }),
            now: now(),
          }),
        ];
        const untouched = await control(store, 'node-a', 'same');

        for (const result of refused) {
          expect(result).toEqual({ status: 'request_in_use', transitions: NONE });
        }
        expect(untouched).toMatchObject({ status: 'ok', state: 'active' });
        expect(await take(store, answered)).toMatchObject({ status: 'ok' });
      });

      it('should refuse to replace a live request that was admitted without a cancel token', async () => {
        await upsert(store, 'node-a', 'v1');
        await enqueueOk(store, job({ requestId: 'same', cancelToken: null }));

        const again = await store.enqueue({
          job: job({ requestId: 'same', cancelToken: null }),
          now: now(),
        });

        expect(again.status).toBe('request_in_use');
      });

      it('should leave a tombstone for the node when it supersedes in-flight work', async () => {
        await upsert(store, 'node-a', 'v1');
        const original = job({ requestId: 'same', cancelToken: 'tk' });
        await enqueueOk(store, original);
        await claimOne(store);

        await enqueueOk(store, job({ requestId: 'same', cancelToken: 'tk' }));
        const view = await control(store, 'node-a', 'same');

        expect(view).toMatchObject({ status: 'ok', state: 'cancelled' });
        expect(await take(store, original)).toMatchObject({ status: 'pending' });
      });

      it('should not count a second outcome when it supersedes an answered request', async () => {
        await upsert(store, 'node-a', 'v1');
        const original = job({ requestId: 'same', cancelToken: 'tk' });
        await enqueueOk(store, original);
        await claimOne(store);
        await complete(store, original, 'first-answer');

        const result = await store.enqueue({
          job: job({ requestId: 'same', cancelToken: 'tk' }),
          now: now(),
        });

        expect(result.status).toBe('queued');
        expect(counts(result.transitions)).toEqual(NONE);
        expect(await take(store, original)).toMatchObject({ status: 'pending' });
      });

      it('should clear the terminal record of a request that is submitted again', async () => {
        await upsert(store, 'node-a', 'v1');
        const first = job({ requestId: 'again' });
        await enqueueOk(store, first);
        await store.cancel({
          clientKey: 'client-1',
          requestId: 'again',
          cancelToken: first.cancelToken as string,
          status: 'cancelled',
          reason: 'requester_cancelled',
          now: now(),
        });

        await enqueueOk(store, job({ requestId: 'again' }));

        expect(await take(store, first)).toMatchObject({ status: 'pending' });
      });

      it('should hand work out in FIFO order', async () => {
        const s = await open({ maxQueuedTotal: 10 });
        await upsert(s, 'node-a', 'v1');
        await upsert(s, 'node-l', 'legacy');
        const v1 = [job({ clientKey: 'c1' }), job({ clientKey: 'c2' }), job({ clientKey: 'c3' })];
        const legacy = [1, 2, 3].map((i) => legacyJob({ nodeId: 'node-l', clientKey: `l${i}` }));
        for (let i = 0; i < 3; i += 1) {
          await enqueueOk(s, v1[i] as JobInput);
          await enqueueOk(s, legacy[i] as JobInput);
          clock.advance(1);
        }

        const v1Order = [await claimOne(s), await claimOne(s), await claimOne(s)];
        const batch = await s.claimNext({
          nodeId: 'node-l',
          dialect: 'legacy',
          max: 5,
          now: now(),
        });

        expect(v1Order.map((j) => j?.jobId)).toEqual(v1.map((j) => j.jobId));
        expect(batch.status === 'ok' && batch.jobs.map((j) => j.jobId)).toEqual(
          legacy.map((j) => j.jobId),
        );
      });
    });

    describe('claimNext', () => {
      it('should report an unknown node', async () => {
        const result = await store.claimNext({
          nodeId: 'ghost',
          dialect: 'v1',
          max: 1,
          now: now(),
        });

        expect(result).toEqual({ status: 'not_found', transitions: NONE });
      });

      it('should hand out the envelope byte for byte with its request id, cancel token and deadline', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        const deadlineAt = await enqueueOk(store, input);

        const result = await store.claimNext({
          nodeId: 'node-a',
          dialect: 'v1',
          max: 1,
          now: now(),
        });
        const stats = await store.stats(now());

        expect(result).toEqual({
          status: 'ok',
          jobs: [
            {
              jobId: input.jobId,
              clientKey: input.clientKey,
              requestId: input.requestId,
              cancelToken: input.cancelToken,
              stream: false,
              envelope: input.envelope,
              deadlineAt,
            },
          ],
          transitions: NONE,
        });
        expect(stats).toMatchObject({ queueDepth: 0, inFlight: 1, queuedBytes: 0 });
      });

      it('should return an empty batch when nothing is queued', async () => {
        await upsert(store, 'node-a', 'v1');

        const result = await store.claimNext({
          nodeId: 'node-a',
          dialect: 'v1',
          max: 1,
          now: now(),
        });

        expect(result).toEqual({ status: 'ok', jobs: [], transitions: NONE });
      });

      it('should hand legacy work out in batches of at most max', async () => {
        await upsert(store, 'node-l', 'legacy');
        for (let i = 0; i < 3; i += 1) {
          await enqueueOk(store, legacyJob({ nodeId: 'node-l', clientKey: `c${i}` }));
        }

        const first = await store.claimNext({
          nodeId: 'node-l',
          dialect: 'legacy',
          max: 2,
          now: now(),
        });
        const second = await store.claimNext({
          nodeId: 'node-l',
          dialect: 'legacy',
          max: 2,
          now: now(),
        });

        expect(first.status === 'ok' && first.jobs.length).toBe(2);
        expect(second.status === 'ok' && second.jobs.length).toBe(1);
        expect(second.status === 'ok' && second.jobs[0]).toMatchObject({
          clientKey: 'c2',
          requestId: null,
          cancelToken: null,
          stream: false,
        });
      });

      it('should expire work whose deadline passed in the queue and hand out the next', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.v1DeadlineMs });
        const old = job({ clientKey: 'c1' });
        await enqueueOk(store, old);
        clock.advance(limits.v1DeadlineMs - 10);
        const fresh = job({ clientKey: 'c2' });
        await enqueueOk(store, fresh);
        clock.advance(10);

        const result = await store.claimNext({
          nodeId: 'node-a',
          dialect: 'v1',
          max: 1,
          now: now(),
        });

        expect(result.status === 'ok' && result.jobs.map((j) => j.jobId)).toEqual([fresh.jobId]);
        expect(counts(result.transitions)).toEqual({ outcomes: { timed_out: 1 }, evictions: {} });
        expect(await take(store, old)).toMatchObject({
          status: 'terminal',
          terminal: 'expired',
          reason: 'provider_timeout',
        });
      });

      it('should hand over untracked API v1 work once without in-flight accounting', async () => {
        const s = await open({ maxPendingPerClient: 1 });
        await upsert(s, 'node-a', 'v1');
        await enqueueOk(s, job({ requestId: null, cancelToken: null }));
        const blocked = await s.enqueue({ job: job({ requestId: null }), now: now() });

        const claimed = await claimOne(s);
        const stats = await s.stats(now());
        const freed = await s.enqueue({ job: job({ requestId: null }), now: now() });

        expect(blocked.status).toBe('client_pending_full');
        expect(claimed).toMatchObject({ requestId: null, cancelToken: null });
        expect(stats).toMatchObject({ inFlight: 0, queueDepth: 0 });
        expect(freed.status).toBe('queued');
      });

      it('should open a stream session for a legacy streaming job', async () => {
        await upsert(store, 'node-l', 'legacy');
        const input = legacyJob({ nodeId: 'node-l', stream: true });
        await enqueueOk(store, input);

        const claimed = await claimOne(store, 'node-l', 'legacy');
        const stream = await store.takeStream('client-1', now());

        expect(claimed).toMatchObject({ jobId: input.jobId, stream: true });
        expect(stream).toEqual({ status: 'ok', sessionId: input.jobId, chunks: [], final: false });
      });
    });

    describe('control', () => {
      it('should refuse a wrong credential, and an unknown node without a tombstone', async () => {
        await upsert(store, 'node-a', 'v1');

        const wrong = await control(store, 'node-a', 'r1', false, 'not-the-digest');
        const unknown = await control(store, 'ghost', 'r1');
        const legacyNode = await upsert(store, 'node-l', 'legacy').then(() =>
          control(store, 'node-l', 'r1'),
        );

        expect(wrong).toEqual({ status: 'forbidden', transitions: NONE });
        expect(unknown).toEqual({ status: 'forbidden', transitions: NONE });
        expect(legacyNode.status).toBe('forbidden');
      });

      it('should report completed/unavailable for a request the live node does not hold', async () => {
        await upsert(store, 'node-a', 'v1');

        expect(await control(store, 'node-a', 'unknown')).toEqual({
          status: 'ok',
          state: 'completed_unavailable',
          deadlineAt: null,
          transitions: NONE,
        });
      });

      it('should renew the in-flight lease of active work, so the node stays busy', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.v1DeadlineMs });
        const input = job();
        const deadlineAt = await enqueueOk(store, input);
        await claimOne(store);
        clock.advance(limits.inFlightTtlMs - 1000);

        const active = await control(store, 'node-a', input.requestId as string);
        clock.advance(limits.inFlightTtlMs - 1000);
        await store.sweep(now());
        const renewed = (await store.listNodes(now()))[0]?.inFlightCount;
        clock.advance(2000);
        await store.sweep(now());
        const lapsed = (await store.listNodes(now()))[0]?.inFlightCount;

        expect(active).toEqual({ status: 'ok', state: 'active', deadlineAt, transitions: NONE });
        expect(renewed).toBe(1);
        expect(lapsed).toBe(0);
      });

      it('should expire work past its deadline once, then keep reporting it until acknowledged', async () => {
        const s = await open({
          inFlightTtlMs: limits.v1DeadlineMs * 2,
          v1LeaseMs: limits.v1DeadlineMs * 2,
        });
        await upsert(s, 'node-a', 'v1');
        const input = job();
        const deadlineAt = await enqueueOk(s, input);
        await claimOne(s);
        clock.advance(limits.v1DeadlineMs);
        const rid = input.requestId as string;

        const first = await control(s, 'node-a', rid);
        const second = await control(s, 'node-a', rid);
        const acknowledged = await control(s, 'node-a', rid, true);
        const after = await control(s, 'node-a', rid);

        expect(first).toEqual({
          status: 'ok',
          state: 'expired',
          deadlineAt,
          transitions: { outcomes: { timed_out: 1 }, evictions: {} },
        });
        expect(second).toEqual({ status: 'ok', state: 'expired', deadlineAt, transitions: NONE });
        expect(acknowledged).toMatchObject({ status: 'ok', state: 'expired' });
        expect(after).toMatchObject({ status: 'ok', state: 'completed_unavailable' });
        expect(await take(s, input)).toMatchObject({
          status: 'terminal',
          terminal: 'expired',
          reason: 'provider_timeout',
        });
      });

      it('should guard a tombstone with the credential it was left for', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);
        await store.unregisterNode({
          nodeId: 'node-a',
          credentialDigest: digestOf('node-a'),
          now: now(),
        });

        const wrong = await control(store, 'node-a', input.requestId as string, false, 'nope');
        const right = await control(store, 'node-a', input.requestId as string);

        expect(wrong.status).toBe('forbidden');
        expect(right).toMatchObject({
          status: 'ok',
          state: 'cancelled',
          deadlineAt: expect.any(Number),
        });
      });

      it('should forget tombstones after their TTL', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.tombstoneTtlMs });
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);
        await store.cancel({
          clientKey: 'client-1',
          requestId: input.requestId as string,
          cancelToken: input.cancelToken as string,
          status: 'cancelled',
          reason: 'requester_cancelled',
          now: now(),
        });
        const before = await control(store, 'node-a', input.requestId as string);

        clock.advance(limits.tombstoneTtlMs + 1);
        await store.sweep(now());
        const after = await control(store, 'node-a', input.requestId as string);

        expect(before).toMatchObject({ state: 'cancelled' });
        expect(after).toMatchObject({ state: 'completed_unavailable' });
      });
    });

    describe('complete', () => {
      it('should store the first answer, refuse duplicates, and remember completion after retrieval', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);

        const stored = await complete(store, input, 'a1');
        const duplicate = await complete(store, input, 'a2');
        const taken = await retrieve(store, input);
        const late = await complete(store, input, 'a3');
        clock.advance(limits.terminalTtlMs + 1);
        await store.sweep(now());
        const forgotten = await complete(store, input, 'a4');

        expect(stored).toEqual({
          status: 'stored',
          transitions: { outcomes: { completed: 1 }, evictions: {} },
        });
        expect(duplicate).toEqual({ status: 'duplicate', transitions: NONE });
        expect(taken).toEqual({ status: 'ok', envelope: envelope('a1'), transitions: NONE });
        expect(late).toEqual({ status: 'gone', code: 'completed', transitions: NONE });
        expect(forgotten).toEqual({ status: 'gone', code: 'gone', transitions: NONE });
      });

      it('should keep at most the terminal-record cap of completion markers, dropping the oldest first', async () => {
        const s = await open({ maxQueuePerNode: 10, maxQueuedTotal: 10 });
        await upsert(s, 'node-a', 'v1');
        const inputs = [1, 2, 3, 4].map((i) => job({ clientKey: `c${i}` }));
        for (const input of inputs) {
          await enqueueOk(s, input);
          await claimOne(s);
          await complete(s, input);
          await retrieve(s, input);
          clock.advance(1);
        }

        const oldest = await complete(s, inputs[0] as JobInput);
        const newest = await complete(s, inputs[3] as JobInput);

        expect(oldest).toEqual({ status: 'gone', code: 'gone', transitions: NONE });
        expect(newest).toEqual({ status: 'gone', code: 'completed', transitions: NONE });
        expect((await s.stats(now())).terminalRecords).toBe(limits.maxTerminalRecords);
      });

      it('should refuse answers to cancelled, expired and unknown requests with their code', async () => {
        store = await open({ terminalTtlMs: CONTRACT_LIMITS.v1DeadlineMs * 2 });
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.v1DeadlineMs });
        const cancelled = job({ clientKey: 'c1' });
        const expired = job({ clientKey: 'c2' });
        await enqueueOk(store, cancelled);
        await enqueueOk(store, expired);
        await store.cancel({
          clientKey: 'c1',
          requestId: cancelled.requestId as string,
          cancelToken: cancelled.cancelToken as string,
          status: 'cancelled',
          reason: 'client_timeout',
          now: now(),
        });
        clock.advance(limits.v1DeadlineMs);
        const swept = await store.sweep(now());

        expect(counts(swept)).toEqual({ outcomes: { expired: 1 }, evictions: {} });
        expect(await complete(store, cancelled)).toEqual({
          status: 'gone',
          code: 'cancelled',
          transitions: NONE,
        });
        expect(await complete(store, expired)).toEqual({
          status: 'gone',
          code: 'expired',
          transitions: NONE,
        });
        expect(await complete(store, job({ requestId: 'never' }))).toEqual({
          status: 'gone',
          code: 'gone',
          transitions: NONE,
        });
      });

      it('should expire a request whose deadline passed before the sweep saw it', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.v1DeadlineMs });
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);
        clock.advance(limits.v1DeadlineMs);

        const result = await complete(store, input);

        expect(result).toEqual({
          status: 'gone',
          code: 'expired',
          transitions: { outcomes: { expired: 1 }, evictions: {} },
        });
        expect(await take(store, input)).toMatchObject({
          status: 'terminal',
          terminal: 'expired',
          reason: 'pending_request_ttl_exceeded',
        });
      });

      it('should refuse an answer to a request no node has claimed, and keep it queued', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);

        const result = await complete(store, input);

        expect(result).toEqual({ status: 'not_holder', transitions: NONE });
        expect((await claimOne(store))?.jobId).toBe(input.jobId);
        expect(await store.stats(now())).toMatchObject({ storedResponses: 0 });
      });

      it('should take a tracked answer only from the address the holding node is bound to', async () => {
        const origin = { owner: 'addr-a', group: 'group-a' };
        await upsert(store, 'node-a', 'v1', { origin });
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);
        const answer = (answerer: string | undefined) =>
          store.complete({
            dialect: 'v1',
            clientKey: input.clientKey as string,
            requestId: input.requestId,
            envelope: envelope('a'),
            answerer,
            now: now(),
          });

        const elsewhere = await answer('addr-b');
        const fromOwner = await answer('addr-a');

        expect(elsewhere).toEqual({ status: 'not_holder', transitions: NONE });
        expect(fromOwner.status).toBe('stored');
        expect(await answer('addr-b')).toEqual({ status: 'duplicate', transitions: NONE });
      });

      it('should keep untracked API v1 answers per client in FIFO order within their caps', async () => {
        const untracked = (clientKey: string, tag: string) =>
          store.complete({
            dialect: 'v1',
            clientKey,
            requestId: null,
            envelope: envelope(tag),
            now: now(),
          });
        const takeUntracked = (clientKey: string) =>
          store.takeResponse({ dialect: 'v1', clientKey, requestId: null, now: now() });

        const a = await untracked('c1', 'u1');
        await untracked('c1', 'u2');
        const perClient = await untracked('c1', 'u3');
        await untracked('c2', 'v1');
        await untracked('c2', 'v2');
        const total = await untracked('c3', 'w1');
        const first = await takeUntracked('c1');
        const second = await takeUntracked('c1');
        const empty = await takeUntracked('c1');

        expect(a).toEqual({ status: 'stored', transitions: NONE });
        expect(perClient).toEqual({ status: 'responses_full', transitions: NONE });
        expect(total).toEqual({ status: 'responses_full', transitions: NONE });
        expect(first).toEqual({ status: 'ok', envelope: envelope('u1'), transitions: NONE });
        expect(second).toEqual({ status: 'ok', envelope: envelope('u2'), transitions: NONE });
        expect(empty).toEqual({ status: 'unknown', transitions: NONE });
      });

      it('should keep one legacy answer per client (last wins) and complete its oldest claim', async () => {
        await upsert(store, 'node-l', 'legacy');
        await enqueueOk(store, legacyJob({ nodeId: 'node-l' }));
        await claimOne(store, 'node-l', 'legacy');
        const legacy = (tag: string) =>
          store.complete({
            dialect: 'legacy',
            clientKey: 'client-1',
            requestId: null,
            envelope: envelope(tag),
            now: now(),
          });

        const first = await legacy('l1');
        const second = await legacy('l2');
        const stats = await store.stats(now());
        const taken = await store.takeResponse({
          dialect: 'legacy',
          clientKey: 'client-1',
          requestId: null,
          now: now(),
        });
        await store.confirmDelivery({
          dialect: 'legacy',
          clientKey: 'client-1',
          requestId: null,
          now: now(),
        });
        const again = await store.takeResponse({
          dialect: 'legacy',
          clientKey: 'client-1',
          requestId: null,
          now: now(),
        });

        expect(first).toEqual({
          status: 'stored',
          transitions: { outcomes: { completed: 1 }, evictions: {} },
        });
        expect(second).toEqual({ status: 'stored', transitions: NONE });
        expect(stats).toMatchObject({ inFlight: 0, storedResponses: 1 });
        expect(taken).toEqual({ status: 'ok', envelope: envelope('l2'), transitions: NONE });
        expect(again).toEqual({ status: 'unknown', transitions: NONE });
      });

      it('should refuse legacy answers for new clients once the stored total is reached', async () => {
        const legacy = (clientKey: string) =>
          store.complete({
            dialect: 'legacy',
            clientKey,
            requestId: null,
            envelope: envelope(clientKey),
            now: now(),
          });
        for (let i = 0; i < limits.maxStoredResponses; i += 1) {
          await legacy(`c${i}`);
        }

        const refused = await legacy('new-client');
        const overwrite = await legacy('c0');

        expect(refused).toEqual({ status: 'responses_full', transitions: NONE });
        expect(overwrite.status).toBe('stored');
      });
    });

    describe('answer bytes (waiting answers budgeted as held)', () => {
      /** An answer whose ciphertext is `size` characters: its counted bytes are {@link sized}. */
      const bigEnvelope = (tag: string, size = 4096): Envelope => ({
        ...envelope(tag),
        ciphertext: `${tag}:`.padEnd(size, 'x'),
      });
      const sized = (tag: string, clientKey: string): number =>
        answerBytes(bigEnvelope(tag), clientKey);
      const answer = (s: StateStore, input: JobInput, tag: string) =>
        s.complete({
          dialect: input.dialect,
          clientKey: input.clientKey as string,
          requestId: input.requestId,
          envelope: bigEnvelope(tag),
          now: now(),
        });
      /** Three API v1 requests of three clients, claimed by node-a. */
      async function threeClaimed(s: StateStore): Promise<[JobInput, JobInput, JobInput]> {
        await upsert(s, 'node-a', 'v1');
        const inputs: [JobInput, JobInput, JobInput] = [
          job({ clientKey: 'c1' }),
          job({ clientKey: 'c2' }),
          job({ clientKey: 'c3' }),
        ];
        for (const input of inputs) {
          await enqueueOk(s, input);
          await claimOne(s);
        }
        return inputs;
      }
      const S = sized('a1', 'c1');

      it('should count waiting answers in bytes and refuse the one beyond the budget, whatever their count', async () => {
        store = await open({
          maxStoredResponses: 1000,
          maxAnswerBytes: 2 * S + 10,
          answerReserveBytes: 0,
        });
        const [a, b, c] = await threeClaimed(store);

        const first = await answer(store, a, 'a1');
        const second = await answer(store, b, 'a2');
        const statsFull = await store.stats(now());
        const third = await answer(store, c, 'a3');
        const collected = await retrieve(store, a);
        const statsAfter = await store.stats(now());
        const thirdAgain = await answer(store, c, 'a3');

        expect(first.status).toBe('stored');
        expect(second.status).toBe('stored');
        expect(statsFull).toMatchObject({ storedResponses: 2, answerBytes: 2 * S });
        expect(third).toEqual({ status: 'answers_full', transitions: NONE });
        expect(collected).toEqual({ status: 'ok', envelope: bigEnvelope('a1'), transitions: NONE });
        expect(statsAfter).toMatchObject({ storedResponses: 1, answerBytes: S });
        expect(thirdAgain.status).toBe('stored');
        expect(await retrieve(store, c)).toMatchObject({
          status: 'ok',
          envelope: bigEnvelope('a3'),
        });
        expect(await retrieve(store, b)).toMatchObject({
          status: 'ok',
          envelope: bigEnvelope('a2'),
        });
        expect((await store.stats(now())).answerBytes).toBe(0);
      });

      it('should keep the reserve for accepted work: new requests and unasked answers are refused beyond it', async () => {
        store = await open({ maxAnswerBytes: 3 * S + 10, answerReserveBytes: 2 * S });
        const [a, b] = await threeClaimed(store);
        await answer(store, a, 'a1');

        const admitted = await store.enqueue({ job: job({ clientKey: 'c4' }), now: now() });
        const withinReserve = await answer(store, b, 'a2');
        const refusedRequest = await store.enqueue({ job: job({ clientKey: 'c5' }), now: now() });
        const untracked = await store.complete({
          dialect: 'v1',
          clientKey: 'c6',
          requestId: null,
          envelope: bigEnvelope('u'),
          now: now(),
        });
        const unaskedLegacy = await store.complete({
          dialect: 'legacy',
          clientKey: 'c7',
          requestId: null,
          envelope: bigEnvelope('l'),
          now: now(),
        });
        await retrieve(store, a);
        await retrieve(store, b);
        const admittedAgain = await store.enqueue({ job: job({ clientKey: 'c5' }), now: now() });

        expect(admitted.status).toBe('queued');
        expect(withinReserve.status).toBe('stored');
        expect(refusedRequest).toEqual({ status: 'queue_full', transitions: NONE });
        expect(untracked).toEqual({ status: 'answers_full', transitions: NONE });
        expect(unaskedLegacy).toEqual({ status: 'answers_full', transitions: NONE });
        expect(admittedAgain.status).toBe('queued');
      });

      it('should keep a refused API v1 answer answerable, and queue its request again after answerRetryMs', async () => {
        store = await open({ maxAnswerBytes: S + 10, answerReserveBytes: 0 });
        const [a, b, c] = await threeClaimed(store);
        await answer(store, a, 'a1');

        const refused = await answer(store, b, 'a2');
        const pending = await take(store, b);
        await retrieve(store, a);
        const resent = await answer(store, b, 'a2');
        const refusedC = await answer(store, c, 'a3');
        clock.advance(limits.answerRetryMs - 1);
        await store.sweep(now());
        const stillClaimed = await store.stats(now());
        clock.advance(1);
        await store.sweep(now());
        const requeued = await store.stats(now());
        const claimedAgain = await claimOne(store);
        await retrieve(store, b);
        const answeredAgain = await answer(store, c, 'a3');

        expect(refused).toEqual({ status: 'answers_full', transitions: NONE });
        expect(pending).toMatchObject({ status: 'pending' });
        expect(resent.status).toBe('stored');
        expect(refusedC).toEqual({ status: 'answers_full', transitions: NONE });
        expect(stillClaimed).toMatchObject({ queueDepth: 0, inFlight: 1 });
        expect(requeued).toMatchObject({ queueDepth: 1, inFlight: 0 });
        expect(claimedAgain).toMatchObject({ jobId: c.jobId, requestId: c.requestId });
        expect(answeredAgain.status).toBe('stored');
        expect(await retrieve(store, c)).toMatchObject({
          status: 'ok',
          envelope: bigEnvelope('a3'),
        });
      });

      it('should keep a refused API v1 answer claimed while its node confirms the claim', async () => {
        store = await open({ maxAnswerBytes: S + 10, answerReserveBytes: 0 });
        const [a, b] = await threeClaimed(store);
        await answer(store, a, 'a1');
        await answer(store, b, 'a2');

        clock.advance(1000);
        const confirmed = await control(store, 'node-a', b.requestId as string);
        clock.advance(limits.answerRetryMs);
        await store.sweep(now());

        expect(confirmed).toMatchObject({ status: 'ok', state: 'active' });
        expect(await store.stats(now())).toMatchObject({ queueDepth: 0 });
      });

      it('should keep a refused legacy answer claimed, queue its request again after answerRetryMs, and complete it then', async () => {
        store = await open({ maxAnswerBytes: sized('l1', 'client-1') + 10, answerReserveBytes: 0 });
        await upsert(store, 'node-l', 'legacy');
        const one = legacyJob({ nodeId: 'node-l', clientKey: 'client-1' });
        const two = legacyJob({ nodeId: 'node-l', clientKey: 'client-2' });
        await enqueueOk(store, one);
        await enqueueOk(store, two);
        await store.claimNext({ nodeId: 'node-l', dialect: 'legacy', max: 2, now: now() });

        const stored = await answer(store, one, 'l1');
        const refused = await answer(store, two, 'l2');
        clock.advance(limits.answerRetryMs);
        await store.sweep(now());
        const requeued = await store.stats(now());
        const claimedAgain = await claimOne(store, 'node-l', 'legacy');
        const collected = await retrieve(store, one);
        const completed = await answer(store, two, 'l2');

        expect(stored).toEqual({
          status: 'stored',
          transitions: { outcomes: { completed: 1 }, evictions: {} },
        });
        expect(refused).toEqual({ status: 'answers_full', transitions: NONE });
        expect(requeued).toMatchObject({ queueDepth: 1, inFlight: 0 });
        expect(claimedAgain).toMatchObject({ jobId: two.jobId, clientKey: 'client-2' });
        expect(collected).toMatchObject({ status: 'ok', envelope: bigEnvelope('l1') });
        expect(completed).toEqual({
          status: 'stored',
          transitions: { outcomes: { completed: 1 }, evictions: {} },
        });
        expect(await retrieve(store, two)).toMatchObject({
          status: 'ok',
          envelope: bigEnvelope('l2'),
        });
        expect(await store.stats(now())).toMatchObject({ answerBytes: 0, inFlight: 0 });
      });

      it('should count legacy stream chunks in the answer budget and free them when drained', async () => {
        store = await open({ maxAnswerBytes: 2048, answerReserveBytes: 0, maxStreamBytes: 4096 });
        await upsert(store, 'node-l', 'legacy');
        const input = legacyJob({ nodeId: 'node-l', stream: true });
        await enqueueOk(store, input);
        await claimOne(store, 'node-l', 'legacy');
        const append = (chunkBytes: number) =>
          store.appendStreamChunk({
            sessionId: input.jobId,
            chunk: '"x"',
            chunkBytes,
            final: false,
            now: now(),
          });

        const first = await append(1500);
        const refused = await append(1000);
        const held = (await store.stats(now())).answerBytes;
        await store.takeStream('client-1', now());
        const afterDrain = await append(1000);

        expect(first.status).toBe('stored');
        expect(refused).toEqual({ status: 'answers_full', transitions: NONE });
        expect(held).toBe(1500);
        expect(afterDrain.status).toBe('stored');
        expect((await store.stats(now())).answerBytes).toBe(1000);
      });
    });

    describe('takeResponse', () => {
      it('should report pending while queued and in flight, with the deadline', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        const deadlineAt = await enqueueOk(store, input);

        const queued = await take(store, input);
        await claimOne(store);
        const inFlight = await take(store, input);

        expect(queued).toEqual({
          status: 'pending',
          deadlineAt,
          progress: null,
          queuePosition: 0,
          estimatedWaitSeconds: null,
          transitions: NONE,
        });
        expect(inFlight).toEqual({
          status: 'pending',
          deadlineAt,
          progress: null,
          queuePosition: 0,
          estimatedWaitSeconds: null,
          transitions: NONE,
        });
      });

      it('should give each queued request its place in line on its own node, and 0 once claimed', async () => {
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-b', 'v1');
        const [a1, a2, a3] = [
          job(),
          job({ clientKey: 'client-2' }),
          job({ clientKey: 'client-3' }),
        ];
        const b1 = job({ nodeId: 'node-b' });
        for (const input of [a1, b1, a2, a3]) {
          await enqueueOk(store, input);
        }
        const place = async (input: JobInput): Promise<unknown> => {
          const r = await take(store, input);
          return r.status === 'pending' ? r.queuePosition : r.status;
        };

        const before = [await place(a1), await place(a2), await place(a3), await place(b1)];
        await store.cancel({
          clientKey: 'client-2',
          requestId: a2.requestId as string,
          cancelToken: a2.cancelToken as string,
          status: 'cancelled',
          reason: 'requester_cancelled',
          now: now(),
        });
        const afterCancel = await place(a3);
        await claimOne(store);
        const afterClaim = [await place(a1), await place(a3)];

        expect(before).toEqual([0, 1, 2, 0]);
        expect(afterCancel).toBe(1);
        expect(afterClaim).toEqual([0, 0]);
      });

      it('should put a redelivered claim back at the head of the line', async () => {
        await upsert(store, 'node-a', 'v1');
        const [first, second] = [job(), job({ clientKey: 'client-2' })];
        await enqueueOk(store, first);
        await claimOne(store);
        await enqueueOk(store, second);
        const before = await take(store, second);

        clock.advance(limits.inFlightTtlMs + 1);
        await store.sweep(now());
        const [lost, behind] = [await take(store, first), await take(store, second)];

        expect(before).toMatchObject({ status: 'pending', queuePosition: 0 });
        expect(lost).toMatchObject({ status: 'pending', queuePosition: 0 });
        expect(behind).toMatchObject({ status: 'pending', queuePosition: 1 });
      });

      it("should estimate the wait from the node's recent service times, none before its first answer", async () => {
        store = await open({ maxQueuePerNode: 4 });
        await upsert(store, 'node-a', 'v1', { capabilities: { ...CAPS, max_concurrency: 2 } });
        const clients = ['client-1', 'client-2', 'client-3'];
        const jobs = clients.map((clientKey) => job({ clientKey }));
        const [first, second] = jobs as [JobInput, JobInput, JobInput];
        const wait = async (input: JobInput): Promise<unknown> => {
          const r = await take(store, input);
          return r.status === 'pending' ? [r.queuePosition, r.estimatedWaitSeconds] : r.status;
        };
        await enqueueOk(store, first);
        await claimOne(store);
        const noHistory = await wait(first);
        clock.advance(4000);
        await complete(store, first);
        const others = jobs.slice(1);
        const more = [job({ clientKey: 'client-4' }), job({ clientKey: 'client-5' })];
        for (const input of [...others, ...more]) {
          await enqueueOk(store, input);
        }

        // S = 4000 ms, 2 at once, none in flight: places 0-1 go in the first round, 2-3 in the second.
        const queued = [];
        for (const input of [...others, ...more]) {
          queued.push(await wait(input));
        }
        await claimOne(store);
        clock.advance(1500);
        const inFlight = await wait(second);
        const behindOne = await wait(jobs[2] as JobInput);
        clock.advance(500);
        await complete(store, second);
        const next = await wait(more[1] as JobInput);

        expect(noHistory).toEqual([0, null]);
        expect(queued).toEqual([
          [0, 4],
          [1, 4],
          [2, 8],
          [3, 8],
        ]);
        // 4000 - 1500 ms left of the claimed one; behind it: (0 + 1 in flight) / 2 rounds + its own.
        expect(inFlight).toEqual([0, 3]);
        expect(behindOne).toEqual([0, 4]);
        // S = floor((3 * 4000 + 2000) / 4) = 3500 ms; the last one is at place 2: two rounds.
        expect(next).toEqual([2, 7]);
      });

      it('should hand the answer out again until its delivery is confirmed, then report it unknown', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);
        await complete(store, input, 'answer-1');

        const first = await take(store, input);
        const retry = await take(store, input);
        await store.confirmDelivery({
          dialect: 'v1',
          clientKey: 'client-1',
          requestId: input.requestId,
          now: now(),
        });
        const after = await take(store, input);

        expect(first).toEqual({ status: 'ok', envelope: envelope('answer-1'), transitions: NONE });
        expect(retry).toEqual(first);
        expect(after).toEqual({ status: 'unknown', transitions: NONE });
        expect((await store.stats(now())).storedResponses).toBe(0);
      });

      it('should drop a handed-out answer nobody confirmed after the delivery grace', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);
        await complete(store, input, 'answer-1');
        await take(store, input);

        clock.advance(limits.deliveryGraceMs - 1);
        await store.sweep(now());
        const within = await take(store, input);
        clock.advance(1);
        await store.sweep(now());
        const after = await take(store, input);

        expect(within.status).toBe('ok');
        expect(after).toEqual({ status: 'unknown', transitions: NONE });
        expect((await store.stats(now())).storedResponses).toBe(0);
      });

      it('should hand a legacy answer out again until confirmed, and prefer a newer one', async () => {
        const legacyTake = () =>
          store.takeResponse({ dialect: 'legacy', clientKey: 'c', requestId: null, now: now() });
        const legacyAnswer = (tag: string) =>
          store.complete({
            dialect: 'legacy',
            clientKey: 'c',
            requestId: null,
            envelope: envelope(tag),
            now: now(),
          });
        await legacyAnswer('l1');

        const first = await legacyTake();
        const retry = await legacyTake();
        await legacyAnswer('l2');
        const newer = await legacyTake();
        await store.confirmDelivery({
          dialect: 'legacy',
          clientKey: 'c',
          requestId: null,
          now: now(),
        });
        const after = await legacyTake();

        expect(first.status === 'ok' && first.envelope).toEqual(envelope('l1'));
        expect(retry.status === 'ok' && retry.envelope).toEqual(envelope('l1'));
        expect(newer.status === 'ok' && newer.envelope).toEqual(envelope('l2'));
        expect(after).toEqual({ status: 'unknown', transitions: NONE });
      });

      it('should report a terminal request with its status and reason', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);
        await store.cancel({
          clientKey: 'client-1',
          requestId: input.requestId as string,
          cancelToken: input.cancelToken as string,
          status: 'cancelled',
          reason: 'requester_gave_up',
          now: now(),
        });

        expect(await take(store, input)).toEqual({
          status: 'terminal',
          terminal: 'cancelled',
          reason: 'requester_gave_up',
          transitions: NONE,
        });
      });

      it('should expire a pending request whose deadline passed, once', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.v1DeadlineMs });
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);
        clock.advance(limits.v1DeadlineMs);

        const first = await take(store, input);
        const second = await take(store, input);

        expect(first).toEqual({
          status: 'terminal',
          terminal: 'expired',
          reason: 'pending_request_ttl_exceeded',
          transitions: { outcomes: { expired: 1 }, evictions: {} },
        });
        expect(second.status).toBe('terminal');
        expect(counts(second.transitions)).toEqual(NONE);
      });

      it('should report unknown requests and empty legacy mailboxes', async () => {
        const unknown = await take(store, job({ requestId: 'never' }));
        const legacy = await store.takeResponse({
          dialect: 'legacy',
          clientKey: 'nobody',
          requestId: null,
          now: now(),
        });

        expect(unknown).toEqual({ status: 'unknown', transitions: NONE });
        expect(legacy).toEqual({ status: 'unknown', transitions: NONE });
      });
    });

    describe('cancel', () => {
      const cancel = (
        s: StateStore,
        input: JobInput,
        token = input.cancelToken as string,
        status: 'cancelled' | 'expired' = 'cancelled',
      ) =>
        s.cancel({
          clientKey: input.clientKey as string,
          requestId: input.requestId as string,
          cancelToken: token,
          status,
          reason: status === 'expired' ? 'client_timeout' : 'requester_cancelled',
          now: now(),
        });

      it('should refuse without the proof: unknown request, wrong token, no token, already answered', async () => {
        await upsert(store, 'node-a', 'v1');
        const tokenless = job({ cancelToken: null, clientKey: 'c2' });
        const answered = job({ clientKey: 'c3' });
        const live = job();
        await enqueueOk(store, answered);
        await claimOne(store);
        await complete(store, answered);
        await enqueueOk(store, tokenless);
        await enqueueOk(store, live);

        const forbidden = { status: 'forbidden', transitions: NONE };
        expect(await cancel(store, job({ requestId: 'never' }))).toEqual(forbidden);
        expect(await cancel(store, live, 'wrong-token')).toEqual(forbidden);
        expect(await cancel(store, tokenless, '')).toEqual(forbidden);
        expect(await cancel(store, tokenless, 'anything')).toEqual(forbidden);
        expect(await cancel(store, answered)).toEqual(forbidden);
        expect(await take(store, live)).toMatchObject({ status: 'pending' });
      });

      it('should remove queued work from the queue and record the terminal status', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);

        const result = await cancel(store, input);

        expect(result).toEqual({
          status: 'ok',
          removedFromQueue: 1,
          transitions: { outcomes: { cancelled: 1 }, evictions: {} },
        });
        expect(await claimOne(store)).toBeUndefined();
        expect(await take(store, input)).toMatchObject({
          status: 'terminal',
          terminal: 'cancelled',
          reason: 'requester_cancelled',
        });
        expect(await cancel(store, input)).toEqual({ status: 'forbidden', transitions: NONE });
      });

      it('should tombstone in-flight work for its node and refuse a late answer', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);

        const result = await cancel(store, input, input.cancelToken as string, 'expired');
        const nodeView = await control(store, 'node-a', input.requestId as string);
        const late = await complete(store, input);

        expect(result).toEqual({
          status: 'ok',
          removedFromQueue: 0,
          transitions: { outcomes: { expired: 1 }, evictions: {} },
        });
        expect(nodeView).toMatchObject({ status: 'ok', state: 'expired' });
        expect(late).toEqual({ status: 'gone', code: 'expired', transitions: NONE });
        expect(await take(store, input)).toMatchObject({
          status: 'terminal',
          terminal: 'expired',
          reason: 'client_timeout',
        });
      });
    });

    describe('putProgress', () => {
      const progress = (
        s: StateStore,
        input: JobInput,
        tag: string,
        over: Partial<{ nodeId: string; digest: string; clientKey: string }> = {},
      ) =>
        s.putProgress({
          nodeId: over.nodeId ?? input.nodeId,
          credentialDigest: over.digest ?? digestOf(over.nodeId ?? input.nodeId),
          clientKey: over.clientKey ?? (input.clientKey as string),
          requestId: input.requestId as string,
          envelope: envelope(tag),
          now: now(),
        });

      it('should refuse a wrong credential, an unknown node and a legacy node', async () => {
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-l', 'legacy');
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);

        const forbidden = { status: 'forbidden', transitions: NONE };
        expect(await progress(store, input, 'p', { digest: 'wrong' })).toEqual(forbidden);
        expect(await progress(store, input, 'p', { nodeId: 'ghost' })).toEqual(forbidden);
        expect(await progress(store, input, 'p', { nodeId: 'node-l' })).toEqual(forbidden);
      });

      it('should refuse progress for work the node does not hold for that client', async () => {
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-b', 'v1');
        const queued = job({ clientKey: 'c2' });
        const held = job();
        await enqueueOk(store, held);
        await enqueueOk(store, queued);
        await claimOne(store);

        const notActive = { status: 'not_active', transitions: NONE };
        expect(await progress(store, queued, 'p')).toEqual(notActive);
        expect(await progress(store, held, 'p', { clientKey: 'someone-else' })).toEqual(notActive);
        expect(await progress(store, held, 'p', { nodeId: 'node-b' })).toEqual(notActive);
      });

      it('should expire work past its deadline instead of storing progress', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.v1DeadlineMs });
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);
        clock.advance(limits.v1DeadlineMs);

        const result = await progress(store, input, 'p');

        expect(result).toEqual({
          status: 'expired',
          transitions: { outcomes: { timed_out: 1 }, evictions: {} },
        });
      });

      it('should keep the latest progress and hand it to the next pending retrieve once', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);

        const accepted = await progress(store, input, 'p1');
        await progress(store, input, 'p2');
        const first = await take(store, input);
        const second = await take(store, input);

        expect(accepted).toEqual({ status: 'accepted', transitions: NONE });
        expect(first).toMatchObject({ status: 'pending', progress: envelope('p2') });
        expect(second).toMatchObject({ status: 'pending', progress: null });
      });
    });

    describe('legacy streams', () => {
      async function openStream(s: StateStore, clientKey = 'client-1'): Promise<string> {
        await upsert(s, 'node-l', 'legacy');
        const input = legacyJob({ nodeId: 'node-l', stream: true, clientKey });
        await enqueueOk(s, input);
        await claimOne(s, 'node-l', 'legacy');
        return input.jobId;
      }
      const append = (
        s: StateStore,
        sessionId: string,
        chunk: string,
        final = false,
        chunkBytes = 10,
      ) => s.appendStreamChunk({ sessionId, chunk, chunkBytes, final, now: now() });

      it('should refuse chunks for an unknown session and report no stream for an unknown client', async () => {
        expect(await append(store, 'nope', 'x')).toEqual({ status: 'unknown', transitions: NONE });
        expect(await store.takeStream('nobody', now())).toEqual({ status: 'none' });
      });

      it('should buffer chunks, drain them, and remove the session once final', async () => {
        const sessionId = await openStream(store);

        const stored = await append(store, sessionId, '{"part":1,"text":"é"}');
        const drained = await store.takeStream('client-1', now());
        await append(store, sessionId, '[2,"two"]');
        const final = await append(store, sessionId, '"three"', true);
        const last = await store.takeStream('client-1', now());
        const gone = await store.takeStream('client-1', now());

        expect(stored).toEqual({ status: 'stored', transitions: NONE });
        expect(drained).toEqual({
          status: 'ok',
          sessionId,
          chunks: ['{"part":1,"text":"é"}'],
          final: false,
        });
        expect(last).toEqual({
          status: 'ok',
          sessionId,
          chunks: ['[2,"two"]', '"three"'],
          final: true,
        });
        expect(gone).toEqual({ status: 'none' });
        expect(counts(final.transitions)).toEqual({ outcomes: { completed: 1 }, evictions: {} });
        expect(await store.stats(now())).toMatchObject({ streamSessions: 0, inFlight: 0 });
      });

      it('should refuse chunks beyond the count and byte caps', async () => {
        const sessionId = await openStream(store);

        const big = await append(store, sessionId, 'x', false, limits.maxStreamBytes + 1);
        await append(store, sessionId, '1');
        await append(store, sessionId, '2');
        await append(store, sessionId, '3');
        const fourth = await append(store, sessionId, '4');

        expect(big).toEqual({ status: 'full', transitions: NONE });
        expect(fourth).toEqual({ status: 'full', transitions: NONE });
      });

      it('should replace an older session of the same client and evict the oldest past the cap', async () => {
        const first = await openStream(store, 'c1');
        clock.advance(1);
        const second = await openStream(store, 'c1');
        clock.advance(1);
        await openStream(store, 'c2');
        clock.advance(1);
        await openStream(store, 'c3');

        expect(await append(store, first, 'x')).toEqual({ status: 'unknown', transitions: NONE });
        expect(await append(store, second, 'x')).toEqual({ status: 'unknown', transitions: NONE });
        expect(await store.takeStream('c3', now())).toMatchObject({ status: 'ok' });
        expect((await store.stats(now())).streamSessions).toBe(2);
      });

      it('should drop the open sessions of a node that is removed', async () => {
        const sessionId = await openStream(store);

        await store.unregisterNode({ nodeId: 'node-l', credentialDigest: null, now: now() });

        expect(await append(store, sessionId, 'x')).toEqual({
          status: 'unknown',
          transitions: NONE,
        });
        expect(await store.takeStream('client-1', now())).toEqual({ status: 'none' });
      });
    });

    describe('hitRateLimit', () => {
      const hit = (s: StateStore, key: string, limit = 2, windowMs = 60_000) =>
        s.hitRateLimit({ key, limit, windowMs, now: now() });

      it('should allow the limit, refuse beyond it, and reset with the next window', async () => {
        const a = await hit(store, 'k');
        clock.advance(30_000);
        const b = await hit(store, 'k');
        const refused = await hit(store, 'k');
        const otherKey = await hit(store, 'k2');
        const otherWindow = await hit(store, 'k', 2, 3_600_000);
        clock.advance(30_000);
        const reset = await hit(store, 'k');

        expect(a).toEqual({ allowed: true, resetSeconds: 60 });
        expect(b).toEqual({ allowed: true, resetSeconds: 30 });
        expect(refused).toEqual({ allowed: false, resetSeconds: 30 });
        expect(otherKey.allowed).toBe(true);
        expect(otherWindow.allowed).toBe(true);
        expect(reset).toEqual({ allowed: true, resetSeconds: 60 });
      });

      it('should evict the least recently hit bucket at the cap, never refuse a newcomer', async () => {
        await hit(store, 'a', 2, 3_600_000);
        clock.advance(1000);
        await hit(store, 'b');
        await hit(store, 'c');
        clock.advance(1000);
        await hit(store, 'b');

        const newcomer = await hit(store, 'd');
        const stats = await store.stats(now());
        const evictedComesBack = await hit(store, 'a', 2, 3_600_000);
        const stillCounted = [await hit(store, 'b'), await hit(store, 'b')];

        expect(newcomer).toEqual({ allowed: true, resetSeconds: 60 });
        expect(stats.rateLimitBuckets).toBe(3);
        // 'a' was the least recently hit (a day-long window does not pin it): a fresh window.
        expect(evictedComesBack).toEqual({ allowed: true, resetSeconds: 3600 });
        // 'c' went to make room for 'a'; 'b' kept its count (2 of 2 used).
        expect(stillCounted.map((r) => r.allowed)).toEqual([false, false]);
      });

      it('should keep a refused caller recently used, so its bucket is not the one evicted', async () => {
        await hit(store, 'abuser', 1);
        await hit(store, 'abuser', 1);
        clock.advance(1000);
        await hit(store, 'x');
        clock.advance(1000);
        await hit(store, 'abuser', 1);
        await hit(store, 'y');

        await hit(store, 'z');
        const abuser = await hit(store, 'abuser', 1);

        expect(abuser.allowed).toBe(false);
      });

      it('should take back one hit of the current window on refund, and nothing else', async () => {
        await hit(store, 'k', 2);
        await hit(store, 'k', 2);
        const refused = await hit(store, 'k', 2);
        const refund = await store.hitRateLimit({
          key: 'k',
          limit: 2,
          windowMs: 60_000,
          now: now(),
          refund: true,
        });
        const again = await hit(store, 'k', 2);
        const unknown = await store.hitRateLimit({
          key: 'never-hit',
          limit: 2,
          windowMs: 60_000,
          now: now(),
          refund: true,
        });
        const stats = await store.stats(now());

        expect(refused.allowed).toBe(false);
        expect(refund).toEqual({ allowed: true, resetSeconds: 60 });
        expect(again.allowed).toBe(true);
        expect(unknown).toEqual({ allowed: true, resetSeconds: 1 });
        expect(stats.rateLimitBuckets).toBe(1);
      });
    });

    describe('sweep', () => {
      it('should put a claim its node never confirmed back at the head of the queue after the in-flight lease', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.v1DeadlineMs });
        const lost = job({ clientKey: 'c1' });
        const next = job({ clientKey: 'c2' });
        await enqueueOk(store, lost);
        await enqueueOk(store, next);
        const first = await claimOne(store);
        clock.advance(limits.inFlightTtlMs - 1);
        await store.sweep(now());
        const stillClaimed = await store.stats(now());

        clock.advance(1);
        const swept = await store.sweep(now());
        const again = await claimOne(store);
        const pending = await take(store, lost);

        expect(first?.jobId).toBe(lost.jobId);
        expect(stillClaimed).toMatchObject({ inFlight: 1, queueDepth: 1 });
        expect(counts(swept)).toEqual(NONE);
        expect(again?.jobId).toBe(lost.jobId);
        expect(pending.status).toBe('pending');
      });

      it('should keep a confirmed claim in flight when its accounting lease lapses', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.v1DeadlineMs });
        const held = job();
        await enqueueOk(store, held);
        await claimOne(store);
        await control(store, 'node-a', held.requestId as string);

        clock.advance(limits.inFlightTtlMs + 1);
        await store.sweep(now());
        const next = await store.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: now() });

        expect(next.status === 'ok' && next.jobs).toEqual([]);
        expect(await store.stats(now())).toMatchObject({ inFlight: 1, queueDepth: 0 });
      });

      it('should expire queued and in-flight work at its deadline with the matching reason', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.v1DeadlineMs });
        const inFlight = job({ clientKey: 'c1' });
        const queued = job({ clientKey: 'c2' });
        await enqueueOk(store, inFlight);
        await enqueueOk(store, queued);
        await claimOne(store);
        await control(store, 'node-a', inFlight.requestId as string);
        clock.advance(limits.v1DeadlineMs - 1);
        const early = await store.sweep(now());

        clock.advance(1);
        const swept = await store.sweep(now());
        const again = await store.sweep(now());

        expect(early).toEqual(NONE);
        expect(counts(swept)).toEqual({ outcomes: { expired: 2 }, evictions: {} });
        expect(counts(again)).toEqual(NONE);
        expect(await take(store, queued)).toMatchObject({
          terminal: 'expired',
          reason: 'pending_request_ttl_exceeded',
        });
        expect(await take(store, inFlight)).toMatchObject({
          terminal: 'expired',
          reason: 'pending_request_ttl_exceeded',
        });
        expect(await control(store, 'node-a', inFlight.requestId as string)).toMatchObject({
          state: 'expired',
        });
      });

      it('should expire unanswered legacy work', async () => {
        await upsert(store, 'node-l', 'legacy', {
          pollingUntil: now() + 10 * limits.legacyRequestTtlMs,
        });
        await enqueueOk(store, legacyJob({ nodeId: 'node-l', clientKey: 'c1' }));
        await enqueueOk(store, legacyJob({ nodeId: 'node-l', clientKey: 'c2' }));
        await claimOne(store, 'node-l', 'legacy');
        clock.advance(limits.legacyRequestTtlMs);

        const swept = await store.sweep(now());

        expect(counts(swept)).toEqual({ outcomes: { expired: 2 }, evictions: {} });
        expect(await store.stats(now())).toMatchObject({ queueDepth: 0, inFlight: 0 });
      });

      it('should evict a node silent past its lease and grace and cancel its queued work', async () => {
        await upsert(store, 'node-l', 'legacy');
        await upsert(store, 'node-a', 'v1');
        const queued = job();
        await enqueueOk(store, queued);
        clock.advance(limits.legacyLeaseMs + 1);
        const pastLease = await store.sweep(now());
        clock.advance(limits.lapseGraceMs - 1);
        const atGrace = await store.sweep(now());
        clock.advance(1);
        const legacyGone = await store.sweep(now());
        clock.advance(limits.v1LeaseMs - limits.legacyLeaseMs);
        const v1Gone = await store.sweep(now());

        expect(counts(pastLease)).toEqual(NONE);
        expect(counts(atGrace)).toEqual(NONE);
        expect(counts(legacyGone)).toEqual({ outcomes: {}, evictions: { stale_lease: 1 } });
        expect(counts(v1Gone)).toEqual({
          outcomes: { cancelled: 1 },
          evictions: { stale_lease: 1 },
        });
        expect(await take(store, queued)).toMatchObject({
          terminal: 'cancelled',
          reason: 'server_unregistered',
        });
        expect(await store.stats(now())).toMatchObject({ nodesRegistered: 0 });
      });

      it('should protect a long-polling node until its poll ends', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + limits.v1LeaseMs * 2 });
        clock.advance(limits.v1LeaseMs + 1);
        const during = await store.sweep(now());
        clock.advance(limits.v1LeaseMs + 1);
        const after = await store.sweep(now());

        expect(counts(during)).toEqual(NONE);
        expect(counts(after)).toEqual({ outcomes: {}, evictions: { stale_lease: 1 } });
      });

      it('should protect a node with active work until the in-flight lease lapses', async () => {
        await upsert(store, 'node-a', 'v1');
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);
        clock.advance(limits.v1LeaseMs - 5000);
        await control(store, 'node-a', input.requestId as string);
        clock.advance(5001);
        const protectedSweep = await store.sweep(now());
        clock.advance(limits.inFlightTtlMs + limits.v1LeaseMs);
        const evicted = await store.sweep(now());

        expect(counts(protectedSweep)).toEqual(NONE);
        expect(counts(evicted)).toEqual({
          outcomes: { cancelled: 1 },
          evictions: { stale_lease: 1 },
        });
        expect(await take(store, input)).toMatchObject({
          terminal: 'cancelled',
          reason: 'server_unregistered',
        });
      });

      it('should drop unretrieved answers after their TTL and report them expired, without an outcome', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.responseTtlMs });
        const input = job();
        await enqueueOk(store, input);
        await claimOne(store);
        await complete(store, input);
        clock.advance(limits.responseTtlMs);

        const swept = await store.sweep(now());

        expect(counts(swept)).toEqual(NONE);
        expect(await take(store, input)).toEqual({
          status: 'terminal',
          terminal: 'expired',
          reason: 'response_ttl_exceeded',
          transitions: NONE,
        });
        expect((await store.stats(now())).storedResponses).toBe(0);
      });

      it('should forget terminal records, stored answers, streams and rate-limit windows after their TTLs', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 100 * limits.responseTtlMs });
        await upsert(store, 'node-l', 'legacy', {
          pollingUntil: now() + 100 * limits.responseTtlMs,
        });
        const cancelled = job();
        await enqueueOk(store, cancelled);
        await store.cancel({
          clientKey: 'client-1',
          requestId: cancelled.requestId as string,
          cancelToken: cancelled.cancelToken as string,
          status: 'cancelled',
          reason: 'requester_cancelled',
          now: now(),
        });
        await store.complete({
          dialect: 'v1',
          clientKey: 'c2',
          requestId: null,
          envelope: envelope('u'),
          now: now(),
        });
        await store.complete({
          dialect: 'legacy',
          clientKey: 'c3',
          requestId: null,
          envelope: envelope('l'),
          now: now(),
        });
        await enqueueOk(store, legacyJob({ nodeId: 'node-l', clientKey: 'c4', stream: true }));
        await claimOne(store, 'node-l', 'legacy');
        await store.hitRateLimit({ key: 'k', limit: 5, windowMs: 1000, now: now() });
        const before = await store.stats(now());

        clock.advance(Math.max(limits.terminalTtlMs, limits.responseTtlMs, limits.streamTtlMs));
        await store.sweep(now());
        const after = await store.stats(now());

        expect(before).toMatchObject({
          terminalRecords: 1,
          storedResponses: 2,
          streamSessions: 1,
          rateLimitBuckets: 1,
        });
        expect(after).toMatchObject({
          terminalRecords: 0,
          storedResponses: 0,
          streamSessions: 0,
          rateLimitBuckets: 0,
        });
        expect(await take(store, cancelled)).toMatchObject({ status: 'unknown' });
      });

      it('should keep at most the terminal-record cap, dropping the oldest first', async () => {
        await upsert(store, 'node-a', 'v1');
        const inputs = [1, 2, 3, 4].map((i) => job({ clientKey: `c${i}` }));
        for (const input of inputs) {
          await enqueueOk(store, input);
          await store.cancel({
            clientKey: input.clientKey as string,
            requestId: input.requestId as string,
            cancelToken: input.cancelToken as string,
            status: 'cancelled',
            reason: 'requester_cancelled',
            now: now(),
          });
          clock.advance(1);
        }

        expect((await store.stats(now())).terminalRecords).toBe(limits.maxTerminalRecords);
        expect(await take(store, inputs[0] as JobInput)).toMatchObject({ status: 'unknown' });
        expect(await take(store, inputs[3] as JobInput)).toMatchObject({ status: 'terminal' });
      });
    });

    describe('stats', () => {
      it('should report queues, flights, nodes, leases and stored records', async () => {
        const empty = await store.stats(now());
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-b', 'v1');
        await upsert(store, 'node-l', 'legacy');
        const a = job({ clientKey: 'c1', bytes: 7 });
        const b = job({ clientKey: 'c2', bytes: 11 });
        await enqueueOk(store, a);
        clock.advance(1000);
        await enqueueOk(store, b);
        await claimOne(store);
        clock.advance(2000);
        await upsert(store, 'node-a', 'v1');
        await upsert(store, 'node-l', 'legacy');
        await complete(store, job({ clientKey: 'c9', requestId: null }));
        await store.hitRateLimit({ key: 'k', limit: 5, windowMs: 1000, now: now() });

        const stats = await store.stats(now());

        expect(empty).toEqual({
          queueDepth: 0,
          oldestQueuedAgeSeconds: 0,
          inFlight: 0,
          oldestInFlightAgeSeconds: 0,
          nodesRegistered: 0,
          v1NodesRegistered: 0,
          v1NodesHealthy: 0,
          maxLeaseAgeSeconds: 0,
          queuedBytes: 0,
          storedResponses: 0,
          answerBytes: 0,
          terminalRecords: 0,
          tombstones: 0,
          streamSessions: 0,
          rateLimitBuckets: 0,
        });
        expect(stats).toEqual({
          queueDepth: 1,
          oldestQueuedAgeSeconds: 2,
          inFlight: 1,
          oldestInFlightAgeSeconds: 2,
          nodesRegistered: 3,
          v1NodesRegistered: 2,
          v1NodesHealthy: 2,
          maxLeaseAgeSeconds: 3,
          queuedBytes: 11,
          storedResponses: 1,
          answerBytes: answerBytes(envelope('answer'), 'c9'),
          terminalRecords: 0,
          tombstones: 0,
          streamSessions: 0,
          rateLimitBuckets: 1,
        });
      });

      it('should count a v1 node past its lease as registered but not healthy', async () => {
        await upsert(store, 'node-a', 'v1');
        clock.advance(limits.v1LeaseMs + 1);

        expect(await store.stats(now())).toMatchObject({
          v1NodesRegistered: 1,
          v1NodesHealthy: 0,
          nodesRegistered: 1,
        });
      });
    });

    describe('waits', () => {
      it('should wake a node waiting for work when work is queued for it', async () => {
        await upsert(store, 'node-a', 'v1');
        await claimOne(store);
        const abort = new AbortController();
        const waiting = store.waitForWork('node-a', now() + 60_000, abort.signal);

        await enqueueOk(store, job());
        await waiting;

        expect((await claimOne(store))?.clientKey).toBe('client-1');
      });

      it('should return at once when work is already queued', async () => {
        await upsert(store, 'node-a', 'v1');
        await enqueueOk(store, job());

        await store.waitForWork('node-a', now() + 60_000, new AbortController().signal);

        expect(await claimOne(store)).toBeDefined();
      });

      it('should end a work wait at its deadline, on abort, on wakeAll and when the node is removed', async () => {
        await upsert(store, 'node-a', 'v1');
        await claimOne(store);
        const timed = store.waitForWork('node-a', now() + 5000, new AbortController().signal);
        const abort = new AbortController();
        const aborted = store.waitForWork('node-a', now() + 60_000, abort.signal);
        const passed = store.waitForWork('node-a', now() - 1, new AbortController().signal);

        clock.advance(5000);
        abort.abort();
        await Promise.all([timed, aborted, passed]);
        await claimOne(store);
        const woken = store.waitForWork('node-a', now() + 60_000, new AbortController().signal);
        store.wakeAll();
        await woken;
        await claimOne(store);
        const removed = store.waitForWork('node-a', now() + 60_000, new AbortController().signal);
        await store.unregisterNode({
          nodeId: 'node-a',
          credentialDigest: digestOf('node-a'),
          now: now(),
        });
        await removed;

        expect(
          await store.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: now() }),
        ).toMatchObject({
          status: 'not_found',
        });
      });

      it('should wake a client waiting for a response on the answer, progress and the end of the request', async () => {
        await upsert(store, 'node-a', 'v1');
        const answered = job({ clientKey: 'c1' });
        const progressed = job({ clientKey: 'c2' });
        const cancelled = job({ clientKey: 'c3' });
        for (const input of [answered, progressed, cancelled]) {
          await enqueueOk(store, input);
          await claimOne(store);
          await take(store, input);
        }
        const never = new AbortController().signal;
        const wait = (input: JobInput) =>
          store.waitForResponse(input.clientKey as string, input.requestId, now() + 60_000, never);
        const w1 = wait(answered);
        const w2 = wait(progressed);
        const w3 = wait(cancelled);

        await complete(store, answered);
        await store.putProgress({
          nodeId: 'node-a',
          credentialDigest: digestOf('node-a'),
          clientKey: 'c2',
          requestId: progressed.requestId as string,
          envelope: envelope('p'),
          now: now(),
        });
        await store.cancel({
          clientKey: 'c3',
          requestId: cancelled.requestId as string,
          cancelToken: cancelled.cancelToken as string,
          status: 'cancelled',
          reason: 'requester_cancelled',
          now: now(),
        });
        await Promise.all([w1, w2, w3]);

        expect(await take(store, answered)).toMatchObject({ status: 'ok' });
      });

      it('should wake a legacy client waiting for its mailbox', async () => {
        await store.takeResponse({
          dialect: 'legacy',
          clientKey: 'c1',
          requestId: null,
          now: now(),
        });
        const waiting = store.waitForResponse(
          'c1',
          null,
          now() + 60_000,
          new AbortController().signal,
        );

        await store.complete({
          dialect: 'legacy',
          clientKey: 'c1',
          requestId: null,
          envelope: envelope('l'),
          now: now(),
        });
        await waiting;

        expect(
          await store.takeResponse({
            dialect: 'legacy',
            clientKey: 'c1',
            requestId: null,
            now: now(),
          }),
        ).toMatchObject({ status: 'ok' });
      });

      it('should end a response wait at its deadline, on abort and on wakeAll', async () => {
        await store.takeResponse({ dialect: 'v1', clientKey: 'c1', requestId: 'r', now: now() });
        const timed = store.waitForResponse('c1', 'r', now() + 1000, new AbortController().signal);
        const abort = new AbortController();
        const aborted = store.waitForResponse('c1', 'r', now() + 60_000, abort.signal);
        const woken = store.waitForResponse(
          'c1',
          'r',
          now() + 60_000,
          new AbortController().signal,
        );

        clock.advance(1000);
        abort.abort();
        store.wakeAll();

        await expect(Promise.all([timed, aborted, woken])).resolves.toBeDefined();
      });
    });

    // Each test below is a disagreement between the two stores, found by review or by the
    // model-based test (test/contract/state-store.model.spec.ts); the failing store was fixed.
    describe('regressions: the stores disagreed', () => {
      it('should drop a handed-out legacy answer nobody confirmed after the delivery grace, and count it until then', async () => {
        const legacy = { dialect: 'legacy', clientKey: 'c', requestId: null } as const;
        await store.complete({ ...legacy, envelope: envelope('l1'), now: now() });
        await store.takeResponse({ ...legacy, now: now() });

        clock.advance(limits.deliveryGraceMs - 1);
        await store.sweep(now());
        const within = await store.takeResponse({ ...legacy, now: now() });
        const countedWithin = (await store.stats(now())).storedResponses;
        clock.advance(1);
        await store.sweep(now());
        const after = await store.takeResponse({ ...legacy, now: now() });

        expect(within.status === 'ok' && within.envelope).toEqual(envelope('l1'));
        expect(countedWithin).toBe(1);
        expect(after).toEqual({ status: 'unknown', transitions: NONE });
        expect((await store.stats(now())).storedResponses).toBe(0);
      });

      it('should evict a node whose poll ended one lease after the sweep found it polling, whoever registered before', async () => {
        await upsert(store, 'node-l', 'legacy', { pollingUntil: now() + 25_000 });
        clock.advance(limits.legacyLeaseMs + limits.lapseGraceMs + 5000);
        await upsert(store, 'node-m', 'legacy');
        const whilePolling = await store.sweep(now());
        clock.advance(limits.legacyLeaseMs + 1);

        const swept = await store.sweep(now());

        expect(counts(whilePolling)).toEqual(NONE);
        expect(counts(swept)).toEqual({ outcomes: {}, evictions: { stale_lease: 1 } });
        expect((await store.listNodes(now())).map((n) => n.nodeId)).toEqual(['node-m']);
        expect((await store.stats(now())).nodesRegistered).toBe(1);
      });

      it('should expire simultaneous deadlines in key order and drop the smallest tied terminal record past the cap', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.v1DeadlineMs });
        await upsert(store, 'node-b', 'v1', { pollingUntil: now() + 10 * limits.v1DeadlineMs });
        // Submitted out of key order, all with the same deadline: the sweep ends them in key
        // order (as a Redis sorted set lists equal scores), and the fourth terminal record pushes
        // out the smallest of the three before it, all written at the same instant.
        const inputs = ['3', '1', '4', '2'].map((n, i) =>
          job({ jobId: `job-${n}`, clientKey: `c${n}`, nodeId: i < 2 ? 'node-a' : 'node-b' }),
        );
        for (const input of inputs) {
          await enqueueOk(store, input);
        }
        clock.advance(limits.v1DeadlineMs);

        await store.sweep(now());
        const fates = [];
        for (const n of ['1', '2', '3', '4']) {
          const input = inputs.find((i) => i.clientKey === `c${n}`) as JobInput;
          fates.push((await take(store, input)).status);
        }

        expect(limits.maxTerminalRecords).toBe(3);
        expect(fates).toEqual(['unknown', 'terminal', 'terminal', 'terminal']);
      });

      it('should report the age of a redelivered claim as the oldest queued age', async () => {
        await upsert(store, 'node-a', 'v1', { pollingUntil: now() + 10 * limits.v1DeadlineMs });
        await enqueueOk(store, job({ clientKey: 'c1' }));
        await claimOne(store);
        clock.advance(1000);
        await enqueueOk(store, job({ clientKey: 'c2' }));
        clock.advance(limits.inFlightTtlMs);

        await store.sweep(now());
        const stats = await store.stats(now());

        expect(stats).toMatchObject({ queueDepth: 2, inFlight: 0 });
        expect(stats.oldestQueuedAgeSeconds).toBe(1 + limits.inFlightTtlMs / 1000);
      });

      it('should end a legacy response wait at once while a newer answer sits beside a handed-out one', async () => {
        const legacy = (clientKey: string) =>
          ({ dialect: 'legacy', clientKey, requestId: null }) as const;
        await upsert(store, 'node-a', 'v1');
        const marker = job({ clientKey: 'c3' });
        await enqueueOk(store, marker);
        await store.complete({ ...legacy('c'), envelope: envelope('l1'), now: now() });
        await store.takeResponse({ ...legacy('c'), now: now() });
        await store.complete({ ...legacy('c'), envelope: envelope('l2'), now: now() });
        // Wake-ups are delivered in order: once the cancel's has arrived, so has the answer's, and
        // only the wait's own re-check can end the wait below.
        const never = new AbortController().signal;
        const delivered = store.waitForResponse('c3', marker.requestId, now() + 60_000, never);
        await store.cancel({
          clientKey: 'c3',
          requestId: marker.requestId as string,
          cancelToken: marker.cancelToken as string,
          status: 'cancelled',
          reason: 'requester_cancelled',
          now: now(),
        });
        await delivered;
        let woke = false;

        const waiting = store.waitForResponse('c', null, now() + 60_000, never).then(() => {
          woke = true;
        });
        await store.stats(now());
        await new Promise((resolve) => setImmediate(resolve));
        const wokeAtOnce = woke;
        store.wakeAll();
        await waiting;

        expect(wokeAtOnce).toBe(true);
      });
    });

    describe('ping', () => {
      it('should answer while the store can serve', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });
    });
  });
}
