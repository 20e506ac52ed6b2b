/**
 * Model-based differential test: random command sequences drive an InMemoryStateStore and a
 * RedisStateStore in lockstep on one ManualClock; after every step both replies, `stats()`,
 * `listNodes()` and `summarizeNodes()` must be deep-equal. fast-check prints the seed and path of a failure and shrinks
 * it to a minimal sequence of commands.
 *
 *   npx jest test/contract/state-store.model.spec.ts                      (REDIS_URL needed)
 *   TOKENPLACE_MODEL_RUNS=3000 TOKENPLACE_MODEL_COMMANDS=150 npx jest ...  a long soak (~10 min)
 *   TOKENPLACE_MODEL_SEED=<seed> TOKENPLACE_MODEL_PATH=<path> npx jest ... replays a failure
 *
 *   TOKENPLACE_MODEL_TRACE=1 prints every step with its reply; TOKENPLACE_MODEL_COVERAGE=1 what
 *   the runs reached (command:status, outcomes, evictions)
 *
 * Pools are small (3 API v1 and 2 legacy node ids, 3 clients, 2 request ids and null, 4 caller
 * addresses in 3 groups), caps are one
 * or two, and time steps land 1 ms before, at and 1 ms after the end of every lifetime measured
 * from any recent command, so every cap, lease, grace, TTL and deadline edge is reachable.
 *
 * Excluded on purpose: `pickLegacyNode` is random by design in both stores, so it is compared as
 * "both null, or both a listed legacy node". Waits are compared through the predicates they
 * re-check (`hasWork`, `hasResponse`), not through timers. Out of reach: sweeps of more than one
 * Redis batch (500 due entries per index) and claim hashes large enough (> 128 entries) for Redis
 * to stop listing them in insertion order.
 */
import fc from 'fast-check';
import { Cluster, Redis } from 'ioredis';
import { ManualClock } from '../../src/common/clock';
import { InMemoryStateStore } from '../../src/state/in-memory-state.store';
import { RedisStateStore } from '../../src/state/redis-state.store';
import type { UpsertNodeCommand } from '../../src/state/state-store';
import {
  PROTOCOL_ID,
  type ContextTier,
  type Dialect,
  type Envelope,
  type NodeCapabilities,
  type StoreLimits,
  type TerminalReason,
  type TerminalStatus,
} from '../../src/state/state.types';
import { ClusterTopology } from '../helpers/redis-ha';
import {
  CapturedLog,
  checkPlacementView,
  deletePrefix,
  type PlacementViewCheck,
  randomPrefix,
  randomTaggedPrefix,
  redisServerBin,
  sharedRedisUrl,
} from '../helpers/redis-server';
import { describeIf, requirement } from '../helpers/requirements';

const REDIS_URL = sharedRedisUrl('Redis state store (model-based test)');
const available = REDIS_URL !== '';

const RUNS = Number(process.env.TOKENPLACE_MODEL_RUNS ?? '40');
/** On a Redis Cluster the same property runs with fewer sequences (a subset, for CI time). */
const CLUSTER_RUNS = Number(process.env.TOKENPLACE_MODEL_CLUSTER_RUNS ?? '10');
const bin = redisServerBin();
const clusterAvailable = requirement(
  'Redis Cluster (model-based test)',
  bin !== null,
  'TOKENPLACE_REQUIRE_REDIS',
  'install redis-server (Debian: apt-get install redis-server) or set REDIS_SERVER_BIN',
);

const MAX_COMMANDS = Number(process.env.TOKENPLACE_MODEL_COMMANDS ?? '80');
const SEED = process.env.TOKENPLACE_MODEL_SEED;
const PATH = process.env.TOKENPLACE_MODEL_PATH;

/** Caps of one or two, so every cap is reached within a few commands; lifetimes all distinct. */
const LIMITS: StoreLimits = {
  maxNodes: 4,
  maxQueuePerNode: 2,
  maxQueuedTotal: 4,
  maxQueuedBytes: 100,
  maxPendingPerClient: 2,
  maxResponsesPerClient: 1,
  // About 280 bytes an answer (answerBytes()): two answers of accepted work fit, and only one
  // below the reserve (new requests and unasked answers are refused beyond).
  maxAnswerBytes: 700,
  answerReserveBytes: 300,
  answerRetryMs: 8_000,
  maxStoredResponses: 3,
  maxTerminalRecords: 2,
  maxStreamSessions: 1,
  maxStreamChunks: 2,
  maxStreamBytes: 30,
  maxRateLimitBuckets: 2,
  maxTieCursors: 2,
  legacyLeaseMs: 20_000,
  v1LeaseMs: 30_000,
  lapseGraceMs: 10_000,
  inFlightTtlMs: 12_000,
  v1DeadlineMs: 40_000,
  legacyRequestTtlMs: 30_000,
  responseTtlMs: 25_000,
  deliveryGraceMs: 6_000,
  terminalTtlMs: 45_000,
  tombstoneTtlMs: 20_000,
  streamTtlMs: 15_000,
};

