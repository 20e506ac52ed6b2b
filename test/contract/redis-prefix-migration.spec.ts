import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { ManualClock } from '../../src/common/clock';
import { SCHEMA_VERSION } from '../../src/state/redis/script.registry';
import type { ClaimResult } from '../../src/state/state-store';
import { RedisStateStore } from '../../src/state/redis-state.store';
import { StoreUnavailableError } from '../../src/state/store-unavailable.error';
import {
  CapturedLog,
  checkPlacementView,
  deletePrefix,
  keysWithTtl,
  sharedRedisUrl,
} from '../helpers/redis-server';
import { describeIf } from '../helpers/requirements';
import { CAPS, CONTRACT_LIMITS, job } from './state-store.contract';

/**
 * Upgrading from the prefix without a hash tag (`tokenplace:`, the default before Cluster support)
 * to the hash-tagged one: the first replica of the new release renames the old keys at boot and
 * fences the old prefix, so nothing queued, claimed or registered is lost and an old replica still
 * running stops writing beside the moved state.
 */
const REDIS_URL = sharedRedisUrl('Redis key prefix migration');

function open(
  prefix: string,
  clock: ManualClock,
  migrateFromPrefix: string | null = null,
  log = new CapturedLog(),
): Promise<RedisStateStore> {
  return RedisStateStore.open(
    {
      url: REDIS_URL,
      keyPrefix: prefix,
      migrateFromPrefix,
      commandTimeoutMs: 2000,
      limits: CONTRACT_LIMITS,
    },
    clock,
    log,
  );
}

/** One API v1 claim by the test's node, `node-a`. */
function claimOne(store: RedisStateStore, clock: ManualClock): Promise<ClaimResult> {
  return store.claimNext({ nodeId: 'node-a', dialect: 'v1', max: 1, now: clock.now() });
}

