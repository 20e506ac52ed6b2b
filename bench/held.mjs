#!/usr/bin/env node
// What a held connection costs the relay (issue 22): for each kind, a fresh relay per run holds N
// connections at once, and the relay's own figures are compared with the same process at 0 held:
//   poll      POST /api/v1/relay/servers/poll, one per registered node (the registry cap, 1,024 by
//             default, spec §9, bounds it: --node-cap); poll wait 120 s
//   retrieve  POST /api/v1/relay/responses/retrieve with `Prefer: wait=8`, one per pending request
//             (the requests are queued before the baseline; a 202 is re-sent at once, as the page does)
//   sink      POST /sink held by TOKENPLACE_RELAY_SINK_HOLD_SECONDS=8, one per legacy node (registered
//             by a first wave before the baseline; an empty answer is re-sent at once); node cap too
//   chat      POST /v1/chat/completions to a registered node that never answers (the chat and its
//             queued envelope are the held cost). RSA keygen is replaced by pre-made keys
//             (BENCH_PROBE_KEYS, bench/relay-probe.cjs), one distinct KeyObject per chat as before:
//             20,000 keygens would take 20 minutes and measure the libuv pool, not memory
//             (--keygen: the relay's own keygen, as shipped).
// Per run: RSS of the relay process (/proc/<pid>/status, median of samples over the hold window and
// over an idle window at 0 held); after a forced GC at both ends (relay-probe.cjs): heap used, V8's
// resident heap pages (young generation apart) and the rest of RSS (native); event-loop delay inside
// the relay (monitorEventLoopDelay, 1 ms) and from outside (/livez round trip every 20 ms). Per
// connection = (at N − at 0) / N. The figures of a (kind, N) are medians over the --runs fresh
// processes that held all N (opened 500 at a time, each step once the relay holds the last), with
// the range. Client sockets live in child processes of this script, 10,000 at most each (their
// memory is not the relay's). Caps raised so they are not what is measured: BENCH_ENV (lib.mjs),
// the node cap (TOKENPLACE_RELAY_MAX_NODES), TOKENPLACE_GATEWAY_MAX_CONCURRENT=100000, leases
// 3600 s. The relay needs an open file per connection: the script raises its limit when it can
// (prlimit) and holds at most the limit minus 300 otherwise.
// --snapshots DIR writes a heap snapshot at 0 held and at N held per run (bench/heap-diff.mjs).
// Floors (not in the default --kinds): floor-net, floor-node, floor-express, floor-nest hold the
// poll's body on a bare TCP socket, plain node:http, Express 5 and a bare NestJS app
// (bench/held-floor.mjs): same client, same figures.
// pod (not in the default --kinds): N client retrieves plus 1,024 node polls held at once in one
// relay, every client's request claimed by its node (in flight); with --chart 512Mi the relay runs
// with the Helm chart's environment (NODE_OPTIONS heap cap, memory limit) and the relay's default
// caps (helm from HELM_BIN or .tools/bin/helm); rssPeakMiB is its VmHWM, to compare with the limit.
//
// usage: node bench/held.mjs [--kinds poll,retrieve,sink,chat] [--counts 1000,5000,10000,20000]
//          [--node-cap 1024] [--runs 3] [--window 10] [--port 5300] [--snapshots DIR] [--cpus 0]
//          [--keygen] [--chart 512Mi] [--node-args=FLAGS]   (FLAGS: node options for the relay)
//          [--roots '[LABEL=]DIR[ FLAGS],...']   (several built checkouts, each with its own node
//          options if given, runs interleaved, rows kind@LABEL)
//        node bench/held.mjs --summarise out1.txt,out2.txt   (the tables again from saved JSON lines)
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ROOT, chartEnv, cli, ensureFdLimit, median, parseMetrics, percentile, premadeKeys, cachedNodePublicKeys, nodePublicKeys, procStatus, request, startRelay, stopProcess, table } from './lib.mjs';