const WINDOWS = [1000, 3000];
const POLLS = [5000, 35_000];

/** Every lifetime a command can start; edge steps land just before, at and after each. */
const LIFETIMES = [
  ...new Set([
    LIMITS.legacyLeaseMs,
    LIMITS.v1LeaseMs,
    LIMITS.legacyLeaseMs + LIMITS.lapseGraceMs,
    LIMITS.v1LeaseMs + LIMITS.lapseGraceMs,
    LIMITS.inFlightTtlMs,
    LIMITS.answerRetryMs,
    LIMITS.v1DeadlineMs,
    LIMITS.legacyRequestTtlMs,
    LIMITS.responseTtlMs,
    LIMITS.deliveryGraceMs,
    LIMITS.terminalTtlMs,
    LIMITS.tombstoneTtlMs,
    LIMITS.streamTtlMs,
    ...WINDOWS,
    ...POLLS,
  ]),
].sort((a, b) => a - b);

const V1_NODES = ['v1a', 'v1b', 'v1c'];
const LEGACY_NODES = ['lg1', 'lg2'];
const NODES = [...V1_NODES, ...LEGACY_NODES];
const CLIENTS = ['c1', 'c2', 'c3'];
const REQUEST_IDS = ['r1', 'r2'];
const MODELS = ['m1', 'm2', 'm3'];
const TIERS: ContextTier[] = ['8k-fast', '64k-full'];

const CAPS: NodeCapabilities[] = [
  {
    api_version: 'v1',
    supported_model_ids: ['m1'],
    active_context_tier: '8k-fast',
    maximum_total_context_tokens: 8192,
    default_output_token_reservation: 512,
    maximum_output_tokens: 4096,
    max_concurrency: 1,
    backend_class: 'cpu',
  },
  {
    api_version: 'v1',
    supported_model_ids: ['m1', 'm2'],
    active_context_tier: '64k-full',
    maximum_total_context_tokens: 65536,
    default_output_token_reservation: 1024,
    maximum_output_tokens: 8192,
    max_concurrency: 2,
    backend_class: 'cuda',
  },
  {
    api_version: 'v1',
    supported_model_ids: ['m2'],
    active_context_tier: '8k-fast',
    maximum_total_context_tokens: 8192,
    default_output_token_reservation: 512,
    maximum_output_tokens: 4096,
    max_concurrency: 2,
    backend_class: 'cuda',
  },
];

const CANCELS: Array<[TerminalStatus, TerminalReason]> = [
  ['cancelled', 'requester_cancelled'],
  ['cancelled', 'requester_gave_up'],
  ['cancelled', 'cancelled'],
  ['expired', 'client_timeout'],
];

const digestOf = (nodeId: string): string => `dig-${nodeId}`;

/** Callers: two owners in one group, one each in two others (shares, fair share, ownership). */
const ORIGINS = [
  { owner: 'o1', group: 'g1' },
  { owner: 'o2', group: 'g1' },
  { owner: 'o3', group: 'g2' },
  { owner: 'o4', group: 'g3' },
];
const origin = fc.constantFrom<number | undefined>(undefined, 0, 0, 1, 2, 3);

function envelope(tag: string): Envelope {
  return {
    ciphertext: `ct/${tag}+=é`,
    cipherkey: `ck-${tag}`,
    iv: `iv-${tag}`,
    extra: { protocol: PROTOCOL_ID, version: 1 },
  };
}

/** A job the harness submitted, so later commands can aim at it. */
interface Submitted {
  jobId: string;
  dialect: Dialect;
  nodeId: string;
  clientKey: string;
  requestId: string | null;
  cancelToken: string | null;
  stream: boolean;
}

/** Both stores, their clock, and what the harness remembers to aim commands and time steps. */
interface World {
  clock: ManualClock;
  memory: InMemoryStateStore;
  redis: RedisStateStore;
  /** Instants at which commands ran: lifetimes are measured from them. */
  times: number[];
  /** Jobs admitted, in submission order. */
  jobs: Submitted[];
  /** Enqueue commands so far (job ids are `j<n>`). */
  submitted: number;
  /** Jobs a node claimed, most recent last (control, progress and stream chunks aim here). */
  claimed: Submitted[];
  /** The Redis twin's placement view, as stored and as rebuilt from scratch. */
  placementView: () => Promise<PlacementViewCheck>;
}

type Twin = InMemoryStateStore | RedisStateStore;

/** What the runs reached: `command:status`, outcomes and evictions (TOKENPLACE_MODEL_COVERAGE=1 prints it). */
const reached = new Map<string, number>();

