#!/usr/bin/env node
// What one pod holds (issue 19, docs/operations.md "What one pod holds"): the relay runs with the Helm
// chart's environment for a memory limit (`helm template`, bench/lib.mjs chartEnv: NODE_OPTIONS,
// TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES, the store), in the built image under podman with that limit
// (`--memory`, no swap, read-only root, UID 1000, as test/image/pod.ts runs it; `--network host` so
// it reaches the bench's Redis) or, with --runner process, as `node dist/main.js` with the same env
// (no cgroup: RSS is measured, nothing is OOM-killed). Each phase gets a fresh relay and fills one
// thing until the relay refuses, or the phase's bound (count and seconds):
//   queued     4 KiB API v1 requests (/requests) spread over 32 nodes, nobody claims them
//   legacy     4 KiB legacy answers waiting (/faucet → /sink → /source, nobody retrieves), then
//              every one collected with /retrieve and compared byte for byte
//   v1         the same with API v1 (/requests → /servers/poll → /responses → /responses/retrieve)
//   held       the registry filled to its cap (1,024 nodes: the next new key refused, a renewal
//              accepted), --retrieves requests and --chats gateway chats (the gateway's cap) in
//              flight at nodes that never answer; then every node holds a poll and every client a
//              retrieve (Prefer: wait=8) at once, counted by the relay (tokenplace_relay_waiting_
//              requests, /metrics opened for it), and chat --chats + 1 is refused; past the relay's
//              held-wait budget a retrieve is answered at once ("not held") and a poll or a chat
//              refused 503, counted as refusedByBudget (tokenplace_relay_held_waits_refused_total)
//   flood      1 MiB legacy requests, 4 at a time, until refused
// Per phase: what was held, what the next one got (status and Retry-After), the relay's RSS at the
// end and its peak (VmHWM), and whether the container was OOM-killed or the relay died. The last
// line is the table row. Only the chart's caps apply; rate limits and the per-address node share
// are off (one loopback address drives the whole pod). The Redis store gets its own redis-server
// (REDIS_SERVER_BIN) per phase, on an ephemeral loopback port, removed after it.
//
// usage: node bench/pod-capacity.mjs --limit 512Mi [--store memory|redis] [--runner podman|process]
//          [--image localhost/tokenplace-relay:test] [--phases queued,legacy,v1,held,flood]
//          [--max 60000] [--seconds 180] [--retrieves 5000] [--chats 1024] [--port 5400]
//   A fill nothing refused names its bound: `none (count bound N)` (--max) or `none (time bound S s)`.
//   The Redis rows of docs/operations.md fill the answers to a count: --phases legacy,v1 --max 20000
//   --seconds 1800 (the count is reached long before the time on any machine that runs the bench).
//   helm: HELM_BIN or .tools/bin/helm (bash scripts/install-tools.sh); the image: scripts/build-image.sh
//   BENCH_RELAY_ROOT=<checkout> with --runner process measures another build (before/after).
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, chartEnv, cli, ensureFdLimit, freePort, procStatus, request, stopProcess, threadCpuMs } from './lib.mjs';
import { capabilities, fakeKey, PROTOCOL, V1 } from './hostile-lib.mjs';

const o = cli('usage: node bench/pod-capacity.mjs --limit 512Mi [options]', {
  limit: { type: 'string', default: '512Mi' },
  store: { type: 'string', default: 'memory' },
  runner: { type: 'string', default: 'podman' },
  image: { type: 'string', default: 'localhost/tokenplace-relay:test' },
  phases: { type: 'string', default: 'queued,legacy,v1,held,flood' },
  max: { type: 'string', default: '60000' },
  seconds: { type: 'string', default: '180' },
  retrieves: { type: 'string', default: '5000' },
  chats: { type: 'string', default: '1024' },
  port: { type: 'string', default: '5400' },
});
const MAX = Number(o.max);
const SECONDS = Number(o.seconds);
const KiB = 1024;
const MiB = 1024 * KiB;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const PODMAN = ['podman', '--runtime', 'runc'];
const NODES = 32;

