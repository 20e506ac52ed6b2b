import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { eventually } from '../helpers/eventually';
import { freePort, redisServerBin } from '../helpers/redis-server';
import { MAIN_JS, startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { describeIf, requirement } from '../helpers/requirements';
import { envList, find, get, helmReady, render, type K8s } from './chart.helper';
import { fakeKey, PROTOCOL } from '../e2e/api-v1-fixtures';

/** The one node of these runs: API v1 registration wants a key shaped like an RSA one. */
const NODE = fakeKey('node');

/**
 * `state.store: redis` out of the box (issue 12 item 9): the chart's Valkey configuration, run by
 * the machine's redis-server (Valkey 8 reads the same file), and the built relay with the chart's
 * environment pointed at it. It must serve, persist to its append-only file, and answer 503 +
 * Retry-After when Valkey is full, evicting nothing. The only changes to the rendered files are the
 * loopback address, a free port and a temporary data directory.
 */
const PASSWORD = 'a1b2c3d4e5f6';
const bin = redisServerBin();
const ready =
  helmReady() &&
  requirement(
    'redis-server',
    bin !== null,
    'TOKENPLACE_REQUIRE_REDIS',
    'apt-get install redis-server',
  ) &&
  requirement(
    'built relay (dist/main.js)',
    existsSync(MAIN_JS),
    'TOKENPLACE_REQUIRE_CHART_TOOLS',
    'run npm run build first',
  );

describeIf(ready)(
  'chart-managed Valkey: the rendered config under a real server, the relay on it',
  () => {
    let store: ChildProcess | undefined;
    let relay: RelayProcess | undefined;
    let admin: Redis | undefined;
    const dir = mkdtempSync(join(tmpdir(), 'tp-valkey-'));

    afterAll(async () => {
      admin?.disconnect();
      for (const child of [relay?.child, store]) {
        if (child && child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGKILL');
          await exited;
        }
      }
      rmSync(dir, { recursive: true, force: true });
    });

    it('should serve the relay, persist to the AOF and refuse with 503 when full, evicting nothing', async () => {
      const { docs } = render({
        release: 'tokenplace',
        namespace: 'tokenplace',
        set: [
          'state.store=redis',
          'valkey.auth.existingSecret=tokenplace-valkey',
          'valkey.resources.limits.memory=64Mi',
        ],
      });
      const config = get<Record<string, string>>(
        find(docs, 'ConfigMap').find((d: K8s) => d.metadata.name === 'tokenplace-valkey'),
        'data',
      )['valkey.conf'] as string;
      const container = get<Array<{ command: string[]; args: string[] }>>(
        find(docs, 'StatefulSet')[0],
        'spec.template.spec.containers',
      )[0];
      const port = await freePort();
      const conf = join(dir, 'valkey.conf');
      writeFileSync(
        conf,
        config
          .replace(/^bind .*$/m, 'bind 127.0.0.1')
          .replace(/^port .*$/m, `port ${port}`)
          .replace(/^dir .*$/m, `dir ${dir}`),
      );
      const args = (container?.args ?? []).map((a) => a.replace('$(VALKEY_PASSWORD)', PASSWORD));
      store = spawn(bin as string, [conf, ...args], { stdio: 'ignore' });
      const client = new Redis({
        port,
        password: PASSWORD,
        maxRetriesPerRequest: 1,
        lazyConnect: true,
      });
      admin = client;
      await eventually(
        () =>
          client.connect().then(
            () => true,
            () => undefined,
          ),
        100,
        50,
      );

      const env: Record<string, string> = {};
      for (const e of envList(docs)) {
        if (e.name === 'VALKEY_PASSWORD') {
          env[e.name] = PASSWORD;
        } else if (e.value !== undefined) {
          env[e.name] = e.value;
        }
      }
      const url = (env.TOKENPLACE_RELAY_REDIS_URL ?? '')
        .replace('$(VALKEY_PASSWORD)', PASSWORD)
        .replace('tokenplace-valkey:6379', `127.0.0.1:${port}`);
      relay = await startRelayProcess({
        ...env,
        TOKENPLACE_RELAY_REDIS_URL: url,
        RELAY_HOST: '127.0.0.1',
        RELAY_PORT: '0',
        API_RATE_LIMIT: 'off',
        API_DAILY_QUOTA: 'off',
      });
      const base = relay.baseUrl;
      const health = await eventually(async () => {
        const r = await fetch(`${base}/healthz`);
        return r.status === 200 ? ((await r.json()) as { store: string }) : undefined;
      });
      const registered = await fetch(`${base}/api/v1/relay/servers/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          server_public_key: NODE,
          capabilities: { supported_model_ids: ['m'] },
        }),
      });
      const submit = (n: number): Promise<Response> =>
        fetch(`${base}/api/v1/relay/requests`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            server_public_key: NODE,
            client_public_key: `C${n}`,
            request_id: `r${n}`,
            protocol: PROTOCOL,
            version: 1,
            ciphertext: `${n}:${'y'.repeat(512 * 1024)}`,
            cipherkey: 'K',
            iv: 'I',
          }),
        });
      let accepted = 0;
      let refusal: Response | undefined;
      for (let n = 0; refusal === undefined && n < 400; n += 1) {
        const r = await submit(n);
        if (r.status === 200) {
          accepted += 1;
          await r.arrayBuffer();
        } else {
          refusal = r;
        }
      }
      const info = await admin.info('persistence');
      const memory = await admin.info('memory');
      const policy = await admin.config('GET', 'maxmemory-policy');
      const evicted = Number(/evicted_keys:(\d+)/.exec(await admin.info('stats'))?.[1]);

      expect(health.store).toBe('redis');
      expect(registered.status).toBe(200);
      expect(policy).toEqual(['maxmemory-policy', 'noeviction']);
      expect(info).toMatch(/aof_enabled:1/);
      expect(Number(/maxmemory:(\d+)/.exec(memory)?.[1])).toBe(
        Math.floor((64 * 1024 * 1024 * 60) / 100),
      );
      expect(accepted).toBeGreaterThan(10);
      expect(refusal?.status).toBe(503);
      expect(refusal?.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(evicted).toBe(0);
      expect((await fetch(`${base}/livez`)).status).toBe(200);
      expect(relay.child.exitCode).toBeNull();
    }, 60_000);
  },
);