describeIf(REDIS_URL !== '')('Redis key prefix migration at boot', () => {
  const base = `tpt:mig:${randomBytes(6).toString('hex')}`;
  const oldPrefix = `${base}:`;
  const newPrefix = `{${base}}:`;
  const nestedPrefix = `${base}:staging:`;
  let admin: Redis;

  beforeAll(() => {
    admin = new Redis(REDIS_URL);
  });

  afterAll(async () => {
    admin.disconnect();
    for (const p of [oldPrefix, newPrefix, nestedPrefix]) {
      await deletePrefix(REDIS_URL, p);
    }
  });

  it('should move queued, claimed and registered state under the new prefix once, keep TTLs, leave a nested deployment alone and fence the old prefix', async () => {
    const clock = new ManualClock();
    const old = await open(oldPrefix, clock);
    const nested = await open(nestedPrefix, clock);
    await old.upsertNode({
      nodeId: 'node-a',
      dialect: 'v1',
      capabilities: CAPS,
      newCredentialDigest: 'd',
      now: clock.now(),
    });
    const claimedJob = job();
    const queuedJob = job();
    await old.enqueue({ job: claimedJob, now: clock.now() });
    await claimOne(old, clock);
    await old.enqueue({ job: queuedJob, now: clock.now() });
    await nested.upsertNode({ nodeId: 'node-n', dialect: 'legacy', now: clock.now() });
    const before = await keysWithTtl(REDIS_URL, oldPrefix);
    const nestedBefore = await keysWithTtl(REDIS_URL, nestedPrefix);

    const log = new CapturedLog();
    const upgraded = await open(newPrefix, clock, oldPrefix, log);
    const after = await keysWithTtl(REDIS_URL, newPrefix);
    const left = await keysWithTtl(REDIS_URL, oldPrefix);
    const completed = await upgraded.complete({
      dialect: 'v1',
      clientKey: claimedJob.clientKey as string,
      requestId: claimedJob.requestId,
      envelope: claimedJob.envelope,
      now: clock.now(),
    });
    const next = await claimOne(upgraded, clock);
    const stale = old.enqueue({ job: job(), now: clock.now() });
    const again = await open(newPrefix, clock, oldPrefix, new CapturedLog());

    // Every key of the old deployment is under the new prefix with its TTL (a few ms may pass).
    const ownBefore = [...before].filter(([k]) => !`${oldPrefix}${k}`.startsWith(nestedPrefix));
    expect([...after.keys()].sort()).toEqual(ownBefore.map(([k]) => k).sort());
    for (const [key, ttl] of ownBefore) {
      const moved = after.get(key) as number;
      expect(ttl === -1 ? moved === -1 : Math.abs(moved - ttl) < 5000).toBe(true);
    }
    expect(log.entries).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        from: oldPrefix,
        to: newPrefix,
        keys: ownBefore.length,
      }),
    );
    // What is left under the old prefix: its fence, and the nested deployment untouched.
    expect([...left.keys()].filter((k) => !`${oldPrefix}${k}`.startsWith(nestedPrefix))).toEqual([
      'schema',
    ]);
    expect(await admin.get(`${oldPrefix}schema`)).toBe(`moved to ${newPrefix}`);
    expect([...(await keysWithTtl(REDIS_URL, nestedPrefix)).keys()].sort()).toEqual(
      [...nestedBefore.keys()].sort(),
    );
    expect((await nested.listNodes(clock.now())).map((n) => n.nodeId)).toEqual(['node-n']);
    // The moved state is whole: the claim is answered, the queued job is claimed next.
    expect(completed.status).toBe('stored');
    expect(next.status === 'ok' && next.jobs.map((j) => j.jobId)).toEqual([queuedJob.jobId]);
    // A replica of the old release refuses instead of writing beside it; a second boot moves nothing.
    await expect(stale).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(stale).rejects.toThrow(/moved to/);
    expect([...(await keysWithTtl(REDIS_URL, oldPrefix)).keys()].sort()).toEqual(
      [...left.keys()].sort(),
    );

    for (const s of [old, nested, upgraded, again]) {
      await s.close();
    }
  });

  it('should move state of the previous layout too, then upgrade it: the placement view rebuilt', async () => {
    const clock = new ManualClock();
    const from = `${base}:v1layout:`;
    const to = `{${base}:v1layout}:`;
    const old = await open(from, clock);
    await old.upsertNode({ nodeId: 'node-a', dialect: 'v1', capabilities: CAPS, now: clock.now() });
    const queuedJob = job();
    await old.enqueue({ job: queuedJob, now: clock.now() });
    await old.close();
    // What a release of layout /1 leaves: no placement view.
    await admin.del(`${from}pv`, `${from}pq`, `${from}pa`);
    await admin.set(`${from}schema`, 'tokenplace-relay/1');

    const upgraded = await open(to, clock, from);
    const view = await checkPlacementView(admin, to);
    const placed = await upgraded.selectNode({
      model: 'qwen3-8b-instruct',
      tier: '8k-fast',
      maxQueueDepth: 10,
      now: clock.now(),
    });
    const next = await claimOne(upgraded, clock);
    const layouts = [await admin.get(`${from}schema`), await admin.get(`${to}schema`)];
    await upgraded.close();
    await deletePrefix(REDIS_URL, from);
    await deletePrefix(REDIS_URL, to);

    expect(layouts).toEqual([`moved to ${to}`, SCHEMA_VERSION]);
    expect(view.stored).toEqual(view.rebuilt);
    expect(Object.keys(view.stored.pv ?? {})).toHaveLength(1);
    expect(view.stored.pq).toEqual({ '1': '1' });
    expect(placed.status === 'selected' && placed.selected).toMatchObject({
      nodeId: 'node-a',
      queueDepth: 1,
    });
    expect(next.status === 'ok' && next.jobs.map((j) => j.jobId)).toEqual([queuedJob.jobId]);
  });
});