const MODEL = 'qwen3-8b-instruct';
const CAPS = { supported_model_ids: [MODEL], max_concurrency: 1 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A base64 SPKI-PEM-shaped key of a real RSA-2048 key's length (604 characters), distinct per i. */
function fakeKey(label, i) {
  const seed = createHash('sha512').update(`${label}-${i}`).digest('base64');
  const body = seed.repeat(5).slice(0, 392).match(/.{1,64}/g).join('\n');
  return Buffer.from(`-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----\n`).toString('base64');
}

/** API v1 node keys must be real RSA public keys (issue 18): node i's, from the bench key cache. */
let nodeKeys = null;
function nodeKey(i) {
  nodeKeys ??= cachedNodePublicKeys();
  const key = nodeKeys[i];
  if (key === undefined) throw new Error(`bench key cache holds ${nodeKeys.length} keys, node ${i} needs more`);
  return key;
}
const PARKING_NODE = 1024 + 1;

/** The held request of kind `kind` for index i, and whether its answer is re-sent (still held). */
const KINDS = {
  poll: { path: '/api/v1/relay/servers/poll', body: (i) => ({ server_public_key: nodeKey(i) }), again: (s) => s === 200 },
  retrieve: {
    path: '/api/v1/relay/responses/retrieve',
    body: (i) => ({ client_public_key: fakeKey('client', i), request_id: `held-${i}` }),
    headers: 'Prefer: wait=8\r\n',
    again: (s) => s === 202,
  },
  sink: { path: '/sink', body: (i) => ({ server_public_key: fakeKey('legacy', i) }), again: (s) => s === 200 },
  chat: {
    path: '/v1/chat/completions',
    body: (i) => ({ model: MODEL, messages: [{ role: 'user', content: `held chat ${i} ${'x'.repeat(200)}` }] }),
    again: () => false,
  },
};
// pod: --counts client retrieves and 1,024 node polls at once, each client's request in flight at a node.
KINDS.pod = { path: '', body: () => ({}), again: () => false };
// The same held poll body on bare stacks (bench/held-floor.mjs): what the relay could cost at best.
for (const floor of ['net', 'node', 'express', 'nest']) {
  KINDS[`floor-${floor}`] = { path: '/hold', body: (i) => ({ server_public_key: fakeKey('node', i) }), again: (s) => s === 200, floor };
}

function rawRequest(kind, i) {
  const k = KINDS[kind];
  const body = JSON.stringify(k.body(i));
  return `POST ${k.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${k.headers ?? ''}\r\n${body}`;
}

// ------------------------------------------------------------------ client sockets (holder processes)

function holder() {
  const port = Number(process.env.BENCH_HELD_PORT);
  const conns = [];
  const statuses = {};
  let errors = 0;
  let firstError = null;
  let closing = false;

  function onResponse(c, status) {
    statuses[status] = (statuses[status] ?? 0) + 1;
    c.held = false;
    if (!closing && c.reissue && KINDS[c.kind].again(status)) {
      c.held = true;
      c.socket.write(c.request);
    }
  }

  function connect(kind, i, reissue) {
    return new Promise((resolve) => {
      const c = { kind, request: rawRequest(kind, i), reissue, held: false, buf: '', socket: null };
      const socket = net.connect({ port, host: '127.0.0.1' }, () => {
        socket.setNoDelay(true);
        c.held = true;
        socket.write(c.request);
        resolve();
      });
      c.socket = socket;
      socket.on('data', (chunk) => {
        c.buf += chunk.toString('latin1');
        for (;;) {
          const end = c.buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = c.buf.slice(0, end);
          let total;
          if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
            const last = c.buf.indexOf('\r\n0\r\n\r\n', end);
            if (last < 0) return;
            total = last + 7;
          } else {
            total = end + 4 + Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
            if (c.buf.length < total) return;
          }
          c.buf = c.buf.slice(total);
          onResponse(c, Number(head.slice(9, 12)));
        }
      });
      socket.on('error', (error) => {
        if (!closing) {
          errors += 1;
          firstError ??= error.message;
        }
        c.held = false;
        resolve();
      });
      socket.on('close', () => {
        c.held = false;
      });
      conns.push(c);
    });
  }

  const stats = () => ({ open: conns.length, held: conns.filter((c) => c.held).length, statuses, errors, firstError });
  process.once('disconnect', () => process.exit(0)); // the bench is gone
  process.on('message', async (m) => {
    if (m.cmd === 'open') {
      closing = false;
      for (let i = m.from; i < m.to; i += 250) {
        await Promise.all(Array.from({ length: Math.min(250, m.to - i) }, (_, k) => connect(m.kind, i + k, m.reissue)));
      }
    } else if (m.cmd === 'close') {
      closing = true;
      for (const c of conns.splice(0)) c.socket.destroy();
      for (const k of Object.keys(statuses)) delete statuses[k];
      errors = 0;
      firstError = null;
    }
    process.send(stats());
  });
}

