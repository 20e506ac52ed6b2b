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
//          [--poll with-request|held]   (API v1: when a node's poll is sent, see bench/cycle.mjs)
//          [--roots DIR,DIR [--rounds N]]   (each row per built checkout, alternated: before/after)
// redis-2x combines two cycle processes: cycles/s and requests/s add up; p50 is the mean of the
// two p50s and p99 the larger p99 (percentiles of separate runs cannot be merged exactly).
// --trace (API v1): every relay runs with bench/relay-probe.cjs timing its Redis scripts and wake-up
// messages; after each row, where a delivery's milliseconds went (enqueue answered → the node's
// replica got the pub/sub message → its claim sent → claim answered, with the commands already in
// flight on that replica's command connection), and how many scripts a cycle sends.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cycle, freePort, startRelay, table, cli } from './lib.mjs';

const values = cli(
  'usage: node bench/redis-matrix.mjs [--duration S] [--warmup S] [--pipelines 16,64] [--protocols legacy,v1] [--configs memory,redis-1,redis-2,redis-2x] [--port N] [--appendonly yes|no] [--trace] [--cpus LIST[/LIST]] [--poll with-request|held] [--roots DIR,DIR [--rounds N]]',
  {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    pipelines: { type: 'string', default: '16,64' },
    protocols: { type: 'string', default: 'legacy,v1' },
    configs: { type: 'string', default: 'memory,redis-1,redis-2,redis-2x' },
    port: { type: 'string', default: '5191' },
    appendonly: { type: 'string', default: 'no' },
    trace: { type: 'boolean', default: false },
    cpus: { type: 'string', default: '' },
    poll: { type: 'string', default: 'with-request' },
    roots: { type: 'string', default: '' },
    rounds: { type: 'string', default: '1' },
  },
);
// --roots A,B: each row once per checkout (its dist/main.js), alternated --rounds times, so a
// before/after comparison is one invocation on one Redis.
const ROOTS = values.roots ? values.roots.split(',').map((r) => resolve(r)) : [null];

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

async function withRelays(config, root, fn) {
  const prefix = `bench:${randomBytes(4).toString('hex')}:`;
  const relays = [];
  // `--cpus 0/1`: the first relay on core 0, the second on core 1 (one list for all without a '/').
  const cpuLists = values.cpus.split('/');
  let started = 0;
  const traced = values.trace ? { BENCH_PROBE_TRACE: '1' } : {};
  const script = root ? join(root, 'dist/main.js') : 'dist/main.js';
  const start = (port, env) =>
    startRelay(port, { ...env, ...traced }, [], script, { probe: values.trace, cpus: cpuLists[Math.min(started++, cpuLists.length - 1)] });
  try {
    if (config === 'memory') {
      relays.push(await start(basePort, { TOKENPLACE_RELAY_STATE_STORE: 'memory' }));
    } else if (config === 'redis-1') {
      relays.push(await start(basePort, redisEnv(prefix)));
    } else {
      relays.push(await start(basePort, redisEnv(prefix)), await start(basePort + 1, redisEnv(prefix)));
    }
    const result = await fn(relays);
    if (values.trace && config !== 'memory') {
      traces.push({ config, pipelines: result.pipelines, protocol: result.protocol, ...breakdown(await Promise.all(relays.map((r) => r.probe('trace')))) });
    }
    return result;
  } finally {
    await Promise.all(relays.map((r) => r.stop()));
  }
}

/**
 * Where a delivery's milliseconds go on Redis, from the relays' traces (one array of rows per relay):
 * for each tpEnqueue, the first claim of that node answered with a job (on whichever replica
 * the node polls), and the wake-up message for that node on that replica.
 */