/** The bench drives the pod from one loopback address: only the chart's caps should refuse it. */
const ONE_ADDRESS = {
  TOKENPLACE_LOG_LEVEL: 'warn',
  API_RATE_LIMIT: 'off',
  API_DAILY_QUOTA: 'off',
  API_RELAY_CONTROL_PLANE_RATE_LIMIT: 'off',
  API_RELAY_CONTROL_PLANE_IP_RATE_LIMIT: 'off',
  TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS: '1000000',
  TOKENPLACE_RELAY_MAX_HELD_WAITS_PER_ADDRESS: '1000000',
  TOKENPLACE_RELAY_TRUST_PROXY: 'loopback',
};
/** /metrics open (the chart closes it unless metrics.enabled): the held phase reads what the relay holds. */
const OBSERVED = { TOKENPLACE_METRICS_DISABLED: '0' };

// ------------------------------------------------------------------ the relay under test

async function startRedis() {
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pod-capacity-redis-'));
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  for (let i = 0; i < 100; i += 1) {
    if (await canConnect(port)) return { url: `redis://127.0.0.1:${port}`, stop: async () => (await stopProcess(child, 'SIGTERM'), rmSync(dir, { recursive: true, force: true })) };
    await sleep(50);
  }
  throw new Error('redis-server did not start');
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });
}

async function startRelay(env, port) {
  // With --network host, a relay already listening there (another run's) would answer in this
  // one's place and the figures would be its: refuse instead.
  if (await canConnect(port)) {
    throw new Error(`port ${port} is already in use on 127.0.0.1: stop what listens there or pass another --port`);
  }
  const full = { ...env, ...ONE_ADDRESS, ...OBSERVED, RELAY_HOST: '127.0.0.1', RELAY_PORT: String(port) };
  let pid;
  let stop;
  let dead = () => false;
  let oomKilled = () => false;
  if (o.runner === 'podman') {
    const name = `pod-capacity-${process.pid}-${port}`;
    const limit = env.TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES;
    spawnSync(PODMAN[0], [...PODMAN.slice(1), 'rm', '--force', '--ignore', name]);
    const args = [
      ...PODMAN.slice(1), 'run', '--detach', '--name', name, '--network', 'host',
      '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=4096:4096',
      '--memory', limit, '--memory-swap', limit, '--user', '1000:1000', '--no-healthcheck',
      '--read-only', '--read-only-tmpfs=false', '--mount', 'type=tmpfs,destination=/tmp,tmpfs-size=67108864,tmpfs-mode=1777',
      '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
      ...Object.entries(full).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
      o.image,
    ];
    const r = spawnSync(PODMAN[0], args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`podman run failed: ${r.stderr}`);
    const inspect = (f) => spawnSync(PODMAN[0], [...PODMAN.slice(1), 'inspect', '--format', f, name], { encoding: 'utf8' }).stdout.trim();
    dead = () => inspect('{{.State.Running}}') !== 'true';
    oomKilled = () => inspect('{{.State.OOMKilled}}') === 'true';
    stop = () => spawnSync(PODMAN[0], [...PODMAN.slice(1), 'rm', '--force', '--time', '2', name]);
    await waitLive(port, dead);
    pid = Number(inspect('{{.State.Pid}}'));
  } else {
    const root = process.env.BENCH_RELAY_ROOT ?? ROOT;
    const child = spawn(process.execPath, [join(root, 'dist/main.js')], { env: { PATH: process.env.PATH, ...full }, stdio: ['ignore', 'ignore', 'inherit'] });
    process.once('exit', () => child.kill('SIGKILL'));
    dead = () => child.exitCode !== null || child.signalCode !== null;
    stop = () => stopProcess(child, 'SIGKILL');
    await waitLive(port, dead);
    pid = child.pid;
  }
  return { base: `http://127.0.0.1:${port}`, pid, dead, oomKilled, stop, mem: () => (dead() ? null : procStatus(pid)) };
}