// ------------------------------------------------------------------ bench (main thread)

async function main() {
  // Ctrl-C or a kill: exit, so lib.mjs stops the relay and the holders go with their IPC channel.
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130));
  const values = cli(
    'usage: node bench/held.mjs [--kinds poll,retrieve,sink,chat] [--counts 1000,5000,10000,20000] [--node-cap 1024] [--runs 3] [--window 10] [--port 5300] [--snapshots DIR] [--cpus LIST] [--keygen] [--chart 512Mi] [--node-args=FLAGS] [--roots "[LABEL=]DIR[ FLAGS],..."] [--summarise FILE,...]',
    {
      kinds: { type: 'string', default: 'poll,retrieve,sink,chat' },
      counts: { type: 'string', default: '1000,5000,10000,20000' },
      'node-cap': { type: 'string', default: '1024' },
      runs: { type: 'string', default: '3' },
      window: { type: 'string', default: '10' },
      port: { type: 'string', default: '5300' },
      snapshots: { type: 'string', default: '' },
      cpus: { type: 'string', default: '' },
      keygen: { type: 'boolean', default: false },
      chart: { type: 'string', default: '' },
      'node-args': { type: 'string', default: '' },
      roots: { type: 'string', default: '' },
      summarise: { type: 'string', default: '' },
    },
  );
  // Node keys for every poll (up to the registry's cap, or --node-cap) and the parking node, made
  // once and cached.
  await nodePublicKeys(Math.max(PARKING_NODE + 1, Number(values['node-cap']) + 1));
  let chart = null;
  if (values.chart) {
    const { RELAY_HOST: _host, RELAY_PORT: _port, ...env } = await chartEnv(values.chart);
    chart = env;
  }
  const counts = values.counts.split(',').map(Number);
  const nodeCap = Number(values['node-cap']);
  const kinds = values.kinds.split(',');
  for (const kind of kinds) {
    if (!KINDS[kind]) {
      process.stderr.write(`unknown kind ${kind} (${Object.keys(KINDS).join(', ')})\n`);
      process.exit(2);
    }
  }
  if (values.snapshots) mkdirSync(values.snapshots, { recursive: true });
  const keysFile = kinds.includes('chat') && !values.keygen ? premadeKeys() : null;
  const rows = [];
  const add = (kind, n, runs) => {
    rows.push(summarise(kind, runs[0]?.held ?? n, runs));
    // The marginal cost between this count and the previous one: the slope of the median RSS growth,
    // free of what a first connection costs once (JIT, pools, the young generation's first growth).
    const prev = rows.at(-2);
    const grew = (r) => median(r.runsOk.map((x) => (x.rssHeldMiB - x.rssIdleMiB) * 1024));
    if (prev?.kind === kind && prev.held < rows.at(-1).held) {
      rows.at(-1).marginalRssKiB = ((grew(rows.at(-1)) - grew(prev)) / (rows.at(-1).held - prev.held)).toFixed(1);
    }
  };
  if (values.summarise) {
    // Tables again from the JSON lines of earlier runs (several files merge).
    const byPoint = new Map();
    for (const file of values.summarise.split(',')) {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        if (!line.startsWith('{"kind"')) continue;
        const r = JSON.parse(line);
        const key = `${r.kind}${r.build ? `@${r.build}` : ''} ${r.held}`;
        byPoint.set(key, [...(byPoint.get(key) ?? []), r]);
      }
    }
    const label = (r) => `${r.kind}${r.build ? `@${r.build}` : ''}`;
    for (const runs of [...byPoint.values()].sort((a, b) => label(a[0]).localeCompare(label(b[0])) || a[0].held - b[0].held)) add(label(runs[0]), runs[0].held, runs);
  } else {
    // The relay needs one descriptor per held connection, plus its own (~50); the holders split theirs.
    const fdLimit = ensureFdLimit(Math.max(...counts) + 4096);
    const relayMax = Math.floor((fdLimit - 300) / 500) * 500;
    if (Math.max(...counts) > relayMax) {
      process.stderr.write(`counts above ${relayMax} are held at ${relayMax}: the open-file limit is ${fdLimit} per process\n`);
    }
    let port = Number(values.port);
    // --roots: several builds (checkouts with a dist/), their runs interleaved in one invocation so
    // that a busy machine's drift falls on all of them alike; rows are labelled kind@label.
    // A root may carry its own node options after its directory: 'semi1=/tmp/b --max-semi-space-size=1'.
    const roots = values.roots
      ? values.roots.split(',').map((spec) => {
          const [dir, ...args] = (spec.includes('=') ? spec.slice(spec.indexOf('=') + 1) : spec).split(' ').filter(Boolean);
          const label = spec.includes('=') ? spec.slice(0, spec.indexOf('=')) : dir.replace(/\/+$/, '').split('/').at(-1);
          return { label, dir, args };
        })
      : [{ label: null, dir: null, args: [] }];
    for (const kind of kinds) {
      const cap = kind === 'poll' || kind === 'sink' ? Math.min(nodeCap, relayMax) : relayMax;
      const points = [...new Set(counts.map((n) => Math.min(n, kind === 'pod' ? cap - POD_NODES : cap)))];
      for (const n of points) {
        const runs = roots.map(() => []);
        for (let r = 0; r < Number(values.runs); r += 1) {
          for (const [i, root] of roots.entries()) {
            const result = await oneRun({ kind, n, run: r, port: port++, nodeCap, keysFile, window: Number(values.window), snapshots: values.snapshots, cpus: values.cpus, chart, nodeArgs: [...values['node-args'].split(' ').filter(Boolean), ...root.args], root });
            process.stdout.write(`${JSON.stringify(result)}\n`);
            runs[i].push(result);
            if (port > Number(values.port) + 500) port = Number(values.port);
          }
        }
        for (const [i, root] of roots.entries()) add(root.label ? `${kind}@${root.label}` : kind, n, runs[i]);
      }
    }
  }
  process.stdout.write(
    `\nmedian of the fresh relays per row that held all N (runs: those / all) [min–max]; RSS per connection = (RSS held − RSS idle) / N; marginal: its slope from the row above; after a forced GC: heap (used), external, RSS,\nV8 heap resident (of which the young generation) and the rest of RSS (native: sockets, parsers, OpenSSL keys, malloc)\n` +
      `${table(rows, ['kind', 'held', 'rssIdleMiB', 'rssHeldMiB', 'rssPeakMiB', 'rssPerConnKiB', 'marginalRssKiB', 'heapPerConnKiB', 'externalPerConnKiB', 'rssAfterGcPerConnKiB', 'heapResidentPerConnKiB', 'youngResidentPerConnKiB', 'offHeapPerConnKiB', 'loopP99Ms', 'loopMaxMs', 'livezP50Ms', 'livezP99Ms', 'livezMaxMs', 'runs', 'errors'])}\n`,
  );
  process.exit(0);
}