function note(name: string, reply: unknown): void {
  const add = (k: string): void => {
    reached.set(k, (reached.get(k) ?? 0) + 1);
  };
  const r = typeof reply === 'object' && reply !== null ? (reply as Record<string, unknown>) : {};
  const status = typeof r.status === 'string' ? r.status : undefined;
  const plain =
    typeof reply === 'boolean' ||
    typeof reply === 'string' ||
    reply === null ||
    reply === undefined;
  const detail = [r.state, r.code, r.reason].find((d) => typeof d === 'string');
  add(`${name}:${status ?? (plain ? String(reply) : 'ok')}${detail ? `/${detail}` : ''}`);
  if (status === 'pending') {
    add(`${name}:pending at place ${String(r.queuePosition)}`);
    add(`${name}:pending ${r.estimatedWaitSeconds === null ? 'without' : 'with'} an estimate`);
    if (typeof r.estimatedWaitSeconds === 'number' && r.estimatedWaitSeconds > 0) {
      add(`${name}:pending with an estimate > 0`);
    }
  }
  const t = ('transitions' in r ? r.transitions : r) as {
    outcomes?: Record<string, number>;
    evictions?: Record<string, number>;
  };
  for (const k of Object.keys(t.outcomes ?? {})) {
    add(`outcome:${k}`);
  }
  for (const k of Object.keys(t.evictions ?? {})) {
    add(`eviction:${k}`);
  }
  if ('jobs' in r && Array.isArray(r.jobs)) {
    add(`${name}:${r.jobs.length} job(s)`);
  }
}

function remember(w: World, now: number): void {
  if (w.times[w.times.length - 1] !== now) {
    w.times.push(now);
    if (w.times.length > 40) {
      w.times.shift();
    }
  }
}

async function sameState(w: World, now: number, after: string): Promise<void> {
  const [ms, rs] = [await w.memory.stats(now), await w.redis.stats(now)];
  expect({ after, stats: rs }).toStrictEqual({ after, stats: ms });
  const [mn, rn] = [await w.memory.listNodes(now), await w.redis.listNodes(now)];
  expect({ after, nodes: rn }).toStrictEqual({ after, nodes: mn });
  const [msum, rsum] = [
    await w.memory.summarizeNodes({ limit: 2, now }),
    await w.redis.summarizeNodes({ limit: 2, now }),
  ];
  expect({ after, summary: rsum }).toStrictEqual({ after, summary: msum });
  // tpSelectNode reads only the placement view: every transition must leave it as a rebuild would.
  const view = await w.placementView();
  expect({ after, view: view.stored }).toStrictEqual({ after, view: view.rebuilt });
}

/**
 * One store operation: its arguments are resolved once against the harness's knowledge (a live
 * node, a submitted job), then it runs on both stores and the replies are compared.
 */
class Step<A, R> implements fc.AsyncCommand<World, World> {
  private resolved: A | undefined;

  constructor(
    private readonly name: string,
    private readonly spec: unknown,
    private readonly resolve: (w: World, now: number) => A | Promise<A>,
    private readonly invoke: (store: Twin, args: A, now: number) => Promise<R>,
    private readonly after?: (w: World, args: A, reply: R) => void,
  ) {}

  check(): boolean {
    return true;
  }

  async run(_model: World, w: World): Promise<void> {
    const now = w.clock.now();
    remember(w, now);
    const args = await this.resolve(w, now);
    this.resolved = args;
    const m = await this.invoke(w.memory, args, now);
    const r = await this.invoke(w.redis, args, now);
    expect({ step: this.toString(), reply: r }).toStrictEqual({ step: this.toString(), reply: m });
    this.after?.(w, args, m);
    if (process.env.TOKENPLACE_MODEL_TRACE === '1') {
      process.stderr.write(`${this.toString()} -> ${JSON.stringify(m)}\n`);
    }
    note(this.name, m);
    await sameState(w, now, this.toString());
  }

  toString(): string {
    return `${this.name}(${JSON.stringify(this.resolved ?? this.spec)})`;
  }
}

/** `pickLegacyNode` is random by design: both null, or both a listed legacy node. */
class PickLegacy implements fc.AsyncCommand<World, World> {
  check(): boolean {
    return true;
  }

  async run(_model: World, w: World): Promise<void> {
    const now = w.clock.now();
    const m = await w.memory.pickLegacyNode(now);
    const r = await w.redis.pickLegacyNode(now);
    const live = await w.memory.listNodes(now);
    const legacy = new Set(live.filter((n) => n.dialect === 'legacy').map((n) => n.nodeId));
    expect({ picked: r !== null, listed: r === null || legacy.has(r) }).toEqual({
      picked: m !== null,
      listed: m === null || legacy.has(m),
    });
    note('pickLegacyNode', m !== null);
    await sameState(w, now, this.toString());
  }

  toString(): string {
    return 'pickLegacyNode()';
  }
}

/** Moves the clock: a small step, or to just before / at / just after a lifetime's end. */
class Advance implements fc.AsyncCommand<World, World> {
  private resolved = '';

