#!/usr/bin/env node
// Scale checks for one relay process (memory store unless --store redis with REDIS_URL):
//  1. held: 2,000 long-polling API v1 nodes and 2,000 clients holding a pending retrieve
//     (`Prefer: wait=8`) at once, on requests a worker node has claimed; then every one of them is
//     answered (work for each node, the worker's answer for each client). A poll or retrieve that
//     is not answered with its work or answer counts as an error.
//  2. queued: 10,000 queued 2 KiB requests; RSS and heap growth per request.
//  3. curve: per-operation latency with 10, 100, 1,000 and 10,000 nodes and queued requests. Every
//     timed call must be accepted (its status, and the work or answer it carries): the run stops
//     with the status and body otherwise. A point of N nodes needs 2N + 1 real RSA-2048 node keys
//     (N API v1, one probe, N legacy: one key cannot be both), taken from the cache that
//     nodePublicKeys keeps in the temp directory; the 10,000 point needs 20,001. Generating a key
//     takes ~33 ms of a libuv thread on the 2-core bench machine (~30 keys/s), so the first run
//     with 10,000 spends about 10 minutes making keys; later runs read them from the cache.
//  4. placement (not in the default parts): the scheduler's cost by registry size. For each of
//     --placement (1, 64 and 1,024 API v1 nodes, the registry's default cap), a relay on a
//     redis-server of its own (--store redis) or on memory: --samples sequential
//     `GET /api/v1/relay/servers/next` (every node matching: the scheduler weighs them all), their
//     p50/p99, the Redis time of one placement script (INFO commandstats, EVALSHA + EVAL), and
//     --burst of them at once (how long until the last is answered, and how many were not 200).
//     --before <checkout> measures that build first in the same run (before/after).
// usage: node bench/scale.mjs [--parts held,queued,curve,placement] [--store memory|redis]  (needs npm run build)
//   e.g. node bench/scale.mjs --parts placement --store redis --before /tmp/relay-at-main
import { randomBytes } from 'node:crypto';
import { cli, request, startRedis, startRelay, table, nodePublicKeys, peerLibrary } from './lib.mjs';