/** Held requests as the relay counts them (long-polls waiting; chats queued); the floors: as sent. */
async function relayHeld(base, kind, clients) {
  if (KINDS[kind].floor) {
    return (await clients.ask({ cmd: 'stats' })).held;
  }
  const { body } = await request(base, 'GET', '/metrics');
  const m = parseMetrics(body);
  return kind === 'chat' ? m.tokenplace_relay_queue_depth : m.tokenplace_relay_waiting_requests;
}

/**
 * The relay's own defaults for the capacity caps BENCH_ENV raises (with --chart the pod's caps
 * apply). Rate limits stay off: every client here shares one loopback address.
 */
const RELAY_DEFAULT_CAPS = {
  TOKENPLACE_RELAY_MAX_PENDING_PER_CLIENT: '16',
  TOKENPLACE_RELAY_MAX_QUEUED_REQUESTS: '20000',
  TOKENPLACE_RELAY_MAX_NODES: '1024',
  TOKEN_PLACE_API_V1_MAX_QUEUE_DEPTH_PER_NODE: '1024',
  TOKENPLACE_GATEWAY_MAX_CONCURRENT: '1024',
};

async function inBatches(n, size, fn) {
  for (let i = 0; i < n; i += size) {
    await Promise.all(Array.from({ length: Math.min(size, n - i) }, (_, k) => fn(i + k)));
  }
}

