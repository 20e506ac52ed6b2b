import { RelayConfig } from '../../src/config/relay-config';
import { get, helmReady, MATRIX, render, renderError, renderNotes, type K8s } from './chart.helper';
import { describeIf } from '../helpers/requirements';

type EnvVar = { name: string; value?: string; valueFrom?: unknown };

function relayEnv(docs: K8s[]): Record<string, EnvVar> {
  const deployment = docs.find((d) => d.kind === 'Deployment') as K8s;
  const env = get<EnvVar[]>(deployment, 'spec.template.spec.containers.0.env');
  return Object.fromEntries(env.map((e) => [e.name, e]));
}

/** The relay's own config loaded from the rendered literal env (what comes from Secrets or the pod left out). */
function configOf(env: Record<string, EnvVar>): RelayConfig {
  return RelayConfig.load(
    Object.fromEntries(
      Object.values(env)
        .filter((e) => e.value !== undefined)
        .map((e) => [e.name, e.value]),
    ),
  );
}

const ready = helmReady();

describeIf(ready)('Helm chart: the relay on a highly available Redis', () => {
  const sentinel = render(MATRIX['HA on Sentinel (Bitnami valkey, example values)']).docs;
  const cluster = render(MATRIX['Redis Cluster, hash-tagged prefix, two replicas']).docs;

  it('should point the relay at the Bitnami valkey Sentinels by Service name with the passwords from its Secret, and run no Valkey of its own', () => {
    const env = relayEnv(sentinel);
    const config = configOf(env);

    expect(env.TOKENPLACE_RELAY_REDIS_SENTINELS?.value).toBe(
      'valkey.tokenplace.svc.cluster.local:26379',
    );
    expect(env.TOKENPLACE_RELAY_REDIS_SENTINEL_MASTER?.value).toBe('myprimary');
    expect(env.TOKENPLACE_RELAY_REDIS_PASSWORD?.valueFrom).toEqual({
      secretKeyRef: { name: 'valkey-auth', key: 'valkey-password' },
    });
    expect(env.TOKENPLACE_RELAY_REDIS_SENTINEL_PASSWORD?.valueFrom).toEqual({
      secretKeyRef: { name: 'valkey-auth', key: 'valkey-password' },
    });
    expect(env.TOKENPLACE_RELAY_REDIS_URL).toBeUndefined();
    expect(env.TOKENPLACE_RELAY_REDIS_WAIT_REPLICAS?.value).toBe('1');
    expect(config.redisTopology).toMatchObject({
      kind: 'sentinel',
      master: 'myprimary',
      sentinels: [{ host: 'valkey.tokenplace.svc.cluster.local', port: 26379 }],
    });
    expect(config.redisKeyPrefix).toBe('{tokenplace}:');
    expect(config.redisMigrateFromPrefix).toBe('tokenplace:');
    expect(sentinel.filter((d) => d.metadata.name.endsWith('-valkey'))).toEqual([]);
  });

  it('should keep a drain to one relay pod at a time, spread the pods over machines, and let them reach the Sentinels', () => {
    const pdb = sentinel.find((d) => d.kind === 'PodDisruptionBudget') as K8s;
    const deployment = sentinel.find((d) => d.kind === 'Deployment') as K8s;
    const policy = sentinel.find((d) => d.kind === 'NetworkPolicy') as K8s;
    const egress = get<Array<{ ports?: Array<{ port: number }> }>>(policy, 'spec.egress');

    expect(get(pdb, 'spec.maxUnavailable')).toBe(1);
    expect(get(deployment, 'spec.replicas')).toBe(3);
    expect(
      get(
        deployment,
        'spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution.0.podAffinityTerm.topologyKey',
      ),
    ).toBe('kubernetes.io/hostname');
    expect(get(deployment, 'spec.template.spec.topologySpreadConstraints.0.topologyKey')).toBe(
      'kubernetes.io/hostname',
    );
    expect(egress.flatMap((e) => (e.ports ?? []).map((p) => p.port))).toEqual(
      expect.arrayContaining([6379, 26379]),
    );
  });

  it('should run on a Redis Cluster with the hash-tagged prefix, and refuse a Cluster without a tag', () => {
    const env = relayEnv(cluster);

    expect(env.TOKENPLACE_RELAY_REDIS_CLUSTER_NODES?.value).toBe(
      'redis-0.redis:6379,redis-1.redis:6379',
    );
    expect(configOf(env).redisTopology).toEqual({
      kind: 'cluster',
      nodes: [
        { host: 'redis-0.redis', port: 6379 },
        { host: 'redis-1.redis', port: 6379 },
      ],
    });
    expect(
      renderError({
        set: [
          'state.store=redis',
          'state.redis.cluster.nodes={r:6379}',
          'state.redis.keyPrefix=tokenplace:',
        ],
      }),
    ).toContain('needs a hash tag in state.redis.keyPrefix');
  });

  it('should refuse Sentinel and Cluster together, Sentinel without a master name, and a WAIT timeout past the command timeout', () => {
    const redis = ['state.store=redis', 'state.redis.sentinel.hosts={s:26379}'];

    expect(
      renderError({
        set: [...redis, 'state.redis.sentinel.masterName=m', 'state.redis.cluster.nodes={c:6379}'],
      }),
    ).toContain('exclude each other');
    expect(renderError({ set: redis })).toContain('needs state.redis.sentinel.masterName');
    expect(
      renderError({
        set: [
          ...redis,
          'state.redis.sentinel.masterName=m',
          'state.redis.waitReplicas=1',
          'state.redis.waitTimeoutMs=2000',
        ],
      }),
    ).toContain('waitTimeoutMs must be less than');
    expect(
      renderError({
        set: ['state.store=redis'],
        extra: ['--set-string', 'state.redis.keyPrefix=a{b}{c}:'],
      }),
    ).toContain('keyPrefix');
  });

  it('should say in NOTES that the chart-managed Valkey is not highly available, and what the Sentinel setup does', () => {
    const single = renderNotes(MATRIX['HA with the chart-managed Valkey (example values)']);
    const ha = renderNotes(MATRIX['HA on Sentinel (Bitnami valkey, example values)']);

    expect(single).toContain('this single Valkey is not highly available');
    expect(ha).not.toContain('not highly available');
    expect(ha).toContain(
      'Redis Sentinel valkey.tokenplace.svc.cluster.local:26379, primary "myprimary"; the relay follows failovers by itself and answers 2xx only once 1 replica(s) hold a transition.',
    );
  });

  it('should leave the migration off for a prefix of the operator’s own', () => {
    const env = relayEnv(
      render({ set: ['state.store=redis', 'state.redis.keyPrefix=tokenplace:staging:'] }).docs,
    );

    expect(env.TOKENPLACE_RELAY_REDIS_MIGRATE_FROM_PREFIX?.value).toBe('off');
    expect(configOf(env).redisMigrateFromPrefix).toBeNull();
  });
});
