import { Cluster, Redis } from 'ioredis';
import { createClient, createSubscriber, reconnectOnReadOnly } from './connection';

/** What the store hands ioredis for each topology (no server needed: lazyConnect). */
describe('Redis connections', () => {
  const opened: Array<{ disconnect(): void }> = [];
  afterEach(() => {
    for (const c of opened.splice(0)) {
      c.disconnect();
    }
  });

  it('should ask Sentinels for the primary, with their password and TLS, and drop the connection on +switch-master', () => {
    const client = createClient(
      {
        url: 'rediss://user:url-secret@ignored:6379/3',
        password: 'data-secret',
        topology: {
          kind: 'sentinel',
          sentinels: [
            { host: 's0', port: 26379 },
            { host: 's1', port: 26379 },
          ],
          master: 'myprimary',
          sentinelPassword: 'sentinel-secret',
          sentinelTls: true,
        },
        commandTimeoutMs: 1500,
      },
      'tokenplace-relay',
    ) as Redis;
    opened.push(client);

    expect(client).toBeInstanceOf(Redis);
    expect(client.options).toMatchObject({
      sentinels: [
        { host: 's0', port: 26379 },
        { host: 's1', port: 26379 },
      ],
      name: 'myprimary',
      role: 'master',
      sentinelPassword: 'sentinel-secret',
      sentinelTLS: {},
      enableTLSForSentinelMode: true,
      tls: {},
      username: 'user',
      password: 'data-secret',
      db: 3,
      failoverDetector: true,
      commandTimeout: 1500,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      connectionName: 'tokenplace-relay',
    });
  });

  it('should reconnect after READONLY without resending the command, and not after other errors', () => {
    expect(
      reconnectOnReadOnly(new Error("READONLY You can't write against a read only replica.")),
    ).toBe(1);
    expect(reconnectOnReadOnly(new Error('OOM command not allowed'))).toBe(false);
  });

  it('should let a password setting override the URL on one server, and run a Cluster with a node subscriber', () => {
    const single = createClient(
      {
        url: 'redis://:old@r:6379/0',
        password: 'new',
        topology: { kind: 'standalone' },
        commandTimeoutMs: 2000,
      },
      'x',
    ) as Redis;
    const cluster = createClient(
      {
        url: '',
        password: 'cluster-secret',
        topology: { kind: 'cluster', nodes: [{ host: 'c0', port: 6379 }] },
        commandTimeoutMs: 2000,
      },
      'x',
    );
    const subscriber = createSubscriber(
      {
        url: '',
        topology: { kind: 'cluster', nodes: [{ host: 'c0', port: 6379 }] },
        commandTimeoutMs: 2000,
      },
      'x-wake',
    );
    opened.push(single, cluster, subscriber);

    expect(single.options).toMatchObject({ host: 'r', port: 6379, password: 'new' });
    expect(cluster).toBeInstanceOf(Cluster);
    expect((cluster as Cluster).options.redisOptions).toMatchObject({
      password: 'cluster-secret',
      maxRetriesPerRequest: 0,
    });
    expect(subscriber).not.toBeInstanceOf(Cluster);
    expect(subscriber.status).toBe('wait');
  });
});
