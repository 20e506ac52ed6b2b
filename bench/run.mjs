#!/usr/bin/env node
// `npm run bench`: every benchmark of docs/performance.md from one entry point (after `npm run build`).
//   npm run bench                       cycle benchmark, legacy + API v1, 16 and 64 pipelines
//   npm run bench -- --suite overhead   relay vs a bare NestJS express route (ratios)
//   npm run bench -- --suite scale      held connections, 10,000 queued requests, cost curve
//   npm run bench -- --suite redis      memory vs one vs two Redis-backed replicas
//   npm run bench -- --suite drain      SIGTERM under load, memory store
//   npm run bench -- --suite crash      kill -9 (and SIGTERM) of a Redis replica under load
//   npm run bench -- --suite redis-cpu  Redis CPU per cycle (legacy, v1, gateway), 2 and 4 relays
//   npm run bench -- --suite failover   Sentinel failover under load: kill -9 / SIGSTOP, WAIT 0 / 1
//   npm run bench -- --suite latency    legacy end-to-end chat latency, default vs low-latency
//   npm run bench -- --suite soak       10-minute soak, memory store
//   npm run bench -- --suite gateway    OpenAI gateway: latency added over the raw E2EE routes, 500 held chats
//   npm run bench -- --suite hostile    issue 18's attacks (bench/hostile.mjs; bench/hostile/*.mjs), with
//                                       --only a,b, --relay-dir DIR (default this checkout; /work/baseline
//                                       for "before") and --pod-shape (512 MiB cgroup, the chart's heap)
//   npm run bench -- --suite held       held-connection cost curve: RSS, heap and event-loop delay per
//                                       held poll, retrieve, sink and gateway chat at 1k..20k, median of
//                                       3 fresh relays, plus the node/Express/Nest floors (bench/held.mjs)
//   npm run bench -- --suite admission  a burst of 2,000 gateway chats: admission rate, latency, relay
//                                       CPU per chat, with keygen and with pre-made keys (gateway.mjs burst)
//   npm run bench -- --suite delivery   API v1 delivery at 64 pipelines, memory / one / two replicas on
//                                       Redis, with where the milliseconds go (redis-matrix.mjs --trace),
//                                       the node's poll sent with the request, then held ahead (--poll held)
//   npm run bench -- --suite all        everything above but the soak and hostile
// Cycle options: --duration S (default 10), --pipelines 16,64, --protocols legacy,v1,
//   --relay-node-args=FLAGS (node options for the relay, e.g. --max-semi-space-size=1),
//   --ab=FLAGS: the cycles alternately without and with FLAGS, --rounds times (default 2), each on a
//   fresh relay, with the relay's CPU per request from /proc (main thread and the others): what a
//   V8 or Node flag costs, measured in one invocation.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, cycle, startRelay, table, cli, threadCpuMs } from './lib.mjs';

const values = cli(
  'usage: npm run bench [-- --suite cycles|overhead|scale|redis|drain|crash|latency|soak|redis-cpu|failover|gateway|hostile|held|admission|delivery|all] [--duration S] [--pipelines 16,64] [--protocols legacy,v1] [--port N] [--relay-node-args=FLAGS] [--ab=FLAGS [--rounds N]] [--only a,b --relay-dir DIR --pod-shape (hostile)]',
  {
    suite: { type: 'string', default: 'cycles' },
    duration: { type: 'string', default: '10' },
    pipelines: { type: 'string', default: '16,64' },
    protocols: { type: 'string', default: 'legacy,v1' },
    port: { type: 'string', default: '5091' },
    only: { type: 'string' },
    'relay-dir': { type: 'string' },
    'pod-shape': { type: 'boolean', default: false },
    'relay-node-args': { type: 'string', default: '' },
    ab: { type: 'string', default: '' },
    rounds: { type: 'string', default: '2' },
  },
);

