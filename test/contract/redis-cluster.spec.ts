import { ManualClock } from '../../src/common/clock';
import { RedisStateStore } from '../../src/state/redis-state.store';
import { ClusterTopology } from '../helpers/redis-ha';
import { CapturedLog, randomTaggedPrefix, redisServerBin } from '../helpers/redis-server';
import { describeIf, requirement } from '../helpers/requirements';
import { CAPS, CONTRACT_LIMITS, job, runStateStoreContract } from './state-store.contract';

/**
 * The whole StateStore contract on a Redis Cluster (three primaries, each with a replica, real
 * processes): every script declares the layout key under the hash-tagged prefix, so the Cluster
 * routes it to the one slot where all of the deployment's keys live.
 */
const bin = redisServerBin();
const available = requirement(
  'Redis Cluster',
  bin !== null,
  'TOKENPLACE_REQUIRE_REDIS',
  'install redis-server (Debian: apt-get install redis-server) or set REDIS_SERVER_BIN',
);

let cluster: ClusterTopology | null = null;

async function clusterOnce(): Promise<ClusterTopology> {
  cluster ??= await ClusterTopology.start(bin as string);
  return cluster;
}

afterAll(async () => {
  await cluster?.stop();
});

function openOn(topology: ClusterTopology, prefix: string, clock: ManualClock) {
  return RedisStateStore.open(
    {
      url: '',
      topology: { kind: 'cluster', nodes: topology.endpoints },
      keyPrefix: prefix,
      commandTimeoutMs: 5000,
      limits: CONTRACT_LIMITS,
    },
    clock,
    new CapturedLog(),
  );
}

if (available) {
  runStateStoreContract('RedisStateStore on a Redis Cluster', async (limits, clock) => {
    const topology = await clusterOnce();
    const store = await RedisStateStore.open(
      {
        url: '',
        topology: { kind: 'cluster', nodes: topology.endpoints },
        keyPrefix: randomTaggedPrefix('cluster'),
        commandTimeoutMs: 5000,
        limits,
      },
      clock,
      new CapturedLog(),
    );
    return { store };
  });
}

describeIf(available)('RedisStateStore on a Redis Cluster', () => {
  it('should keep two deployments with different hash tags apart, each on its own slot', async () => {
    const topology = await clusterOnce();
    const clock = new ManualClock();
    const a = await openOn(topology, randomTaggedPrefix('a'), clock);
    const b = await openOn(topology, randomTaggedPrefix('b'), clock);
    try {
      await a.upsertNode({ nodeId: 'node-a', dialect: 'v1', capabilities: CAPS, now: clock.now() });
      const first = job();
      const queued = await a.enqueue({ job: first, now: clock.now() });
      const onB = await b.enqueue({ job: job(), now: clock.now() });
      const claimed = await a.claimNext({
        nodeId: 'node-a',
        dialect: 'v1',
        max: 1,
        now: clock.now(),
      });

      expect(queued.status).toBe('queued');
      expect(onB.status).toBe('node_not_found');
      expect(claimed.status === 'ok' && claimed.jobs.map((j) => j.jobId)).toEqual([first.jobId]);
      await expect(a.ping()).resolves.toBeUndefined();
    } finally {
      await a.close();
      await b.close();
    }
  });
});