  constructor(
    private readonly step:
      { kind: 'small'; ms: number } | { kind: 'edge'; pick: number; offset: number },
    private readonly thenSweep: boolean,
  ) {}

  check(): boolean {
    return true;
  }

  async run(_model: World, w: World): Promise<void> {
    const now = w.clock.now();
    let ms: number;
    if (this.step.kind === 'small') {
      ms = this.step.ms;
    } else {
      const offset = this.step.offset;
      const edges = [...new Set(w.times.flatMap((t) => LIFETIMES.map((d) => t + d + offset)))]
        .filter((at) => at > now)
        .sort((a, b) => a - b);
      ms = edges.length === 0 ? 1 : (edges[this.step.pick % edges.length] as number) - now;
      note(`advance:edge${offset >= 0 ? '+' : ''}${offset}`, true);
    }
    this.resolved = ` = +${ms} ms`;
    w.clock.advance(ms);
    const at = w.clock.now();
    remember(w, at);
    if (this.thenSweep) {
      const m = await w.memory.sweep(at);
      const r = await w.redis.sweep(at);
      expect({ step: this.toString(), reply: r }).toStrictEqual({
        step: this.toString(),
        reply: m,
      });
      note('sweep', m);
    }
    await sameState(w, at, this.toString());
  }

  toString(): string {
    const what =
      this.step.kind === 'small'
        ? `${this.step.ms} ms`
        : `edge #${this.step.pick} ${this.step.offset >= 0 ? '+' : ''}${this.step.offset}`;
    return `advance(${what}${this.resolved}${this.thenSweep ? ', then sweep' : ''})`;
  }
}

// ------------------------------------------------------------------ targets

/** A node: the n-th live one (of a dialect) when there is one, else a pool node. */
type NodeRef =
  { live: number; dialect?: Dialect } | { jobNode: number; dialect?: Dialect } | { pool: string };

/** The n-th live node (of a dialect), the node of the n-th most recent job, or a pool node. */
async function nodeOf(w: World, now: number, ref: NodeRef): Promise<string> {
  if ('pool' in ref) {
    return ref.pool;
  }
  const pool = ref.dialect === 'legacy' ? LEGACY_NODES : ref.dialect === 'v1' ? V1_NODES : NODES;
  if ('jobNode' in ref) {
    return (
      jobOf(w, ref.jobNode, ref.dialect)?.nodeId ?? (pool[ref.jobNode % pool.length] as string)
    );
  }
  const live = (await w.memory.listNodes(now)).filter(
    (n) => ref.dialect === undefined || n.dialect === ref.dialect,
  );
  return (
    live[ref.live % Math.max(1, live.length)]?.nodeId ?? (pool[ref.live % pool.length] as string)
  );
}

const nodeRef = (dialect?: Dialect, byJob = true): fc.Arbitrary<NodeRef> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.record({ live: fc.nat(4), dialect: fc.constant(dialect) }) },
    {
      weight: byJob ? 3 : 0,
      arbitrary: fc.record({ jobNode: fc.nat(4), dialect: fc.constant(dialect) }),
    },
    fc.record({ pool: fc.constantFrom(...NODES) }),
  );

/** A job: the n-th most recent submitted one (of a dialect), or null (the command's own pick). */
function jobOf(
  w: World,
  back: number,
  dialect?: Dialect,
  from: Submitted[] = w.jobs,
): Submitted | null {
  const jobs = from.filter((j) => dialect === undefined || j.dialect === dialect);
  return jobs[jobs.length - 1 - (back % Math.max(1, jobs.length))] ?? null;
}

/** A claimed job when `back` is even and one was claimed, else any submitted one. */
function claimedOf(w: World, back: number, dialect: Dialect, stream = false): Submitted | null {
  const claimed = w.claimed.filter((j) => !stream || j.stream);
  return (back % 2 === 0 ? jobOf(w, back >> 1, dialect, claimed) : null) ?? jobOf(w, back, dialect);
}

const jobRef = fc.oneof({ weight: 4, arbitrary: fc.nat(9) }, fc.constant(null));

// ------------------------------------------------------------------ command arbitraries

const client = fc.constantFrom(...CLIENTS);
const requestId = fc.constantFrom<string | null>(...REQUEST_IDS, null);
const own = fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, fc.constant(false));

/** The demo node's flag: mostly absent (every real node), sometimes set or cleared. */
const fallbackFlag = fc.constantFrom<boolean | undefined>(
  undefined,
  undefined,
  undefined,
  false,
  true,
);

/** A control credential shown on register or poll (today's nodes show none). */
const shown = fc.constantFrom<'own' | 'other' | undefined>(undefined, undefined, 'own', 'other');
/** Open registration's per-group share, or none (a node token is set). */
const share = fc.constantFrom<number | undefined>(undefined, 2, 3, 3);