async function waitLive(port, dead) {
  for (let i = 0; i < 600; i += 1) {
    if (dead()) throw new Error('the relay exited at boot');
    try {
      if ((await fetch(`http://127.0.0.1:${port}/livez`)).ok) return;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  throw new Error('the relay did not start');
}

// ------------------------------------------------------------------ wire helpers

const post = (relay, path, body, headers) => request(relay.base, 'POST', path, body, headers, 30_000).catch((e) => ({ status: 'error', body: e.message }));
/** A deterministic 4 KiB payload of index i (compared on collection). */
const payload = (tag, i, size = 4 * KiB) => createHash('sha256').update(`${tag}-${i}`).digest('base64').repeat(Math.ceil(size / 44)).slice(0, size);
const legacyNode = (w) => `pod-capacity-legacy-node-${w}`;
const clientKey = (i) => `pod-capacity-client-${i}`;
/** An API v1 request id (and cancel token) for index i: 32 hex digits. */
const rid = (i) => i.toString(16).padStart(32, '0');

/** Runs `worker(w, i)` on `workers` lanes over i = 0..max-1 until one returns false or time runs out. */
async function lanes(workers, max, deadline, worker) {
  let next = 0;
  let stopped = false;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (!stopped && Date.now() < deadline) {
        const i = next++;
        if (i >= max) return;
        if ((await worker(w, i)) === false) stopped = true;
      }
    }),
  );
}

/** Which bound ended a fill nothing refused: the count (--max) or the time (--seconds). */
const bound = (held) => (held >= MAX ? `none (count bound ${MAX})` : `none (time bound ${SECONDS} s)`);

/** What a refusal said: `503 RA 5 (relay_overloaded)`. */
function refusal(res) {
  if (!res) return 'none (bound reached)';
  const ra = res.headers?.['retry-after'];
  const code = res.body?.error?.code ?? res.body?.error?.type ?? '';
  return `${res.status}${ra ? ` RA ${ra}` : ''}${code && typeof code === 'string' ? ` ${code}` : ''}`;
}