/**
 * The client sockets, in child processes of at most PER_HOLDER each (an open-file limit is per
 * process): `ask({ cmd: 'open', from, to })` splits the range between them; stats are summed.
 */
const PER_HOLDER = 10_000;
function holders(port, n) {
  const procs = Array.from({ length: Math.max(1, Math.ceil(n / PER_HOLDER)) }, () => {
    const child = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, BENCH_HELD_PORT: String(port) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let pending = null;
    child.on('message', (m) => {
      const resolve = pending;
      pending = null;
      resolve?.(m);
    });
    const ask = (msg) =>
      new Promise((resolve) => {
        pending = resolve;
        child.send(msg);
      });
    return { child, ask };
  });
  const ask = async (msg) => {
    const parts = await Promise.all(
      procs.map((p, k) => {
        if (msg.cmd !== 'open') return p.ask(msg);
        const size = Math.ceil((msg.to - msg.from) / procs.length);
        const from = msg.from + k * size;
        return p.ask({ ...msg, from, to: Math.min(msg.to, from + size) });
      }),
    );
    const statuses = {};
    for (const p of parts) for (const [s, c] of Object.entries(p.statuses)) statuses[s] = (statuses[s] ?? 0) + c;
    const sum = (k) => parts.reduce((a, p) => a + p[k], 0);
    return { open: sum('open'), held: sum('held'), errors: sum('errors'), statuses, firstError: parts.find((p) => p.firstError)?.firstError ?? null };
  };
  return { ask, stop: () => Promise.all(procs.map((p) => stopProcess(p.child, 'SIGKILL'))) };
}

/** Waits until `test()` holds, polling every 250 ms, at most `ms`. */
async function until(test, ms) {
  const t0 = Date.now();
  for (;;) {
    const v = await test();
    if (v === true) return true;
    if (Date.now() - t0 > ms) return false;
    await sleep(250);
  }
}