const values = cli(
  'usage: node bench/scale.mjs [--parts held,queued,curve,placement] [--store memory|redis] [--held N] [--queued N] [--curve 10,100,1000,10000] [--samples N] [--placement 1,64,1024] [--burst N] [--before <checkout>]',
  {
    parts: { type: 'string', default: 'held,queued,curve' },
    store: { type: 'string', default: 'memory' },
    held: { type: 'string', default: '2000' },
    queued: { type: 'string', default: '10000' },
    curve: { type: 'string', default: '10,100,1000,10000' },
    samples: { type: 'string', default: '300' },
    placement: { type: 'string', default: '1,64,1024' },
    burst: { type: 'string', default: '1024' },
    before: { type: 'string', default: '' },
  },
);
const storeEnv =
  values.store === 'redis'
    ? { TOKENPLACE_RELAY_STATE_STORE: 'redis', TOKENPLACE_RELAY_REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', TOKENPLACE_RELAY_REDIS_KEY_PREFIX: `bench${Date.now()}:` }
    : {};

const post = (base, path, body, headers) => request(base, 'POST', path, body, headers);
const PAYLOAD = 'c'.repeat(2048);
const ANSWER = Buffer.from('answer').toString('base64');
const caps = { supported_model_ids: ['qwen3-8b-instruct'], max_concurrency: 1 };

/**
 * An API v1 `/requests` body the relay accepts (as bench/cycle.mjs sends it): the protocol id and
 * version, a wrapped key of 256 bytes and an IV of 16 (base64), a cancel token. `node`: a key from
 * nodePublicKeys, registered.
 */
function v1Request(node, client, requestId, ciphertext) {
  return {
    server_public_key: node,
    client_public_key: client,
    request_id: requestId,
    protocol: peerLibrary().PROTOCOL_ID,
    version: 1,
    ciphertext,
    cipherkey: randomBytes(256).toString('base64'),
    iv: randomBytes(16).toString('base64'),
    cancel_token: randomBytes(16).toString('hex'),
  };
}

/** Throws, with the status and body, unless a call got `status`. */
function expect(what, res, status = 200) {
  if (res.status !== status) {
    throw new Error(`${what}: expected ${status}, got ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
  }
  return res;
}

async function processStats(base) {
  const { body } = await request(base, 'GET', '/metrics');
  const read = (name) => Number((body.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm')) ?? [])[1] ?? NaN);
  return { rssMiB: read('process_resident_memory_bytes') / 2 ** 20, heapMiB: read('nodejs_heap_size_used_bytes') / 2 ** 20 };
}

async function inBatches(n, size, fn) {
  for (let i = 0; i < n; i += size) {
    await Promise.all(Array.from({ length: Math.min(size, n - i) }, (_, k) => fn(i + k)));
  }
}

async function held() {
  const N = Number(values.held);
  const keys = await nodePublicKeys(N + 1); // API v1 admits only real RSA node keys
  const worker = keys[N];
  const relay = await startRelay(5101, { ...storeEnv, TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '60', TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '120' });
  try {
    const before = await processStats(relay.base);
    await inBatches(N, 200, async (i) => expect(`register node ${i}`, await post(relay.base, '/api/v1/relay/servers/register', { server_public_key: keys[i], capabilities: caps })));
    expect('register worker', await post(relay.base, '/api/v1/relay/servers/register', { server_public_key: worker, capabilities: caps }));
    await inBatches(N, 200, async (i) => expect(`request p${i}`, await post(relay.base, '/api/v1/relay/requests', v1Request(worker, `held-client-${i}`, `p${i}`, 'c'))));
    // The worker node claims every client's request, so the clients wait on requests in flight and
    // the worker may answer them (only the node holding a request may: 403 otherwise).
    for (let i = 0; i < N; i += 1) {
      const claim = expect(`worker claim ${i}`, await post(relay.base, '/api/v1/relay/servers/poll', { server_public_key: worker }));
      if (typeof claim.body?.request_id !== 'string') throw new Error(`worker claim ${i}: no work in ${JSON.stringify(claim.body).slice(0, 300)}`);
    }
    const t0 = performance.now();
    const polls = Array.from({ length: N }, (_, i) => post(relay.base, '/api/v1/relay/servers/poll', { server_public_key: keys[i] }).then((r) => ({ ...r, at: performance.now() }), (e) => ({ status: 0, error: String(e) })));
    const waits = Array.from({ length: N }, (_, i) =>
      post(relay.base, '/api/v1/relay/responses/retrieve', { client_public_key: `held-client-${i}`, request_id: `p${i}` }, { Prefer: 'wait=8' }).then((r) => ({ ...r, at: performance.now() }), (e) => ({ status: 0, error: String(e) })),
    );
    await new Promise((r) => setTimeout(r, 1500));
    const during = await processStats(relay.base);
    const release = performance.now();
    await inBatches(N, 200, async (i) => {
      const [work, answer] = await Promise.all([
        post(relay.base, '/api/v1/relay/requests', v1Request(keys[i], `w${i}`, `w${i}`, 'c')),
        post(relay.base, '/api/v1/relay/responses', { client_public_key: `held-client-${i}`, request_id: `p${i}`, protocol: peerLibrary().PROTOCOL_ID, version: 1, ciphertext: ANSWER, cipherkey: randomBytes(256).toString('base64'), iv: randomBytes(16).toString('base64') }),
      ]);
      expect(`work w${i}`, work);
      expect(`answer p${i}`, answer);
    });
    const [p, w] = await Promise.all([Promise.all(polls), Promise.all(waits)]);
    const releaseMs = Math.round(Math.max(...p.map((x) => x.at ?? 0), ...w.map((x) => x.at ?? 0)) - release);
    const pollsWithWork = p.filter((x, i) => x.status === 200 && x.body?.request_id === `w${i}`).length;
    const answered = w.filter((x) => x.status === 200 && x.body?.ciphertext === ANSWER).length;
    return {
      part: 'held',
      nodes: N,
      clients: N,
      pollsAnsweredWithWork: pollsWithWork,
      retrievesAnswered200: answered,
      errors: 2 * N - pollsWithWork - answered,
      heldForMs: Math.round(release - t0),
      allAnsweredWithinMs: releaseMs,
      rssIdleMiB: Math.round(before.rssMiB),
      rssHoldingMiB: Math.round(during.rssMiB),
    };
  } finally {
    await relay.stop();
  }
}

async function queued() {
  const N = Number(values.queued);
  const relay = await startRelay(5102, { ...storeEnv, TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '3600' }, ['--expose-gc'], 'bench/gc-relay.cjs');
  const collect = async () => {
    relay.child.kill('SIGUSR2');
    await new Promise((r) => setTimeout(r, 500));
  };
  // Ten real node keys (API v1 admits nothing else); the requests are spread over them.
  const nodes = await nodePublicKeys(10);
  try {
    for (const [n, key] of nodes.entries()) expect(`register node ${n}`, await post(relay.base, '/api/v1/relay/servers/register', { server_public_key: key, capabilities: caps }));
    const warm = 500;
    await inBatches(warm, 100, async (i) => expect(`warm-up request ${i}`, await post(relay.base, '/api/v1/relay/requests', v1Request(nodes[i % 10], `warm-${i}`, `w${i}`, PAYLOAD))));
    await collect();
    const before = await processStats(relay.base);
    const refused = new Map();
    let accepted = 0;
    await inBatches(N, 200, async (i) => {
      const r = await post(relay.base, '/api/v1/relay/requests', v1Request(nodes[i % 10], `qc-${i}`, `q${i}`, PAYLOAD));
      if (r.status === 200) {
        accepted += 1;
      } else {
        const why = `${r.status} ${r.body?.error?.message ?? ''}`.trim();
        refused.set(why, (refused.get(why) ?? 0) + 1);
      }
    });
    await collect();
    const after = await processStats(relay.base);
    return {
      part: 'queued',
      queued: N,
      accepted,
      ...(refused.size ? { refused: [...refused].map(([k, n]) => `${k} x${n}`).join(', ') } : {}),
      rssBeforeMiB: Math.round(before.rssMiB),
      rssAfterMiB: Math.round(after.rssMiB),
      rssPerRequestBytes: Math.round(((after.rssMiB - before.rssMiB) * 2 ** 20) / N),
      heapPerRequestBytes: Math.round(((after.heapMiB - before.heapMiB) * 2 ** 20) / N),
    };
  } finally {
    await relay.stop();
  }
}

/**
 * Median ms of `samples` sequential calls of `fn(i)` (after 50 warm-up calls, `fn(samples + i)`).
 * Every call, warm-up included, must get `status` and pass `ok(body)`: else it throws with the
 * status and body, so an error answer is never timed as if it were the operation.
 */
const always = () => true;

async function timed(what, samples, fn, { status = 200, ok = always } = {}) {
  const check = (i, res) => {
    if (res.status !== status || !ok(res.body)) {
      throw new Error(`${what} #${i}: expected ${status}${ok === always ? '' : ` and ${ok.name}`}, got ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
    }
  };
  for (let i = 0; i < 50; i += 1) {
    check(samples + i, await fn(samples + i)); // warm-up (JIT), not measured
  }
  const times = [];
  for (let i = 0; i < samples; i += 1) {
    const t = performance.now();
    const res = await fn(i);
    times.push(performance.now() - t);
    check(i, res);
  }
  times.sort((a, b) => a - b);
  return Math.round(times[Math.floor(times.length / 2)] * 1000) / 1000;
}

const claimsWork = (body) => typeof body?.request_id === 'string';
const carriesAnswer = (body) => body?.ciphertext === ANSWER;
const carriesChat = (body) => body?.chat_history === PAYLOAD;

/**
 * One point of the curve: N API v1 nodes and N legacy nodes, each v1 node with a request queued,
 * then every operation timed against a probe node (v1) or the legacy nodes. Node keys are real
 * (nodePublicKeys), 2N + 1 of them: a key is either a v1 or a legacy node on one relay, never both.
 */
async function curvePoint(N, port) {
  const keys = await nodePublicKeys(2 * N + 1);
  const v1Keys = keys.slice(0, N);
  const probe = keys[N];
  const legacyKeys = keys.slice(N + 1);
  const namesProbe = (body) => body?.server_public_key === probe;
  const v1Set = new Set(v1Keys);
  const namesV1Node = (body) => v1Set.has(body?.server_public_key);
  const legacySet = new Set(legacyKeys);
  const namesLegacyNode = (body) => legacySet.has(body?.server_public_key);
  const relay = await startRelay(port, { ...storeEnv, TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '3600', TOKENPLACE_RELAY_SINK_STALE_SECONDS: '3600' });
  const S = Number(values.samples);
  const sealed = () => ({ cipherkey: randomBytes(256).toString('base64'), iv: randomBytes(16).toString('base64') });
  try {
    await inBatches(N, 200, async (i) => expect(`register v1 node ${i}`, await post(relay.base, '/api/v1/relay/servers/register', { server_public_key: v1Keys[i], capabilities: caps })));
    await inBatches(N, 200, async (i) => expect(`legacy node ${i} /sink`, await post(relay.base, '/sink', { server_public_key: legacyKeys[i] })));
    await inBatches(N, 200, async (i) => expect(`background request ${i}`, await post(relay.base, '/api/v1/relay/requests', v1Request(v1Keys[i], `bg${i}`, `bg${i}`, PAYLOAD))));
    const row = { nodes: N, queued: N };
    // The probe may hold every claimed request at once (128 is the spec's ceiling).
    expect('register probe', await post(relay.base, '/api/v1/relay/servers/register', { server_public_key: probe, capabilities: { supported_model_ids: ['probe-model'], max_concurrency: 128 } }));
    row['requests'] = await timed('requests', S, (i) => post(relay.base, '/api/v1/relay/requests', v1Request(probe, `pc${i}`, `pr${i}`, PAYLOAD)));
    row['poll(claim)'] = await timed('poll(claim)', S, () => post(relay.base, '/api/v1/relay/servers/poll', { server_public_key: probe }), { ok: claimsWork });
    row['responses'] = await timed('responses', S, (i) => post(relay.base, '/api/v1/relay/responses', { client_public_key: `pc${i}`, request_id: `pr${i}`, protocol: peerLibrary().PROTOCOL_ID, version: 1, ciphertext: ANSWER, ...sealed() }));
    row['retrieve'] = await timed('retrieve', S, (i) => post(relay.base, '/api/v1/relay/responses/retrieve', { client_public_key: `pc${i}`, request_id: `pr${i}` }), { ok: carriesAnswer });
    row['servers/next'] = await timed('servers/next', S, () => request(relay.base, 'GET', '/api/v1/relay/servers/next?model=probe-model'), { ok: namesProbe });
    row['servers/next(all N match)'] = await timed('servers/next(all N match)', S, () => request(relay.base, 'GET', '/api/v1/relay/servers/next?model=qwen3-8b-instruct'), { ok: namesV1Node });
    row['faucet'] = await timed('faucet', S, (i) => post(relay.base, '/faucet', { server_public_key: legacyKeys[i % N], client_public_key: `lc${i}`, chat_history: PAYLOAD, ...sealed() }));
    // Claims what faucet queued: the same indexes, so each legacy node has one request per claim.
    row['sink(claim)'] = await timed('sink(claim)', S, (i) => post(relay.base, '/sink', { server_public_key: legacyKeys[i % N] }), { ok: carriesChat });
    row['next_server'] = await timed('next_server', S, () => request(relay.base, 'GET', '/next_server'), { ok: namesLegacyNode });
    return row;
  } finally {
    await relay.stop();
  }
}

function percentile(sorted, p) {
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] * 100) / 100;
}

