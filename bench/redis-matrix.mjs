#!/usr/bin/env node
// The cycle benchmark (bench/cycle.mjs) for both protocols against:
//   memory      one relay process, in-memory store
//   redis-1     one relay process, Redis store
//   redis-2     two relay processes sharing one Redis: every node on A, every client on B
//   redis-2x    two relay processes: half the pipelines node on A / client on B, half the reverse
//               (each pipeline split across the replicas, both replicas loaded evenly)
// Same load for every row; one table at the end. Uses REDIS_URL when set (each config on its own
// key prefix), else starts its own redis-server (REDIS_SERVER_BIN or `redis-server`) on a free port.
//
// usage: npm run build && node bench/redis-matrix.mjs [--duration 10] [--pipelines 16,64]
//          [--protocols legacy,v1] [--configs memory,redis-1,redis-2,redis-2x] [--port 5191]
//          [--appendonly no|everysec|always]   (only for the redis-server this script starts)
// redis-2x combines two cycle processes: cycles/s and requests/s add up; p50 is the mean of the
// two p50s and p99 the larger p99 (percentiles of separate runs cannot be merged exactly).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cycle, startRelay, table, cli } from './lib.mjs';

const values = cli(
  'usage: node bench/redis-matrix.mjs [--duration S] [--warmup S] [--pipelines 16,64] [--protocols legacy,v1] [--configs memory,redis-1,redis-2,redis-2x] [--port N] [--appendonly yes|no]',
  {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    pipelines: { type: 'string', default: '16,64' },
    protocols: { type: 'string', default: 'legacy,v1' },
    configs: { type: 'string', default: 'memory,redis-1,redis-2,redis-2x' },
    port: { type: 'string', default: '5191' },
    appendonly: { type: 'string', default: 'no' },
  },
);

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tp-bench-redis-'));
  const aof = values.appendonly === 'no' ? ['--appendonly', 'no'] : ['--appendonly', 'yes', '--appendfsync', values.appendonly];
  const child = spawn(process.env.REDIS_SERVER_BIN || 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, ...aof], {
    stdio: 'ignore',
  });
  const url = `redis://127.0.0.1:${port}`;
  const { Redis } = await import('ioredis');
  for (let i = 0; i < 100; i += 1) {
    const probe = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => {});
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      return {
        url,
        stop: async () => {
          child.kill('SIGKILL');
          rmSync(dir, { recursive: true, force: true });
        },
      };
    } catch {
      probe.disconnect();
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  child.kill('SIGKILL');
  throw new Error('redis-server did not start');
}

const ownRedis = process.env.REDIS_URL ? null : await startRedis();
const redisUrl = process.env.REDIS_URL || ownRedis.url;
const basePort = Number(values.port);

function redisEnv(prefix) {
  return { TOKENPLACE_RELAY_STATE_STORE: 'redis', TOKENPLACE_RELAY_REDIS_URL: redisUrl, TOKENPLACE_RELAY_REDIS_KEY_PREFIX: prefix };
}

async function withRelays(config, fn) {
  const prefix = `bench:${randomBytes(4).toString('hex')}:`;
  const relays = [];
  try {
    if (config === 'memory') {
      relays.push(await startRelay(basePort, { TOKENPLACE_RELAY_STATE_STORE: 'memory' }));
    } else if (config === 'redis-1') {
      relays.push(await startRelay(basePort, redisEnv(prefix)));
    } else {
      relays.push(await startRelay(basePort, redisEnv(prefix)), await startRelay(basePort + 1, redisEnv(prefix)));
    }
    return await fn(relays);
  } finally {
    await Promise.all(relays.map((r) => r.stop()));
  }
}

const common = { duration: values.duration, warmup: values.warmup };

async function run(config, protocol, pipelines) {
  return withRelays(config, async (relays) => {
    const [a, b] = relays;
    if (config === 'memory' || config === 'redis-1') {
      return cycle({ url: a.base, protocol, pipelines, ...common });
    }
    if (config === 'redis-2') {
      return cycle({ url: b.base, 'node-url': a.base, protocol, pipelines, ...common });
    }
    const half = Math.max(1, Math.floor(pipelines / 2));
    const [x, y] = await Promise.all([
      cycle({ url: b.base, 'node-url': a.base, protocol, pipelines: half, ...common }),
      cycle({ url: a.base, 'node-url': b.base, protocol, pipelines: pipelines - half, ...common }),
    ]);
    const mean = (k) => (x[k] === undefined ? undefined : Math.round(((x[k] + y[k]) / 2) * 100) / 100);
    const max = (k) => (x[k] === undefined ? undefined : Math.max(x[k], y[k]));
    return {
      protocol,
      pipelines,
      cycles: x.cycles + y.cycles,
      cyclesPerSecond: Math.round((x.cyclesPerSecond + y.cyclesPerSecond) * 10) / 10,
      requestsPerSecond: Math.round((x.requestsPerSecond + y.requestsPerSecond) * 10) / 10,
      p50Ms: mean('p50Ms'),
      p99Ms: max('p99Ms'),
      deliveryP50Ms: mean('deliveryP50Ms'),
      deliveryP99Ms: max('deliveryP99Ms'),
      errors: x.errors + y.errors,
      ...(x.firstErrors || y.firstErrors ? { firstErrors: [...(x.firstErrors ?? []), ...(y.firstErrors ?? [])] } : {}),
    };
  });
}

const rows = [];
try {
  for (const protocol of values.protocols.split(',')) {
    for (const pipelines of values.pipelines.split(',').map(Number)) {
      for (const config of values.configs.split(',')) {
        const result = { config, ...(await run(config, protocol, pipelines)) };
        process.stdout.write(`${JSON.stringify(result)}\n`);
        rows.push(result);
      }
    }
  }
} finally {
  await ownRedis?.stop();
}
process.stdout.write(
  `\n${table(rows, ['config', 'protocol', 'pipelines', 'cyclesPerSecond', 'requestsPerSecond', 'p50Ms', 'p99Ms', 'deliveryP50Ms', 'deliveryP99Ms', 'errors'])}\n`,
);