/** `/sink`, `/servers/register` and `/servers/poll` (renewals aim at live nodes). */
const upsert = fc
  .oneof(
    fc.record({
      node: fc.oneof(
        nodeRef('legacy', false),
        fc.record({ pool: fc.constantFrom(...LEGACY_NODES, ...V1_NODES) }),
      ),
      dialect: fc.constant<Dialect>('legacy'),
      poll: fc.constantFrom<number | undefined>(undefined, ...POLLS),
      fallback: fallbackFlag,
      origin,
      shown: fc.constant<'own' | 'other' | undefined>(undefined),
      share,
    }),
    {
      weight: 2,
      arbitrary: fc.record({
        node: fc.record({ pool: fc.constantFrom(...V1_NODES, ...V1_NODES, ...LEGACY_NODES) }),
        dialect: fc.constant<Dialect>('v1'),
        caps: fc.constantFrom<number | null>(0, 1, 2, null),
        digest: fc.constantFrom<string | undefined>('own', 'own', 'other', undefined),
        fallback: fallbackFlag,
        origin,
        shown,
        share,
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        node: nodeRef('v1', false),
        dialect: fc.constant<Dialect>('v1'),
        caps: fc.constantFrom<number | undefined>(undefined, undefined, 0, 1, 2),
        requireExisting: fc.constant(true),
        poll: fc.constantFrom<number | undefined>(undefined, ...POLLS),
        fallback: fallbackFlag,
        origin,
        shown,
      }),
    },
  )
  .map(
    (a) =>
      new Step(
        'upsertNode',
        a,
        async (w, now): Promise<UpsertNodeCommand> => {
          const nodeId = await nodeOf(w, now, a.node);
          const cmd: UpsertNodeCommand = { nodeId, dialect: a.dialect, now };
          if (a.origin !== undefined) {
            cmd.origin = ORIGINS[a.origin];
          }
          if (a.shown !== undefined) {
            cmd.presentedDigest = a.shown === 'own' ? digestOf(nodeId) : 'dig-other';
          }
          if ('share' in a && a.share !== undefined) {
            cmd.maxPerGroup = a.share;
          }
          if ('caps' in a && a.caps !== undefined) {
            cmd.capabilities = a.caps === null ? null : CAPS[a.caps];
          }
          if ('digest' in a && a.digest !== undefined) {
            cmd.newCredentialDigest = a.digest === 'own' ? digestOf(nodeId) : 'dig-other';
          }
          if ('requireExisting' in a) {
            cmd.requireExisting = a.requireExisting;
          }
          if ('poll' in a && a.poll !== undefined) {
            cmd.pollingUntil = now + a.poll;
          }
          if (a.fallback !== undefined) {
            cmd.fallback = a.fallback;
          }
          return cmd;
        },
        (s, cmd) => s.upsertNode(cmd),
      ),
  );

const unregister = fc
  .record({
    node: nodeRef(),
    digest: fc.constantFrom<'own' | 'other' | null>('own', 'own', 'other', null),
    force: fc.boolean(),
  })
  .map(
    (a) =>
      new Step(
        'unregisterNode',
        a,
        async (w, now) => {
          const nodeId = await nodeOf(w, now, a.node);
          const digest =
            a.digest === null ? null : a.digest === 'own' ? digestOf(nodeId) : 'dig-other';
          return { nodeId, credentialDigest: digest, force: a.force };
        },
        (s, args, now) => s.unregisterNode({ ...args, now }),
      ),
  );

const select = fc
  .record({
    model: fc.constantFrom(...MODELS),
    tier: fc.constantFrom(...TIERS),
    maxQueueDepth: fc.constantFrom(1, 2, 5),
    atCapacity: fc.constantFrom<'refuse' | 'least_loaded' | undefined>(
      undefined,
      'refuse',
      'least_loaded',
    ),
    exclude: fc.subarray(V1_NODES, { maxLength: 2 }),
  })
  .map(
    (a) =>
      new Step(
        'selectNode',
        a,
        () => a,
        (s, args, now) => s.selectNode({ ...args, now }),
      ),
  );

const enqueue = fc
  .oneof(
    {
      weight: 2,
      arbitrary: fc.record({
        dialect: fc.constant<Dialect>('v1'),
        node: nodeRef('v1', false),
        clientKey: client,
        requestId,
        cancelToken: fc.constantFrom<string | null>('tk', 'tk', 'tk2', null),
        stream: fc.constant(false),
        bytes: fc.constantFrom(10, 40),
      }),
    },
    fc.record({
      dialect: fc.constant<Dialect>('legacy'),
      node: nodeRef('legacy', false),
      clientKey: client,
      requestId: fc.constant(null),
      cancelToken: fc.constant(null),
      stream: fc.boolean(),
      bytes: fc.constantFrom(10, 40),
    }),
  )
  .map(
    ({ node, ...a }) =>
      new Step(
        'enqueue',
        { node, ...a },
        async (w, now): Promise<Submitted & { bytes: number }> => ({
          ...a,
          jobId: `j${(w.submitted += 1)}`,
          nodeId: await nodeOf(w, now, node),
        }),
        (s, job, now) => s.enqueue({ job: { ...job, envelope: envelope(job.jobId) }, now }),
        (w, job, reply) => {
          if (reply.status === 'queued') {
            w.jobs.push(job);
          }
        },
      ),
  );