const SCRIPTS = {
  overhead: [['overhead.mjs', '--duration', '6']],
  scale: [['scale.mjs']],
  redis: [['redis-matrix.mjs', '--duration', values.duration, '--pipelines', values.pipelines]],
  drain: [['drain.mjs']],
  crash: [['crash.mjs'], ['crash.mjs', '--signal', 'SIGTERM', '--pipelines', '64']],
  'redis-cpu': [
    ['redis-cpu.mjs', '--relays', '2', '--duration', values.duration],
    ['redis-cpu.mjs', '--relays', '4', '--duration', values.duration, '--protocols', 'legacy,v1'],
  ],
  failover: [['redis-failover.mjs']],
  latency: [['legacy-latency.mjs']],
  soak: [['soak.mjs', '--minutes', '10', '--every', '60']],
  gateway: [['gateway.mjs']],
  hostile: [
    [
      'hostile.mjs',
      ...(values.only ? ['--only', values.only] : []),
      ...(values['relay-dir'] ? ['--relay-dir', values['relay-dir']] : []),
      ...(values['pod-shape'] ? ['--pod-shape'] : []),
    ],
  ],
  held: [
    ['held.mjs', '--kinds', 'poll,sink', '--counts', '1024'],
    ['held.mjs', '--kinds', 'retrieve,chat', '--counts', '1000,4000,5000,10000,20000'],
    ['held.mjs', '--kinds', 'floor-node,floor-express,floor-nest', '--counts', '4000'],
  ],
  admission: [['gateway.mjs', '--parts', 'burst', '--burst', '2000']],
  delivery: [
    ['redis-matrix.mjs', '--trace', '--protocols', 'v1', '--pipelines', '64', '--configs', 'memory,redis-1,redis-2', '--duration', values.duration],
    ['redis-matrix.mjs', '--trace', '--protocols', 'v1', '--pipelines', '64', '--configs', 'memory,redis-1,redis-2', '--duration', values.duration, '--poll', 'held'],
  ],
};

function runScript(args) {
  process.stdout.write(`\n== node bench/${args.join(' ')}\n`);
  const result = spawnSync(process.execPath, [join(ROOT, 'bench', args[0]), ...args.slice(1)], { stdio: 'inherit' });
  return result.status ?? 1;
}

async function cycles() {
  const relay = await startRelay(Number(values.port), {}, values['relay-node-args'].split(' ').filter(Boolean));
  const rows = [];
  try {
    for (const protocol of values.protocols.split(',')) {
      for (const pipelines of values.pipelines.split(',').map(Number)) {
        const result = await cycle({ url: relay.base, protocol, pipelines, duration: values.duration, warmup: 2 });
        process.stdout.write(`${JSON.stringify(result)}\n`);
        rows.push(result);
      }
    }
  } finally {
    await relay.stop();
  }
  process.stdout.write(
    `\n${table(rows, ['protocol', 'pipelines', 'cyclesPerSecond', 'requestsPerSecond', 'p50Ms', 'p99Ms', 'deliveryP50Ms', 'deliveryP99Ms', 'errors'])}\n`,
  );
}

/** --ab: the same cycles on fresh relays, alternately without and with the flags. */
async function ab() {
  const rows = [];
  for (let round = 0; round < Number(values.rounds); round += 1) {
    for (const flags of ['', values.ab]) {
      for (const protocol of values.protocols.split(',')) {
        for (const pipelines of values.pipelines.split(',').map(Number)) {
          const relay = await startRelay(Number(values.port), {}, flags.split(' ').filter(Boolean));
          const before = threadCpuMs(relay.pid);
          const result = await cycle({ url: relay.base, protocol, pipelines, duration: values.duration, warmup: 0 });
          const after = threadCpuMs(relay.pid);
          await relay.stop();
          const requests = result.requestsPerSecond * result.durationSeconds;
          const us = (ms) => Math.round((ms / requests) * 1000);
          rows.push({ round, flags: flags || '(none)', protocol, pipelines, cyclesPerSecond: result.cyclesPerSecond, p99Ms: result.p99Ms, cpuMainUsPerRequest: us(after.main - before.main), cpuOtherUsPerRequest: us(after.others - before.others), errors: result.errors });
          process.stdout.write(`${JSON.stringify(rows.at(-1))}\n`);
        }
      }
    }
  }
  process.stdout.write(`\n${table(rows, Object.keys(rows[0]))}\n`);
}

if (values.ab) {
  await ab();
  process.exit(0);
}

const suites =
  values.suite === 'all'
    ? ['cycles', 'overhead', 'scale', 'redis', 'redis-cpu', 'failover', 'drain', 'crash', 'latency', 'gateway', 'held', 'admission', 'delivery']
    : values.suite.split(',');
let failed = 0;
for (const suite of suites) {
  if (suite === 'cycles') {
    await cycles();
  } else if (SCRIPTS[suite]) {
    for (const args of SCRIPTS[suite]) failed += runScript(args) === 0 ? 0 : 1;
  } else {
    process.stderr.write(`unknown suite ${suite} (cycles, ${Object.keys(SCRIPTS).join(', ')}, all)\n`);
    process.exit(2);
  }
}
process.exit(failed === 0 ? 0 : 1);