function breakdown(perRelay) {
  const claims = new Map();
  const messages = new Map();
  const enqueues = [];
  const ops = new Map();
  // An empty claim's reply is the script header alone; a claim with a job is longer.
  const emptyClaim = Math.min(...perRelay.flat().filter((r) => r.op === 'tpClaimNext' && r.replyItems !== undefined).map((r) => r.replyItems));
  // One-turn delivery: a job claimed by its enqueue for a held poll reaches that poll in the
  // enqueue's reply (same replica: a longer reply) or in a hand-off message (another replica).
  const handoffs = new Map();
  perRelay.forEach((rows, replica) => {
    for (const r of rows) {
      if (r.op === 'handoff') {
        handoffs.set(r.job, { at: r.at, replica });
        continue;
      }
      if (r.op === 'message') {
        const node = r.key.startsWith('w\n') ? r.key.slice(2) : null;
        if (node !== null) (messages.get(`${replica} ${node}`) ?? messages.set(`${replica} ${node}`, []).get(`${replica} ${node}`)).push(r.at);
        continue;
      }
      ops.set(r.op, (ops.get(r.op) ?? 0) + 1);
      if (r.answered === undefined) continue;
      if (r.op === 'tpEnqueue') enqueues.push({ ...r, replica });
      // A waiting poll's claim-or-hold (a claim with a holder) claims what came before its hold.
      if (r.op === 'tpClaimNext' && r.replyItems > emptyClaim) (claims.get(r.node) ?? claims.set(r.node, []).get(r.node)).push({ ...r, replica });
    }
  });
  for (const list of claims.values()) list.sort((a, b) => a.answered - b.answered);
  const parts = { hopMs: [], wakeToClaimSentMs: [], claimRoundTripMs: [], claimInFlight: [], enqueueRoundTripMs: [], deliveryMs: [] };
  let woken = 0;
  let claimedBeforeMessage = 0;
  let sameReplica = 0;
  let handedInReply = 0;
  let handedByMessage = 0;
  let claimedInRecheck = 0;
  for (const e of enqueues) {
    if (e.replyItems > 3) {
      handedInReply += 1;
      sameReplica += 1;
      parts.enqueueRoundTripMs.push(e.answered - e.sent);
      parts.deliveryMs.push(0);
      continue;
    }
    const h = handoffs.get(e.job);
    if (h) {
      handedByMessage += 1;
      parts.enqueueRoundTripMs.push(e.answered - e.sent);
      parts.deliveryMs.push(h.at - e.answered);
      parts.hopMs.push(h.at - e.answered);
      continue;
    }
    const c = claims.get(e.node)?.find((x) => x.answered > e.sent);
    if (!c) continue;
    if (c.hold) claimedInRecheck += 1;
    parts.enqueueRoundTripMs.push(e.answered - e.sent);
    parts.claimRoundTripMs.push(c.answered - c.sent);
    parts.claimInFlight.push(c.inFlight);
    parts.deliveryMs.push(c.answered - e.answered);
    if (c.replica === e.replica) sameReplica += 1;
    const m = (messages.get(`${c.replica} ${e.node}`) ?? []).find((at) => at >= e.sent);
    if (m === undefined || c.sent < m || c.replica === e.replica) {
      claimedBeforeMessage += c.replica === e.replica ? 0 : 1;
      continue;
    }
    woken += 1;
    parts.hopMs.push(m - e.answered);
    parts.wakeToClaimSentMs.push(c.sent - m);
  }
  const out = { deliveries: parts.deliveryMs.length, handedInReply, handedByMessage, claimedInRecheck, wokenByMessage: woken, claimedBeforeMessage, sameReplica };
  for (const [k, v] of Object.entries(parts)) {
    v.sort((a, b) => a - b);
    const q = (p) => (v.length ? Math.round(v[Math.min(v.length - 1, Math.floor(p * v.length))] * 100) / 100 : null);
    out[k] = `${q(0.5)} / ${q(0.99)}`;
  }
  const cycles = Math.max(1, enqueues.length);
  out.scriptsPerCycle = Object.fromEntries([...ops].map(([k, n]) => [k, Math.round((n / cycles) * 100) / 100]));
  return out;
}

const common = { duration: values.duration, warmup: values.warmup, poll: values.poll };

async function run(config, root, protocol, pipelines) {
  return withRelays(config, root, async (relays) => {
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
      // Node keys of its own: the two runs share one store, and a shared key is one node whose
      // polls take either run's work.
      cycle({ url: a.base, 'node-url': b.base, protocol, pipelines: pipelines - half, 'key-offset': half, ...common }),
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
const traces = [];
try {
  for (const protocol of values.protocols.split(',')) {
    for (const pipelines of values.pipelines.split(',').map(Number)) {
      for (const config of values.configs.split(',')) {
        for (let round = 0; round < Number(values.rounds); round += 1) {
          for (const root of ROOTS) {
            const result = { config, ...(root ? { root } : {}), ...(await run(config, root, protocol, pipelines)) };
            process.stdout.write(`${JSON.stringify(result)}\n`);
            rows.push(result);
          }
        }
      }
    }
  }
} finally {
  await ownRedis?.stop();
}
process.stdout.write(
  `\n${table(rows, [...(values.roots ? ['root'] : []), 'config', 'protocol', 'pipelines', 'cyclesPerSecond', 'requestsPerSecond', 'p50Ms', 'p99Ms', 'deliveryP50Ms', 'deliveryP99Ms', 'errors'])}\n`,
);
if (traces.length) {
  const v1 = traces.filter((t) => t.protocol === 'v1');
  process.stdout.write(
    `\ndelivery on Redis, relay-side (p50 / p99 ms; enqueue answered → claim with the job answered, or the hand-off received (0 when in the enqueue's reply); hop: enqueue answered → message received on the node's replica; in flight: commands ahead on that replica's command connection):\n` +
      `${table(v1, ['config', 'pipelines', 'deliveries', 'handedInReply', 'handedByMessage', 'claimedInRecheck', 'wokenByMessage', 'claimedBeforeMessage', 'sameReplica', 'deliveryMs', 'hopMs', 'wakeToClaimSentMs', 'claimRoundTripMs', 'claimInFlight', 'enqueueRoundTripMs'])}\n`,
  );
  for (const t of v1) process.stdout.write(`scripts per cycle, ${t.config} ${t.pipelines}: ${JSON.stringify(t.scriptsPerCycle)}\n`);
}
