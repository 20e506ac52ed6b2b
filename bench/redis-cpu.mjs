#!/usr/bin/env node
// Redis CPU per relay cycle (docs/scaling.md): a fixed load through several relay processes on one
// Redis, for each protocol and the gateway, with the Redis server's own CPU (INFO cpu, main thread)
// and its commandstats read before and after. CPU-seconds per cycle hardly depend on how busy the
// machine is, unlike throughput, so the figures carry over to a quiet machine or a bigger one.
//
//   legacy   /faucet -> /sink -> /source -> /retrieve                     (bench/cycle.mjs)
//   v1       held /servers/poll + /requests -> /responses -> /retrieve     (bench/cycle.mjs)
//   gateway  POST /v1/chat/completions answered by a node that replies at once (this file)
//
// Nodes talk to relay 1, clients to relay 2 (and so on round the ring with --relays N), so every
// cycle crosses replicas through Redis. Starts its own redis-server (REDIS_SERVER_BIN or
// redis-server) on a free port; --appendonly everysec adds the AOF's cost.
//
// usage: npm run build && node bench/redis-cpu.mjs [--relays 2] [--duration 10] [--pipelines 16]
//          [--protocols legacy,v1,gateway] [--appendonly no|everysec|always]
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cli, cycle, freePort, peerLibrary, relaySend, request, startRedis as startRedisServer, startRelay, table } from './lib.mjs';

const values = cli(
  'usage: node bench/redis-cpu.mjs [--relays N] [--duration S] [--pipelines N] [--protocols legacy,v1,gateway] [--appendonly no|everysec|always] [--port N (0: free ports)] [--json]',
  {
    relays: { type: 'string', default: '2' },
    duration: { type: 'string', default: '10' },
    pipelines: { type: 'string', default: '16' },
    protocols: { type: 'string', default: 'legacy,v1,gateway' },
    appendonly: { type: 'string', default: 'no' },
    port: { type: 'string', default: '0' },
    json: { type: 'boolean', default: false },
  },
);