const claim = fc
  .oneof(
    fc.record({ node: nodeRef('v1'), dialect: fc.constant<Dialect>('v1'), max: fc.constant(1) }),
    fc.record({
      node: nodeRef('legacy'),
      dialect: fc.constant<Dialect>('legacy'),
      max: fc.constantFrom(1, 2, 3),
    }),
  )
  .map(
    ({ node, ...a }) =>
      new Step(
        'claimNext',
        { node, ...a },
        async (w, now) => ({ ...a, nodeId: await nodeOf(w, now, node) }),
        (s, args, now) => s.claimNext({ ...args, now }),
        (w, _args, reply) => {
          for (const job of reply.status === 'ok' ? reply.jobs : []) {
            const submitted = w.jobs.find((j) => j.jobId === job.jobId);
            if (submitted) {
              w.claimed.push(submitted);
            }
          }
        },
      ),
  );

const control = fc.record({ job: jobRef, node: nodeRef('v1'), own, acknowledge: fc.boolean() }).map(
  (a) =>
    new Step(
      'control',
      a,
      async (w, now) => {
        const j = a.job === null ? null : claimedOf(w, a.job, 'v1');
        const nodeId = j?.nodeId ?? (await nodeOf(w, now, a.node));
        return {
          nodeId,
          requestId: j?.requestId ?? 'r9',
          credentialDigest: a.own ? digestOf(nodeId) : 'dig-other',
          acknowledge: a.acknowledge,
        };
      },
      (s, args, now) => s.control({ ...args, now }),
    ),
);

/** (dialect, client, request id) of a submitted job, or of the pool. */
const answerTarget = fc.record({
  job: jobRef,
  dialect: fc.constantFrom<Dialect>('v1', 'legacy'),
  clientKey: client,
  requestId,
});

function targetOf(
  w: World,
  a: { job: number | null; dialect: Dialect; clientKey: string; requestId: string | null },
): { dialect: Dialect; clientKey: string; requestId: string | null } {
  const j = a.job === null ? null : jobOf(w, a.job);
  if (j) {
    return { dialect: j.dialect, clientKey: j.clientKey, requestId: j.requestId };
  }
  return {
    dialect: a.dialect,
    clientKey: a.clientKey,
    requestId: a.dialect === 'v1' ? a.requestId : null,
  };
}

const complete = fc
  .record({
    to: answerTarget,
    tag: fc.nat(9),
    answerer: fc.constantFrom<string | undefined>(undefined, 'o1', 'o1', 'o3'),
  })
  .map(
    (a) =>
      new Step(
        'complete',
        a,
        (w) => ({ ...targetOf(w, a.to), tag: `a${a.tag}`, answerer: a.answerer }),
        (s, { tag, ...args }, now) => s.complete({ ...args, envelope: envelope(tag), now }),
      ),
  );

const markKeyUnusable = nodeRef('v1').map(
  (ref) =>
    new Step(
      'markKeyUnusable',
      ref,
      (w, now) => nodeOf(w, now, ref),
      (s, nodeId, now) => s.markKeyUnusable(nodeId, now),
    ),
);

/**
 * A node answering API v1 work it claimed, which `complete` reaches only by chance: it gives nodes
 * a service time, so pending retrieves carry a place in line and an estimate.
 */
const answerClaimed = fc.record({ back: fc.nat(3), tag: fc.nat(9) }).map(
  (a) =>
    new Step(
      'complete',
      a,
      (w) => {
        const j = claimedOf(w, a.back * 2, 'v1');
        const to = j
          ? { dialect: j.dialect, clientKey: j.clientKey, requestId: j.requestId }
          : {
              dialect: 'v1' as const,
              clientKey: CLIENTS[0] as string,
              requestId: REQUEST_IDS[0] as string,
            };
        return { ...to, tag: `a${a.tag}` };
      },
      (s, { tag, ...args }, now) => s.complete({ ...args, envelope: envelope(tag), now }),
    ),
);

const take = answerTarget.map(
  (a) =>
    new Step(
      'takeResponse',
      a,
      (w) => targetOf(w, a),
      (s, args, now) => s.takeResponse({ ...args, now }),
    ),
);