// request() does not return headers: a fetch for the calls whose refusal we report.
async function postFull(relay, path, body) {
  try {
    const res = await fetch(`${relay.base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
    const text = await res.text();
    let parsed = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // text
    }
    return { status: res.status, body: parsed, headers: { 'retry-after': res.headers.get('retry-after') } };
  } catch (error) {
    return { status: 'error', body: error.message, headers: {} };
  }
}

// ------------------------------------------------------------------ phases

async function queued(relay) {
  // API v1 nodes, kept alive by re-registering (which claims nothing) while the queues fill.
  const nodes = [];
  for (let w = 0; w < NODES; w += 1) {
    const key = fakeKey();
    await post(relay, `${V1}/servers/register`, { server_public_key: key, capabilities: capabilities() });
    nodes.push(key);
  }
  const renew = setInterval(() => {
    for (const key of nodes) void post(relay, `${V1}/servers/register`, { server_public_key: key, capabilities: capabilities() });
  }, 10_000);
  const clients = Array.from({ length: 4096 }, () => fakeKey());
  const ciphertext = Buffer.from(payload('q', 0, 3 * KiB)).toString('base64'); // 4 KiB as base64
  let held = 0;
  let refused = null;
  const deadline = Date.now() + SECONDS * 1000;
  await lanes(32, MAX, deadline, async (w, i) => {
    const res = await postFull(relay, `${V1}/requests`, { server_public_key: nodes[i % NODES], client_public_key: clients[i % clients.length], request_id: rid(i), protocol: PROTOCOL, version: 1, ciphertext, cipherkey: 'a2V5', iv: 'aXY=', cancel_token: rid(i) });
    if (res.status === 200 || res.status === 202) {
      held += 1;
      return true;
    }
    refused ??= res;
    return false;
  });
  clearInterval(renew);
  return { held, next: refused ? refusal(refused) : bound(held) };
}

async function legacyAnswers(relay) {
  let held = 0;
  let refused = null;
  const answered = [];
  const deadline = Date.now() + SECONDS * 1000;
  await lanes(NODES, MAX, deadline, async (w, i) => {
    const node = legacyNode(w);
    const ask = () => postFull(relay, '/faucet', { server_public_key: node, client_public_key: clientKey(i), chat_history: 'request', cipherkey: 'k', iv: 'i' });
    let asked = await ask();
    if (asked.status === 404) {
      await post(relay, '/sink', { server_public_key: node }); // registers the node
      asked = await ask();
    }
    if (asked.status !== 200) {
      refused ??= asked;
      return false;
    }
    const work = await post(relay, '/sink', { server_public_key: node });
    const client = work.body?.client_public_key;
    if (typeof client !== 'string') throw new Error(`/sink handed out no work: ${JSON.stringify(work.body)}`);
    const index = Number(client.slice(clientKey('').length));
    const res = await postFull(relay, '/source', { client_public_key: client, chat_history: payload('l', index), cipherkey: 'ck', iv: 'iv' });
    if (res.status !== 200) {
      refused ??= res;
      return false;
    }
    held += 1;
    answered.push(index);
    return true;
  });
  const collect = await collected(answered, async (i) => {
    const res = await post(relay, '/retrieve', { client_public_key: clientKey(i) });
    return res.status === 200 && res.body?.chat_history === payload('l', i);
  });
  return { held, next: refused ? refusal(refused) : bound(held), collected: collect };
}

async function v1Answers(relay) {
  const nodes = [];
  for (let w = 0; w < NODES; w += 1) {
    const key = fakeKey();
    const reg = await post(relay, `${V1}/servers/register`, { server_public_key: key, capabilities: capabilities() });
    nodes.push({ key, credential: reg.body?.control_credential });
  }
  const clients = new Map();
  const client = (i) => {
    if (!clients.has(i % 4096)) clients.set(i % 4096, fakeKey());
    return clients.get(i % 4096);
  };
  let held = 0;
  let refused = null;
  const answered = [];
  const deadline = Date.now() + SECONDS * 1000;
  await lanes(NODES, MAX, deadline, async (w, i) => {
    const node = nodes[w];
    const requestId = rid(i);
    const asked = await postFull(relay, `${V1}/requests`, { server_public_key: node.key, client_public_key: client(i), request_id: requestId, protocol: PROTOCOL, version: 1, ciphertext: 'Y2lwaGVy', cipherkey: 'a2V5', iv: 'aXY=', cancel_token: rid(i) });
    if (asked.status !== 202 && asked.status !== 200) {
      refused ??= asked;
      return false;
    }
    const work = await post(relay, `${V1}/servers/poll`, { server_public_key: node.key, control_credential: node.credential });
    if (work.body?.request_id !== requestId) throw new Error(`poll handed out ${JSON.stringify(work.body).slice(0, 200)}`);
    const res = await postFull(relay, `${V1}/responses`, { client_public_key: client(i), request_id: requestId, protocol: PROTOCOL, version: 1, chat_history: payload('v', i), cipherkey: 'ck', iv: 'iv' });
    if (res.status !== 200) {
      refused ??= res;
      return false;
    }
    held += 1;
    answered.push(i);
    return true;
  });
  const collect = await collected(answered, async (i) => {
    const res = await post(relay, `${V1}/responses/retrieve`, { client_public_key: client(i), request_id: rid(i) });
    return res.status === 200 && (res.body?.chat_history ?? res.body?.ciphertext) === payload('v', i);
  });
  return { held, next: refused ? refusal(refused) : bound(held), collected: collect };
}

async function collected(indexes, check) {
  let intact = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < indexes.length) {
        if (await check(indexes[next++])) intact += 1;
      }
    }),
  );
  return `${intact}/${indexes.length} intact`;
}

/**
 * Held connections, all at once. The registry is filled until it refuses a new key (its cap,
 * TOKENPLACE_RELAY_MAX_NODES; spec §9: new keys fail at capacity, renewals succeed). --retrieves
 * requests are queued over the nodes and --chats gateway chats (its cap) wait for them; every node
 * claims its share and acknowledges it (/servers/control, as today's nodes do), so nothing is
 * queued and nothing is answered. Then every node holds a poll and every client a retrieve
 * (Prefer: wait=8), raw sockets read at the end, while the relay's own count of the requests it
 * holds (tokenplace_relay_waiting_requests) is read; then one chat more, refused.
 */
async function held(relay) {
  const t0 = Date.now();
  // The clients' keys first: made while the nodes register, they would outlast their leases.
  const clientKeys = Array.from({ length: Number(o.retrieves) }, () => fakeKey());
  const step = (what) => process.stderr.write(`  held: ${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
  const nodes = [];
  let refusedNode = null;
  await lanes(16, 8192, Date.now() + SECONDS * 1000, async () => {
    const key = fakeKey();
    const reg = await postFull(relay, `${V1}/servers/register`, { server_public_key: key, capabilities: capabilities() });
    if (reg.status === 200) {
      nodes.push({ server_public_key: key, control_credential: reg.body.control_credential });
      return true;
    }
    refusedNode ??= reg;
    return false;
  });
  // At the cap a registered node renews, and a new key is still refused.
  const renewal = await postFull(relay, `${V1}/servers/register`, { server_public_key: nodes[0]?.server_public_key, capabilities: capabilities() });
  const newKey = refusedNode ? await postFull(relay, `${V1}/servers/register`, { server_public_key: fakeKey(), capabilities: capabilities() }) : null;
  step(`${nodes.length} nodes registered, the next ${refusal(refusedNode)}`);
  // Until the nodes poll, their 30 s lease is renewed by registering again.
  let renewing = null;
  const renew = setInterval(() => {
    renewing ??= (async () => {
      for (let i = 0; i < nodes.length; i += 256) {
        await Promise.all(nodes.slice(i, i + 256).map((n) => post(relay, `${V1}/servers/register`, { server_public_key: n.server_public_key, capabilities: capabilities() })));
      }
    })().finally(() => (renewing = null));
  }, 10_000);
  const controller = new AbortController();
  const sockets = [];
  try {
    const retrieves = Number(o.retrieves);
    const asks = [];
    let refusedAsk = null;
    await lanes(32, retrieves, Date.now() + SECONDS * 1000, async (w, i) => {
      const client = clientKeys[i];
      const res = await postFull(relay, `${V1}/requests`, { server_public_key: nodes[i % nodes.length].server_public_key, client_public_key: client, request_id: rid(i), protocol: PROTOCOL, version: 1, ciphertext: 'Y2lwaGVy', cipherkey: 'a2V5', iv: 'aXY=', cancel_token: rid(i) });
      if (res.status !== 202 && res.status !== 200) {
        refusedAsk ??= res;
        return false;
      }
      asks.push({ client_public_key: client, request_id: rid(i) });
      return true;
    });
    if (refusedAsk) throw new Error(`request ${asks.length + 1} was refused: ${refusal(refusedAsk)}`);
    // The gateway's chats, to nodes that never answer.
    const chats = Number(o.chats);
    const chat = () =>
      fetch(`${relay.base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'qwen3-8b-instruct', messages: [{ role: 'user', content: 'hold' }] }), signal: controller.signal }).then(
        async (res) => ({ status: res.status, body: await res.json().catch(() => null), headers: { 'retry-after': res.headers.get('retry-after') } }),
        (error) => ({ status: 'error', body: error.message, headers: {} }),
      );
    let chatsEnded = 0;
    let chatEnded = null;
    // 16 at a time, each lot waiting before the next (a burst of 1,024 can outlast a slow Redis's
    // 2 s command timeout: with Redis a placement costs ~20 ms of its time with 1,024 nodes).
    for (let i = 0; i < chats; i += 16) {
      for (let j = i; j < Math.min(chats, i + 16); j += 1) {
        void chat().then((res) => {
          chatsEnded += 1;
          chatEnded ??= res;
        });
      }
      const lot = Math.min(chats, i + 16);
      for (let waiting = 0, until = Date.now() + 60_000; Date.now() < until && waiting + chatsEnded < lot; await sleep(100)) {
        waiting = await waitingRequests(relay);
      }
    }
    step(`${asks.length} requests queued, ${chats - chatsEnded} gateway chats waiting`);
    clearInterval(renew);
    await renewing;
    // Every node claims and acknowledges what is queued for it, until a poll is held empty (a round
    // again if work moved meanwhile: a gateway chat whose node lapsed goes to another).
    const expected = asks.length + chats - chatsEnded;
    let claimed = 0;
    let emptyHeldMs = Infinity;
    for (let round = 0; round < 3 && claimed < expected; round += 1) {
      await Promise.all(
        nodes.map(async (node) => {
          for (;;) {
            const asked = Date.now();
            const work = await post(relay, `${V1}/servers/poll`, node);
            if (typeof work.body?.request_id !== 'string') {
              emptyHeldMs = Math.min(emptyHeldMs, Date.now() - asked);
              return;
            }
            claimed += 1;
            await post(relay, `${V1}/servers/control`, { ...node, request_id: work.body.request_id });
          }
        }),
      );
    }
    step(`${claimed} claimed and acknowledged; each node's next poll held ≥ ${emptyHeldMs} ms`);
    // Then at once: every node holds a poll, every client a retrieve.
    const port = Number(new URL(relay.base).port);
    // Every connection is opened first and its request written only once all are open: a
    // retrieve's hold (8 s at most) then starts for all of them within the relay's own time to
    // take 6,024 requests, not the bench's (and podman's port forward's) time to open sockets.
    const open = (path, body, headers = '') =>
      new Promise((resolve) => {
        const data = JSON.stringify(body);
        const h = { sentAt: 0, answeredAt: 0, text: '', closed: false, send: () => {} };
        const s = net.connect({ port, host: '127.0.0.1' }, () => {
          h.send = () => {
            h.sentAt = Date.now();
            s.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(data)}\r\nConnection: close\r\n${headers}\r\n${data}`);
          };
          resolve(h);
        });
        s.on('data', (c) => {
          h.answeredAt ||= Date.now();
          h.text += c.toString();
        });
        s.on('error', (e) => {
          h.text ||= `error ${e.message}`;
          resolve(h);
        });
        s.on('close', () => (h.closed = true));
        sockets.push(s);
      });
    const polls = [];
    const gets = [];
    for (let i = 0; i < nodes.length; i += 256) polls.push(...(await Promise.all(nodes.slice(i, i + 256).map((n) => open(`${V1}/servers/poll`, n)))));
    for (let i = 0; i < asks.length; i += 256) gets.push(...(await Promise.all(asks.slice(i, i + 256).map((a) => open(`${V1}/responses/retrieve`, a, 'Prefer: wait=8\r\n')))));
    const cpu0 = threadCpuMs(relay.pid).main;
    for (const h of [...polls, ...gets]) h.send();
    // What the relay holds, read until everything is in or the first retrieve's hold ran out;
    // sentMs is how long the relay took to hold them all (first request written → fullest count).
    const all = polls.length + gets.length + chats - chatsEnded;
    let atOnce = 0;
    let full = null;
    let fullAt = Date.now();
    for (const until = Math.max(gets[0].sentAt + 8000, Date.now() + 500); Date.now() < until && atOnce < all; ) {
      const now = await waitingRequests(relay);
      if (now > atOnce) {
        atOnce = now;
        fullAt = Date.now();
        full = relay.mem();
      }
    }
    const sentMs = fullAt - polls[0].sentAt;
    const cpuMs = Math.round(threadCpuMs(relay.pid).main - cpu0);
    const healthz = (await request(relay.base, 'GET', '/healthz').catch(() => ({ status: 'down' }))).status;
    const nextChat = await chat();
    step(`${polls.length} polls + ${gets.length} retrieves written at once, all held within ${sentMs} ms (${cpuMs} ms of the relay's CPU); ${atOnce} held at once; chat ${chats + 1}: ${refusal(nextChat)}`);
    // Each ends when its hold runs out: poll 200 "No requests available", retrieve 202 pending.
    await sleep(Math.max(0, polls.at(-1).sentAt + 11_000 - Date.now(), gets.at(-1).sentAt + 9_000 - Date.now()));
    for (const until = Date.now() + 30_000; Date.now() < until && [...polls, ...gets].some((h) => !h.closed); ) await sleep(200);
    const ended = (hs, holdMs) => {
      const by = {};
      for (const h of hs) {
        const status = /^HTTP\/1\.1 (\d+)/.exec(h.text)?.[1] ?? 'none';
        const what = h.text.includes('No requests available') ? ' no work' : h.text.includes('"status":"pending"') ? ' pending' : h.text.includes('relay_overloaded') ? ' relay_overloaded' : '';
        // Past the held-wait budget a retrieve is answered at once, saying so (RFC 7240).
        const unheld = /^preference-applied: wait=0\r?$/im.test(h.text) ? ' not held' : '';
        const early = h.answeredAt && h.answeredAt - h.sentAt < holdMs ? ' early' : '';
        const key = `${status}${what}${unheld}${early}`;
        by[key] = (by[key] ?? 0) + 1;
      }
      return by;
    };
    const chatsHeld = chats - chatsEnded;
    const notHeld = await heldWaitsRefused(relay);
    return {
      held: `${polls.length} polls + ${gets.length} retrieves + ${chatsHeld} gateway chats; ${atOnce} held at once${notHeld > 0 ? `; ${notHeld} not held (the held-wait budget)` : ''}`,
      next: `node ${nodes.length + 1}: ${refusal(newKey ?? refusedNode)}, renewal ${renewal.status}; chat ${chats + 1}: ${refusal(nextChat)}`,
      rssKiB: full?.rssKiB,
      registry: { nodes: nodes.length, nextNode: refusal(newKey ?? refusedNode), renewal: renewal.status },
      claimed,
      polls: { sent: polls.length, ended: ended(polls, 9000) },
      retrieves: { sent: gets.length, ended: ended(gets, 7000) },
      sentMs,
      cpuMs,
      chats: { sent: chats, held: chatsHeld, ended: chatEnded ? refusal(chatEnded) : null, next: refusal(nextChat) },
      waitingAtOnce: atOnce,
      refusedByBudget: notHeld,
      healthz,
    };
  } finally {
    clearInterval(renew);
    controller.abort();
    for (const s of sockets) s.destroy();
  }
}

/** The relay's count of requests it holds open (tokenplace_relay_waiting_requests), or -1. */
async function waitingRequests(relay) {
  const res = await request(relay.base, 'GET', '/metrics').catch(() => null);
  const m = typeof res?.body === 'string' ? /^tokenplace_relay_waiting_requests (\d+)/m.exec(res.body) : null;
  return m ? Number(m[1]) : -1;
}

/** Waits the relay did not hold for its held-wait budget (tokenplace_relay_held_waits_refused_total), or -1. */
async function heldWaitsRefused(relay) {
  const res = await request(relay.base, 'GET', '/metrics').catch(() => null);
  const m = typeof res?.body === 'string' ? /^tokenplace_relay_held_waits_refused_total (\d+)/m.exec(res.body) : null;
  return m ? Number(m[1]) : -1;
}

async function flood(relay) {
  await post(relay, '/sink', { server_public_key: legacyNode(0) });
  let held = 0;
  let refused = null;
  const big = 'x'.repeat(MiB - 2 * KiB);
  const deadline = Date.now() + SECONDS * 1000;
  await lanes(4, Math.min(MAX, 2000), deadline, async (w, i) => {
    const res = await postFull(relay, '/faucet', { server_public_key: legacyNode(0), client_public_key: clientKey(i), chat_history: big, cipherkey: 'k', iv: 'i' });
    if (res.status === 200) {
      held += 1;
      return true;
    }
    refused ??= res;
    return false;
  });
  const alive = (await request(relay.base, 'GET', '/livez').catch(() => ({ status: 'down' }))).status;
  return { held: `${held} × 1 MiB`, next: `${refusal(refused)}; /livez ${alive}` };
}

const PHASES = { queued, legacy: legacyAnswers, v1: v1Answers, held, flood };
const mib = (kib) => (kib === undefined || kib === null || Number.isNaN(kib) ? '—' : Math.round(kib / 1024));

async function main() {
  ensureFdLimit(20_000);
  const sets = o.store === 'redis' ? ['state.store=redis'] : [];
  const env = await chartEnv(o.limit, sets);
  let redis = null;
  if (o.runner === 'podman' && spawnSync(PODMAN[0], [...PODMAN.slice(1), 'image', 'exists', o.image]).status !== 0) {
    throw new Error(`image ${o.image} not found: bash scripts/build-image.sh (or --runner process)`);
  }
  if (o.runner === 'process' && !existsSync(join(process.env.BENCH_RELAY_ROOT ?? ROOT, 'dist/main.js'))) {
    throw new Error('dist/main.js is missing: npm run build');
  }
  const results = {};
  let port = Number(o.port);
  try {
    for (const phase of o.phases.split(',')) {
      if (o.store === 'redis') {
        // A fresh Redis per phase, as a fresh relay: what one phase filled must not refuse the next.
        await redis?.stop();
        redis = await startRedis();
        env.TOKENPLACE_RELAY_STATE_STORE = 'redis';
        env.TOKENPLACE_RELAY_REDIS_URL = redis.url;
      }
      const relay = await startRelay(env, port++);
      const t0 = Date.now();
      let r;
      try {
        r = await PHASES[phase](relay);
      } catch (error) {
        r = { held: 'error', next: error.message };
      }
      const m = relay.mem();
      r.rssMiB = mib(r.rssKiB ?? m?.rssKiB);
      r.peakMiB = mib(m?.hwmKiB);
      r.died = relay.dead();
      r.oomKilled = relay.oomKilled();
      r.seconds = Math.round((Date.now() - t0) / 1000);
      delete r.rssKiB;
      results[phase] = r;
      process.stderr.write(`${o.limit} ${o.store} ${phase}: ${JSON.stringify(r)}\n`);
      await relay.stop();
    }
  } finally {
    await redis?.stop();
  }
  const cell = (p) => (results[p] ? `${results[p].held}${results[p].collected ? ` (${results[p].collected})` : ''}` : '—');
  const peak = Math.max(...Object.values(results).map((r) => (typeof r.peakMiB === 'number' ? r.peakMiB : 0)));
  const next = Object.entries(results)
    .map(([p, r]) => `${p}: ${r.next}${r.oomKilled ? ' OOMKILLED' : r.died ? ' DIED' : ''}`)
    .join('; ');
  console.log(JSON.stringify({ limit: o.limit, store: o.store, runner: o.runner, image: o.runner === 'podman' ? o.image : null, results }));
  console.log(`| ${o.limit} | ${o.store} | ${cell('queued')} | legacy ${cell('legacy')}; API v1 ${cell('v1')} | ${cell('held')} | ${peak} MiB | ${next} |`);
}

await main();
process.exit(0);