/** Calls and microseconds Redis spent in scripts (EVALSHA, and EVAL the first time). */
async function scriptTime(admin) {
  const stats = await admin.info('commandstats');
  let calls = 0;
  let usec = 0;
  for (const m of stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+),usec=(\d+)/gm)) {
    calls += Number(m[1]);
    usec += Number(m[2]);
  }
  return { calls, usec };
}

async function placementPoint(N, port, label) {
  const redis = values.store === 'redis' ? await startRedis() : null;
  const env = redis
    ? { TOKENPLACE_RELAY_STATE_STORE: 'redis', TOKENPLACE_RELAY_REDIS_URL: redis.url, TOKENPLACE_RELAY_REDIS_KEY_PREFIX: '{bench}:' }
    : {};
  const relay = await startRelay(port, { ...env, TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '3600' });
  const S = Number(values.samples);
  const next = () => request(relay.base, 'GET', '/api/v1/relay/servers/next?model=qwen3-8b-instruct');
  try {
    const keys = await nodePublicKeys(N);
    await inBatches(N, 64, async (i) => {
      const r = await post(relay.base, '/api/v1/relay/servers/register', { server_public_key: keys[i], capabilities: caps });
      if (r.status !== 200) throw new Error(`register ${i}: ${r.status}`);
    });
    for (let i = 0; i < 50; i += 1) await next(); // warm-up (JIT, script cache), not measured
    const before = redis ? await scriptTime(redis.admin) : null;
    const times = [];
    for (let i = 0; i < S; i += 1) {
      const t = performance.now();
      const r = await next();
      times.push(performance.now() - t);
      if (r.status !== 200) throw new Error(`servers/next: ${r.status}`);
    }
    const after = redis ? await scriptTime(redis.admin) : null;
    times.sort((a, b) => a - b);
    const t0 = performance.now();
    const burst = await Promise.all(Array.from({ length: Number(values.burst) }, () => next().catch(() => ({ status: 0 }))));
    const burstMs = Math.round(performance.now() - t0);
    return {
      build: label,
      nodes: N,
      p50Ms: percentile(times, 0.5),
      p99Ms: percentile(times, 0.99),
      redisMsPerPlacement: after ? Math.round(((after.usec - before.usec) / Math.max(1, after.calls - before.calls)) * 10) / 10000 : '',
      burst: Number(values.burst),
      burstAllAnsweredMs: burstMs,
      burstNot200: burst.filter((r) => r.status !== 200).length,
      burstRefusals: Object.entries(
        burst
          .filter((r) => r.status !== 200)
          .reduce((out, r) => {
            const key = `${r.status} ${r.body?.error?.code ?? r.body?.error?.type ?? ''}`.trim();
            out[key] = (out[key] ?? 0) + 1;
            return out;
          }, {}),
      )
        .map(([k, n]) => `${k} x${n}`)
        .join(', '),
    };
  } finally {
    await relay.stop();
    await redis?.stop();
  }
}