/** A retrieve of one of the last three submitted requests, most likely still waiting. */
const takeRecent = fc.nat(2).map(
  (back) =>
    new Step(
      'takeResponse',
      { back },
      (w) => {
        const j = jobOf(w, back);
        return j
          ? { dialect: j.dialect, clientKey: j.clientKey, requestId: j.requestId }
          : { dialect: 'v1' as const, clientKey: CLIENTS[0] as string, requestId: null };
      },
      (s, args, now) => s.takeResponse({ ...args, now }),
    ),
);

const confirm = answerTarget.map(
  (a) =>
    new Step(
      'confirmDelivery',
      a,
      (w) => targetOf(w, a),
      (s, args, now) => s.confirmDelivery({ ...args, now }),
    ),
);

const cancel = fc
  .record({
    job: jobRef,
    clientKey: client,
    requestId: fc.constantFrom(...REQUEST_IDS),
    own,
    how: fc.constantFrom(...CANCELS),
  })
  .map(
    (a) =>
      new Step(
        'cancel',
        a,
        (w) => {
          const j = a.job === null ? null : jobOf(w, a.job, 'v1');
          return {
            clientKey: j?.clientKey ?? a.clientKey,
            requestId: j?.requestId ?? a.requestId,
            cancelToken: a.own ? (j?.cancelToken ?? 'tk') : 'not-tk',
            status: a.how[0],
            reason: a.how[1],
          };
        },
        (s, args, now) => s.cancel({ ...args, now }),
      ),
  );

const progress = fc.record({ job: jobRef, node: nodeRef('v1'), own, clientKey: client }).map(
  (a) =>
    new Step(
      'putProgress',
      a,
      async (w, now) => {
        const j = a.job === null ? null : claimedOf(w, a.job, 'v1');
        const nodeId = j?.nodeId ?? (await nodeOf(w, now, a.node));
        return {
          nodeId,
          credentialDigest: a.own ? digestOf(nodeId) : 'dig-other',
          clientKey: j?.clientKey ?? a.clientKey,
          requestId: j?.requestId ?? 'r1',
        };
      },
      (s, args, now) => s.putProgress({ ...args, envelope: envelope('p'), now }),
    ),
);

const appendChunk = fc
  .record({ job: jobRef, chunkBytes: fc.constantFrom(5, 20), final: fc.boolean() })
  .map(
    (a) =>
      new Step(
        'appendStreamChunk',
        a,
        (w) => ({
          sessionId:
            (a.job === null ? null : claimedOf(w, a.job, 'legacy', true))?.jobId ??
            'no-such-session',
          chunkBytes: a.chunkBytes,
          final: a.final,
        }),
        (s, args, now) =>
          s.appendStreamChunk({
            ...args,
            chunk: JSON.stringify({ text: 'x', bytes: args.chunkBytes }),
            now,
          }),
      ),
  );

const takeStream = fc.record({ job: jobRef, clientKey: client }).map(
  (a) =>
    new Step(
      'takeStream',
      a,
      (w) => (a.job === null ? null : jobOf(w, a.job, 'legacy'))?.clientKey ?? a.clientKey,
      (s, clientKey, now) => s.takeStream(clientKey, now),
    ),
);

const rateLimit = fc
  .record({
    key: fc.constantFrom('k1', 'k2', 'k3'),
    limit: fc.constantFrom(1, 2),
    windowMs: fc.constantFrom(...WINDOWS),
    refund: fc.constantFrom(false, false, true),
  })
  .map(
    (a) =>
      new Step(
        'hitRateLimit',
        a,
        () => a,
        (s, args, now) => s.hitRateLimit({ ...args, now }),
      ),
  );

const sweep = fc.constant(
  new Step(
    'sweep',
    {},
    () => null,
    (s, _args, now) => s.sweep(now),
  ),
);

const hasWork = nodeRef().map(
  (ref) =>
    new Step(
      'hasWork',
      ref,
      (w, now) => nodeOf(w, now, ref),
      (s, nodeId, now) => s.hasWork(nodeId, now),
    ),
);

const hasResponse = answerTarget.map(
  (a) =>
    new Step(
      'hasResponse',
      a,
      (w) => targetOf(w, a),
      (s, args, now) => s.hasResponse(args.clientKey, args.requestId, now),
    ),
);

const advance = fc
  .tuple(
    fc.oneof(
      fc.record({ kind: fc.constant<'small'>('small'), ms: fc.constantFrom(1, 999, 1000) }),
      {
        weight: 2,
        arbitrary: fc.record({
          kind: fc.constant<'edge'>('edge'),
          pick: fc.nat(12),
          offset: fc.constantFrom(-1, 0, 1),
        }),
      },
    ),
    fc.constantFrom(true, false, false),
  )
  .map(([step, thenSweep]) => new Advance(step, thenSweep));

type AnyCommand = fc.AsyncCommand<World, World>;