/** RSS samples and /livez round trips for `seconds`, plus the relay's own loop delay meanwhile. */
async function observe(relay, seconds) {
  await relay.probe('eld'); // reset
  const end = Date.now() + seconds * 1000;
  const rss = [];
  const livez = [];
  const sampler = (async () => {
    while (Date.now() < end) {
      rss.push(procStatus(relay.pid).rssKiB);
      await sleep(250);
    }
  })();
  while (Date.now() < end) {
    const t0 = performance.now();
    await request(relay.base, 'GET', '/livez');
    livez.push(performance.now() - t0);
    await sleep(20);
  }
  await sampler;
  const loop = await relay.probe('eld');
  livez.sort((a, b) => a - b);
  return { rssKiB: median(rss), livezP50Ms: percentile(livez, 0.5), livezP99Ms: percentile(livez, 0.99), livezMaxMs: percentile(livez, 1), loopP99Ms: loop.p99Ms, loopMaxMs: loop.maxMs };
}

/** Connections opened at once (see oneRun). */
const STEP = 500;

/** The pod scenario's nodes: the registry's default cap (spec §9). */
const POD_NODES = 1024;

async function oneRun({ kind, n, run, port, nodeCap, keysFile, window, snapshots, cpus, chart, nodeArgs, root = { label: null, dir: null } }) {
  const env = {
    TOKENPLACE_RELAY_MAX_NODES: String(Math.max(nodeCap, 1024) + 16),
    TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '3600',
    TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '120',
    TOKENPLACE_RELAY_SINK_HOLD_SECONDS: '8',
    TOKENPLACE_RELAY_SINK_STALE_SECONDS: '3600',
    TOKENPLACE_GATEWAY_MAX_CONCURRENT: '100000',
    // Every connection comes from loopback: one address may hold the whole held-wait budget.
    TOKENPLACE_RELAY_MAX_HELD_WAITS_PER_ADDRESS: '1000000',
    ...(keysFile ? { BENCH_PROBE_KEYS: keysFile } : {}),
    // --chart: the chart's environment and caps, so only the hold times and leases differ from a pod.
    ...(chart ? { ...chart, ...RELAY_DEFAULT_CAPS, TOKENPLACE_METRICS_DISABLED: '0', TOKENPLACE_LOG_LEVEL: 'warn' } : {}),
  };
  const floor = KINDS[kind].floor;
  const relay = floor
    ? await startRelay(port, { BENCH_FLOOR: floor }, nodeArgs, join(ROOT, 'bench/held-floor.mjs'), { probe: true, cpus })
    : await startRelay(port, env, nodeArgs, root.dir ? join(root.dir, 'dist/main.js') : 'dist/main.js', { probe: true, cpus });
  // Setup steps must succeed: a refused registration or request would make every held one a 404.
  const post = async (path, body) => {
    const res = await request(relay.base, 'POST', path, body);
    if (res.status !== 200) throw new Error(`setup ${path}: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
    return res;
  };
  const total = kind === 'pod' ? n + POD_NODES : n;
  const out = { kind, ...(root.label ? { build: root.label } : {}), held: total, run };
  let clients = null;
  try {
    clients = holders(port, total);
    // State that exists at 0 held too: the nodes, the pending requests, the legacy registrations.
    if (kind === 'poll') {
      await inBatches(n, 200, (i) => post('/api/v1/relay/servers/register', { server_public_key: nodeKey(i), capabilities: CAPS }));
    } else if (kind === 'retrieve') {
      await post('/api/v1/relay/servers/register', { server_public_key: nodeKey(PARKING_NODE), capabilities: CAPS });
      await inBatches(n, 200, (i) =>
        post('/api/v1/relay/requests', { server_public_key: nodeKey(PARKING_NODE), client_public_key: fakeKey('client', i), request_id: `held-${i}`, ciphertext: 'c', cipherkey: 'k', iv: 'i' }),
      );
    } else if (kind === 'chat') {
      const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      await post('/api/v1/relay/servers/register', { server_public_key: Buffer.from(publicKey.export({ type: 'spki', format: 'pem' })).toString('base64'), capabilities: CAPS });
    } else if (kind === 'pod') {
      // n requests in flight at 1,024 nodes (request i at node i mod 1,024, claimed by a poll): then
      // their clients hold a retrieve each and every node holds its next poll.
      await inBatches(POD_NODES, 200, (j) => post('/api/v1/relay/servers/register', { server_public_key: nodeKey(j), capabilities: { ...CAPS, max_concurrency: 64 } }));
      await inBatches(n, 200, (i) =>
        post('/api/v1/relay/requests', { server_public_key: nodeKey(i % POD_NODES), client_public_key: fakeKey('client', i), request_id: `held-${i}`, ciphertext: 'c', cipherkey: 'k', iv: 'i' }),
      );
      await inBatches(POD_NODES, 200, async (j) => {
        for (let i = j; i < n; i += POD_NODES) await post('/api/v1/relay/servers/poll', { server_public_key: nodeKey(j) });
      });
    }
    // Warm-up (JIT, lazily built pieces): held connections opened and dropped. The legacy nodes
    // register with a first wave held to the end of its 8 s.
    const opens = kind === 'pod' ? [['retrieve', n], ['poll', POD_NODES]] : [[kind, n]];
    const warm = kind === 'sink' ? n : Math.min(n, 200);
    for (const [k] of opens) await clients.ask({ cmd: 'open', kind: k, from: 0, to: warm, reissue: false });
    if (kind === 'sink') {
      await until(async () => (await clients.ask({ cmd: 'stats' })).held === 0, 30_000);
    } else {
      await until(async () => (await relayHeld(relay.base, kind, clients)) >= warm * opens.length, 30_000);
    }
    await clients.ask({ cmd: 'close' });
    await until(async () => (await relayHeld(relay.base, kind, clients)) === 0, 15_000);
    await sleep(1000);

    const gc0 = await relay.probe('gc');
    const rssGc0 = procStatus(relay.pid).rssKiB;
    if (snapshots) await relay.probe('snapshot', { path: join(snapshots, `${kind}${root.label ? `@${root.label}` : ''}-${n}-r${run}-0.heapsnapshot`) });
    const idle = await observe(relay, 3);
    const open0 = Date.now();
    // Opened in steps of STEP, each once the relay holds everything sent before: a slow relay (a
    // gateway chat costs CPU) never leaves a request unread past its headers timeout (66 s), which
    // would reset the connection.
    let sent = 0;
    let allHeld = true;
    // A retrieve or sink answered at the end of its hold is re-sent at once; at any instant a few
    // are between the answer and the next request.
    const slack = (n) => (kind === 'retrieve' || kind === 'sink' || kind === 'pod' ? Math.ceil(n / 200) : 0);
    for (const [k, count] of opens) {
      for (let from = 0; from < count && allHeld; from += STEP) {
        const to = Math.min(count, from + STEP);
        await clients.ask({ cmd: 'open', kind: k, from, to, reissue: true });
        sent += to - from;
        allHeld = await until(async () => (await relayHeld(relay.base, kind, clients)) >= sent - slack(sent), 120_000);
      }
    }
    allHeld &&= await until(async () => (await relayHeld(relay.base, kind, clients)) >= total - slack(total), 120_000);
    out.openSeconds = Math.round((Date.now() - open0) / 100) / 10;
    await sleep(2000);
    const held = await observe(relay, window);
    const relayCount = await relayHeld(relay.base, kind, clients);
    const gcN = await relay.probe('gc');
    const rssGcN = procStatus(relay.pid).rssKiB;
    if (snapshots) await relay.probe('snapshot', { path: join(snapshots, `${kind}${root.label ? `@${root.label}` : ''}-${n}-r${run}-${n}.heapsnapshot`) });
    const client = await clients.ask({ cmd: 'stats' });
    const kib = (bytes) => Math.round((bytes / 1024) * 100) / 100;
    Object.assign(out, {
      allHeld,
      relayHeld: relayCount,
      clientHeld: client.held,
      rssIdleMiB: Math.round(idle.rssKiB / 102.4) / 10,
      rssHeldMiB: Math.round(held.rssKiB / 102.4) / 10,
      rssPeakMiB: Math.round(procStatus(relay.pid).hwmKiB / 102.4) / 10,
      rssPerConnKiB: Math.round(((held.rssKiB - idle.rssKiB) / total) * 100) / 100,
      rssAfterGcPerConnKiB: Math.round(((rssGcN - rssGc0) / total) * 100) / 100,
      heapPerConnKiB: kib((gcN.heapUsed - gc0.heapUsed) / total),
      // After the forced GCs: V8's resident heap pages (young generation apart) and the rest of RSS.
      heapResidentPerConnKiB: kib((gcN.heapPhysical - gc0.heapPhysical) / total),
      youngResidentPerConnKiB: kib(((gcN.spaces?.new_space ?? 0) - (gc0.spaces?.new_space ?? 0)) / total),
      offHeapPerConnKiB: kib(((rssGcN - rssGc0) * 1024 - (gcN.heapPhysical - gc0.heapPhysical)) / total),
      externalPerConnKiB: kib((gcN.external - gc0.external) / total),
      heapIdleMiB: Math.round(gc0.heapUsed / 104857.6) / 10,
      heapHeldMiB: Math.round(gcN.heapUsed / 104857.6) / 10,
      idleLoopP99Ms: idle.loopP99Ms,
      loopP99Ms: held.loopP99Ms,
      loopMaxMs: held.loopMaxMs,
      idleLivezP99Ms: idle.livezP99Ms,
      livezP50Ms: held.livezP50Ms,
      livezP99Ms: held.livezP99Ms,
      livezMaxMs: held.livezMaxMs,
      errors: client.errors,
      statuses: client.statuses,
      ...(client.firstError ? { firstError: client.firstError } : {}),
    });
  } finally {
    await clients?.ask({ cmd: 'close' });
    await clients?.stop();
    await relay.stop();
  }
  return out;
}

function summarise(kind, n, all) {
  // A run that never got all N held (a starved or refusing relay) is reported, not averaged in.
  const runs = all.filter((r) => r.allHeld !== false);
  const fmt = (k, digits = 1) => {
    const v = runs.map((r) => r[k]).filter((x) => Number.isFinite(x));
    if (v.length === 0) return '';
    const m = median(v).toFixed(digits);
    return v.length > 1 ? `${m} [${Math.min(...v).toFixed(digits)}–${Math.max(...v).toFixed(digits)}]` : m;
  };
  return {
    kind,
    held: n,
    rssIdleMiB: fmt('rssIdleMiB', 0),
    rssHeldMiB: fmt('rssHeldMiB', 0),
    rssPeakMiB: fmt('rssPeakMiB', 0),
    rssPerConnKiB: fmt('rssPerConnKiB'),
    heapPerConnKiB: fmt('heapPerConnKiB'),
    heapResidentPerConnKiB: fmt('heapResidentPerConnKiB'),
    youngResidentPerConnKiB: fmt('youngResidentPerConnKiB'),
    offHeapPerConnKiB: fmt('offHeapPerConnKiB'),
    externalPerConnKiB: fmt('externalPerConnKiB', 2),
    rssAfterGcPerConnKiB: fmt('rssAfterGcPerConnKiB'),
    loopP99Ms: fmt('loopP99Ms'),
    loopMaxMs: fmt('loopMaxMs'),
    livezP50Ms: fmt('livezP50Ms', 2),
    livezP99Ms: fmt('livezP99Ms'),
    livezMaxMs: fmt('livezMaxMs'),
    runs: `${runs.length}/${all.length}`,
    errors: all.reduce((a, r) => a + (r.errors ?? 0), 0),
    runsOk: runs,
  };
}

if (process.env.BENCH_HELD_PORT) {
  holder();
} else {
  await main();
}