const results = [];
const parts = values.parts.split(',');
if (parts.includes('held')) results.push(await held());
if (parts.includes('queued')) results.push(await queued());
for (const r of results) process.stdout.write(`${JSON.stringify(r)}\n`);
if (parts.includes('curve')) {
  const rows = [];
  let port = 5110;
  for (const N of values.curve.split(',').map(Number)) {
    const row = await curvePoint(N, port++);
    process.stdout.write(`${JSON.stringify({ part: 'curve', ...row })}\n`);
    rows.push(row);
  }
  process.stdout.write(`\nmedian ms per operation (sequential, one client):\n${table(rows, Object.keys(rows[0]))}\n`);
}
if (parts.includes('placement')) {
  const rows = [];
  const builds = values.before ? [['before', values.before], ['after', process.env.BENCH_RELAY_ROOT ?? '']] : [['this', process.env.BENCH_RELAY_ROOT ?? '']];
  let port = 5130;
  for (const [label, root] of builds) {
    if (root) process.env.BENCH_RELAY_ROOT = root;
    else delete process.env.BENCH_RELAY_ROOT;
    for (const N of values.placement.split(',').map(Number)) {
      const row = await placementPoint(N, port++, label);
      process.stdout.write(`${JSON.stringify({ part: 'placement', store: values.store, ...row })}\n`);
      rows.push(row);
    }
  }
  process.stdout.write(`\nplacement (${values.store} store, ${values.samples} sequential GET /servers/next, then ${values.burst} at once):\n${table(rows, Object.keys(rows[0]))}\n`);
}
process.exit(0);