const commands: Array<fc.Arbitrary<AnyCommand>> = [
  fc.oneof(
    { weight: 8, arbitrary: upsert },
    { weight: 1, arbitrary: unregister },
    { weight: 1, arbitrary: markKeyUnusable },
    { weight: 2, arbitrary: select },
    { weight: 1, arbitrary: fc.constant(new PickLegacy()) },
    { weight: 7, arbitrary: enqueue },
    { weight: 7, arbitrary: claim },
    { weight: 4, arbitrary: control },
    { weight: 5, arbitrary: complete },
    { weight: 3, arbitrary: answerClaimed },
    { weight: 4, arbitrary: take },
    { weight: 3, arbitrary: takeRecent },
    { weight: 2, arbitrary: confirm },
    { weight: 2, arbitrary: cancel },
    { weight: 3, arbitrary: progress },
    { weight: 3, arbitrary: appendChunk },
    { weight: 1, arbitrary: takeStream },
    { weight: 2, arbitrary: rateLimit },
    { weight: 2, arbitrary: sweep },
    { weight: 1, arbitrary: hasWork },
    { weight: 1, arbitrary: hasResponse },
    { weight: 5, arbitrary: advance },
  ),
];

/** How the Redis twin of one run is opened and cleaned. */
interface RedisTwinFactory {
  open(clock: ManualClock): Promise<{
    store: RedisStateStore;
    placementView: () => Promise<PlacementViewCheck>;
    dispose: () => Promise<void>;
  }>;
}

/** The property: every command sequence gives the same replies, stats and node lists. */
async function lockstep(factory: RedisTwinFactory, runs: number): Promise<void> {
  await fc.assert(
    fc.asyncProperty(
      fc.commands(commands, { maxCommands: MAX_COMMANDS, size: 'max' }),
      async (cmds) => {
        const clock = new ManualClock();
        const memory = new InMemoryStateStore(LIMITS, clock);
        const { store: redis, placementView, dispose } = await factory.open(clock);
        const world: World = {
          clock,
          memory,
          redis,
          times: [clock.now()],
          jobs: [],
          claimed: [],
          submitted: 0,
          placementView,
        };
        try {
          await fc.asyncModelRun(() => ({ model: world, real: world }), cmds);
        } finally {
          await memory.close();
          await redis.close();
          await dispose();
        }
      },
    ),
    {
      numRuns: runs,
      ...(SEED !== undefined ? { seed: Number(SEED) } : {}),
      ...(PATH !== undefined ? { path: PATH } : {}),
    },
  );
}

describeIf(clusterAvailable)(
  `InMemoryStateStore and RedisStateStore on a Redis Cluster in lockstep (model-based, ${CLUSTER_RUNS} runs)`,
  () => {
    let cluster: ClusterTopology;
    beforeAll(async () => {
      cluster = await ClusterTopology.start(bin as string);
    }, 60_000);
    afterAll(async () => {
      await cluster.stop();
    });
    it(
      'should give the same replies, stats and node lists on a 3-primary cluster as in memory',
      async () => {
        await lockstep(
          {
            open: async (clock) => {
              const prefix = randomTaggedPrefix('model');
              const admin = new Cluster(cluster.endpoints);
              return {
                store: await RedisStateStore.open(
                  {
                    url: '',
                    topology: { kind: 'cluster', nodes: cluster.endpoints },
                    keyPrefix: prefix,
                    commandTimeoutMs: 10_000,
                    limits: LIMITS,
                  },
                  clock,
                  new CapturedLog(),
                ),
                placementView: () => checkPlacementView(admin, prefix),
                // The cluster is this suite's own and goes away with it.
                dispose: async () => {
                  admin.disconnect();
                  await Promise.resolve();
                },
              };
            },
          },
          CLUSTER_RUNS,
        );
      },
      Math.max(300_000, CLUSTER_RUNS * MAX_COMMANDS * 100),
    );
  },
);

describeIf(available)('InMemoryStateStore and RedisStateStore in lockstep (model-based)', () => {
  it(
    'should give the same replies, stats and node lists for every command sequence',
    async () => {
      await lockstep(
        {
          open: async (clock) => {
            const prefix = randomPrefix('model');
            const store = await RedisStateStore.open(
              { url: REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 10_000, limits: LIMITS },
              clock,
              new CapturedLog(),
            );
            const admin = new Redis(REDIS_URL);
            return {
              store,
              placementView: () => checkPlacementView(admin, prefix),
              dispose: async () => {
                admin.disconnect();
                await deletePrefix(REDIS_URL, prefix);
              },
            };
          },
        },
        RUNS,
      );
    },
    Math.max(300_000, RUNS * MAX_COMMANDS * 100),
  );

  afterAll(() => {
    if (process.env.TOKENPLACE_MODEL_COVERAGE === '1') {
      const lines = [...reached].sort(([a], [b]) => a.localeCompare(b));
      process.stderr.write(
        `model-based test reached:\n${lines.map(([k, n]) => `  ${k} ${n}`).join('\n')}\n`,
      );
    }
  });
});