const CLK_TCK = 100;
const IDLE_MS = 3000;
/** The bench's compute nodes speak through the peer library (dist/peer/). */
const { newIdentity, V1Node } = peerLibrary();
const OK_ANSWER = { message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop', usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } };
const CAPS = { supported_model_ids: ['qwen3-8b-instruct'], max_concurrency: 64 };

const startRedis = () => startRedisServer(values.appendonly);

/** Redis main-thread CPU seconds and per-command calls/usec. */
async function redisSample(admin) {
  const cpu = await admin.info('cpu');
  const stats = await admin.info('commandstats');
  const num = (name) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? NaN);
  const mainUser = num('used_cpu_user_main_thread');
  const mainSys = num('used_cpu_sys_main_thread');
  const commands = {};
  for (const m of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    commands[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  return {
    cpu: Number.isFinite(mainUser) ? mainUser + mainSys : num('used_cpu_user') + num('used_cpu_sys'),
    commands,
  };
}

/** CPU seconds a process has used (Linux /proc). */
function processCpu(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** Gateway load: `pipelines` chats at a time on the client relay, answered at once by nodes on the node relay. */
async function gatewayLoad(nodeBase, clientBase, pipelines, durationMs) {
  const stop = { done: false };
  const nodes = [];
  for (let i = 0; i < Math.max(1, Math.ceil(pipelines / 4)); i += 1) {
    const node = new V1Node(relaySend(nodeBase), newIdentity());
    const reg = await node.register(CAPS);
    if (reg.status !== 200) {
      throw new Error(`register ${reg.status}`);
    }
    // Several polls per node: each poll carries one chat.
    for (let k = 0; k < 4; k += 1) {
      nodes.push(
        (async () => {
          while (!stop.done) {
            const res = await node.poll(CAPS).catch(() => null);
            if (!res || res.status !== 200 || typeof res.body.chat_history !== 'string') {
              continue;
            }
            // Answered from the outer fields alone (no decryption): the bench's CPU stays small.
            const work = { requestId: res.body.request_id, clientKey: res.body.client_public_key };
            await node.respond(work, OK_ANSWER, 'oaep').catch(() => null);
          }
        })(),
      );
    }
  }
  let cycles = 0;
  let errors = 0;
  const started = performance.now();
  const clients = Array.from({ length: pipelines }, async () => {
    while (performance.now() - started < durationMs) {
      const res = await request(clientBase, 'POST', '/v1/chat/completions', { model: 'qwen3-8b-instruct', messages: [{ role: 'user', content: 'hi' }] }).catch(() => ({ status: 0 }));
      if (res.status === 200) {
        cycles += 1;
      } else {
        errors += 1;
      }
    }
  });
  await Promise.all(clients);
  const elapsed = (performance.now() - started) / 1000;
  stop.done = true;
  return { cycles, errors, cyclesPerSecond: Math.round((cycles / elapsed) * 10) / 10, stop: () => Promise.race([Promise.all(nodes), new Promise((r) => setTimeout(r, 2000))]) };
}

const redis = await startRedis();
const relayCount = Number(values.relays);
const pipelines = Number(values.pipelines);
const durationMs = Number(values.duration) * 1000;
const rows = [];
try {
  for (const protocol of values.protocols.split(',')) {
    const prefix = `{bench:${randomBytes(4).toString('hex')}}:`;
    const env = { TOKENPLACE_RELAY_STATE_STORE: 'redis', TOKENPLACE_RELAY_REDIS_URL: redis.url, TOKENPLACE_RELAY_REDIS_KEY_PREFIX: prefix, TOKENPLACE_GATEWAY_MAX_CONCURRENT: '4096' };
    const relays = [];
    for (let i = 0; i < relayCount; i += 1) {
      // Free ports, not --port + i: a relay that cannot bind exits, and another process answering
      // on that port would be measured instead.
      relays.push(await startRelay(values.port === '0' ? await freePort() : Number(values.port) + i, env));
    }
    try {
      const pairs = relays.map((r, i) => ({ node: r.base, client: relays[(i + 1) % relays.length].base }));
      const perPair = Math.max(1, Math.round(pipelines / pairs.length));
      // What Redis spends with the relays up and no load (cron, sweeps, idle long-polls), per second:
      // subtracted below so a slow run does not inflate the per-cycle figure.
      const idle0 = await redisSample(redis.admin);
      await new Promise((r) => setTimeout(r, IDLE_MS));
      const idlePerSecond = ((await redisSample(redis.admin)).cpu - idle0.cpu) / (IDLE_MS / 1000);
      await redis.admin.config('RESETSTAT');
      const before = await redisSample(redis.admin);
      const relayBefore = relays.map((r) => processCpu(r.child.pid));
      const t0 = performance.now();
      let results;
      if (protocol === 'gateway') {
        const runs = await Promise.all(pairs.map((p) => gatewayLoad(p.node, p.client, perPair, durationMs)));
        results = runs;
        await Promise.all(runs.map((r) => r.stop()));
      } else {
        // Each pair's nodes get keys of their own: pairs sharing a key would be one node on the
        // shared store, and one pair's poll would take the other's work (counted as errors).
        results = await Promise.all(
          pairs.map((p, i) => cycle({ url: p.client, 'node-url': p.node, protocol, pipelines: perPair, duration: values.duration, warmup: 0, 'key-offset': i * perPair })),
        );
      }
      const seconds = (performance.now() - t0) / 1000;
      const after = await redisSample(redis.admin);
      const relayCpu = relays.reduce((sum, r, i) => sum + processCpu(r.child.pid) - relayBefore[i], 0);
      const cycles = results.reduce((s, r) => s + r.cycles, 0);
      const errors = results.reduce((s, r) => s + r.errors, 0);
      for (const [i, r] of results.entries()) {
        if (r.firstErrors?.length) process.stderr.write(`${protocol} pair ${i} (nodes on ${pairs[i].node}, clients on ${pairs[i].client}): first errors: ${JSON.stringify(r.firstErrors)}\n`);
      }
      const redisCpu = Math.max(0, after.cpu - before.cpu - idlePerSecond * seconds);
      let calls = 0;
      let scripts = 0;
      const byCommand = [];
      for (const [name, c] of Object.entries(after.commands)) {
        const d = { calls: c.calls - (before.commands[name]?.calls ?? 0), usec: c.usec - (before.commands[name]?.usec ?? 0) };
        if (name === 'config' || name === 'info') {
          continue;
        }
        calls += d.calls;
        if (name === 'evalsha' || name === 'eval') {
          scripts += d.calls;
        }
        byCommand.push([name, d]);
      }
      byCommand.sort((a, b) => b[1].usec - a[1].usec);
      const usPerCycle = (redisCpu * 1e6) / cycles;
      rows.push({
        protocol,
        relays: relayCount,
        pipelines: perPair * pairs.length,
        cycles,
        cyclesPerSecond: Math.round((cycles / seconds) * 10) / 10,
        errors,
        redisCpuSeconds: Math.round(redisCpu * 1000) / 1000,
        redisIdleCpuPerSecond: Math.round(idlePerSecond * 1000) / 1000,
        redisUsPerCycle: Math.round(usPerCycle),
        commandsPerCycle: Math.round((calls / cycles) * 10) / 10,
        scriptsPerCycle: Math.round((scripts / cycles) * 10) / 10,
        scriptUsPerCycle: Math.round(byCommand.filter(([n]) => n === 'evalsha' || n === 'eval').reduce((s, [, d]) => s + d.usec, 0) / cycles),
        relayUsPerCycle: Math.round((relayCpu * 1e6) / cycles),
        cyclesPerRedisCore: Math.round(1e6 / usPerCycle),
        relaysPerRedisCore: Math.round(((relayCpu / cycles) / (redisCpu / cycles)) * 10) / 10,
        top: byCommand.slice(0, 3).map(([n, d]) => `${n} ${d.calls}`).join(', '),
      });
      process.stdout.write(`${JSON.stringify(rows.at(-1))}\n`);
    } finally {
      await Promise.all(relays.map((r) => r.stop()));
    }
  }
} finally {
  await redis.stop();
}

if (!values.json) {
  process.stdout.write(
    `\n${table(rows, ['protocol', 'relays', 'pipelines', 'cycles', 'cyclesPerSecond', 'errors', 'redisCpuSeconds', 'redisUsPerCycle', 'commandsPerCycle', 'scriptsPerCycle', 'scriptUsPerCycle', 'relayUsPerCycle', 'cyclesPerRedisCore', 'relaysPerRedisCore'])}\n`,
  );
  process.stdout.write(
    '\nredisUsPerCycle: Redis main-thread CPU (user+sys) per cycle, less its idle rate with the relays up; cyclesPerRedisCore = 1e6 / that;\nrelaysPerRedisCore: relay-process CPU per cycle / Redis CPU per cycle (relay cores that one busy Redis core keeps up with).\n',
  );
}
