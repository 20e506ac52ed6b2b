#!/usr/bin/env node
// The OpenAI-compatible gateway (needs npm run build):
//  1. latency: a simulated node that answers at once; the same chat through the gateway
//     (POST /v1/chat/completions) and through the raw E2EE routes (next → requests → retrieve with
//     Prefer: wait, client-side crypto included), sequential, p50/p99; for nodes replying with
//     PKCS#1 v1.5 (today's nodes) and with OAEP.
//  2. held: N gateway chats waiting at once for a node that never answers; RSS/heap per chat.
//  3. burst (issue 22, not in the default parts): --burst chats sent at once against --nodes
//     simulated nodes that answer the moment a poll hands them work (they build the reply from the
//     work's outer request id and client key, so the bench's own CPU stays small; with
//     --node-answers async, the default, a node polls again without waiting for its answer's
//     reply, so admission is not paced by completion). Per key mode: `built` (what the relay under
//     test does: a keygen per chat from a pool of 8 before issue 22, one client key per process
//     after) and `premade` (relay-probe.cjs hands out pre-made keys, so every keygen the relay asks
//     for answers at once). Prints admission (the moment the last work reached a node) and
//     completion rates, chat latency, the keygens the relay asked for, and the relay's CPU per chat
//     from /proc (main thread; other threads: libuv pool and V8 GC), which survives a busy machine.
//     --node-padding: how the nodes wrap their answers (pkcs1: today's HEAD nodes); --unwrap-threads
//     runs one row per TOKENPLACE_GATEWAY_UNWRAP_THREADS value (0: the unwrap on the event loop), with
//     the relay's event-loop delay (p99, max) over the burst.
//     --profile adds the relay's CPU profile (--cpu-prof) per mode. --cpus pins the relay
//     (`taskset -c`); --bench-cpus pins this script (run it on the other core).
//  4. demo (issue 22): the relay with its demo node (`USE_MOCK_LLM=1`, what `npm start --
//     --use_mock_llm` starts), --demo-chats chats sent at once; completion rate and latency, per
//     Node binary of --node-bins (e.g. /usr/bin/node for Node 20).
// Every part runs once per relay checkout of --roots (default: this one), so a before/after is one
// invocation: `--roots .,/work/baseline`. In the burst part, `floor` as a root runs the framework
// floor of a chat instead of a relay (bench/gateway-floor-app.mjs): `--roots .,floor`.
// usage: node bench/gateway.mjs [--parts latency,held,burst,demo] [--roots DIR,DIR] [--samples 100]
//          [--held 500] [--gap 250] [--burst 2000] [--nodes 8] [--polls 4] [--keys built,premade]
//          [--node-answers async|sync] [--node-padding oaep|pkcs1] [--unwrap-threads 0,1] [--cpus 0] [--bench-cpus 1] [--profile] [--demo-chats 500]
//          [--node-bins BIN,BIN]
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cli, peerLibrary, percentile as quantile, pinSelf, premadeKeys, relaySend, request, ROOT, startRelay, summariseProfile, table, threadCpuMs } from './lib.mjs';

const values = cli(
  'usage: node bench/gateway.mjs [--parts latency,held,burst,demo] [--roots DIR,DIR] [--samples 100] [--held 500] [--gap 250] [--burst 2000] [--nodes 8] [--polls 4] [--keys built,premade] [--node-answers async|sync] [--node-padding oaep|pkcs1] [--unwrap-threads N,N] [--cpus LIST] [--bench-cpus LIST] [--profile] [--demo-chats 500] [--node-bins BIN,BIN]',
  {
    parts: { type: 'string', default: 'latency,held' },
    roots: { type: 'string', default: '.' },
    samples: { type: 'string', default: '100' },
    held: { type: 'string', default: '500' },
    gap: { type: 'string', default: '250' },
    burst: { type: 'string', default: '2000' },
    nodes: { type: 'string', default: '8' },
    polls: { type: 'string', default: '4' },
    keys: { type: 'string', default: 'built,premade' },
    'node-answers': { type: 'string', default: 'async' },
    'node-padding': { type: 'string', default: 'oaep' },
    'unwrap-threads': { type: 'string', default: '' },
    cpus: { type: 'string', default: '' },
    'bench-cpus': { type: 'string', default: '' },
    profile: { type: 'boolean', default: false },
    'demo-chats': { type: 'string', default: '500' },
    'node-bins': { type: 'string', default: '' },
  },
);
if (values['bench-cpus']) {
  pinSelf(values['bench-cpus']);
}
/** The relay checkouts to measure: [label, dist/main.js]. */
const ROOTS = values.roots.split(',').map((dir) => {
  if (dir === 'floor') {
    // The framework floor of a chat (bench/gateway-floor-app.mjs): burst part only.
    return ['floor (bare NestJS, same crypto)', join(ROOT, 'bench/gateway-floor-app.mjs')];
  }
  const root = dir === '.' ? ROOT : resolve(dir);
  const commit = spawnSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
  return [`${dir === '.' ? 'this checkout' : dir}${commit ? ` (${commit})` : ''}`, join(root, 'dist/main.js')];
});
const nodeVersion = (bin) => spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout.trim();
const { newIdentity, V1Client, V1Node } = peerLibrary();
const CAPS = { supported_model_ids: ['qwen3-8b-instruct'], max_concurrency: 1 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const post = (base, path, body, headers) => request(base, 'POST', path, body, headers, 600_000);

/** The bench's peers speak through the peer library (dist/peer/), as the smoke check and the demo node do. */
const peerSend = (base) => relaySend(base, { timeoutMs: 600_000 });
const OK_ANSWER = { message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop', usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } };

/** A node that answers the moment a poll hands it work (no control call, no model). */
async function instantNode(base, padding, stop) {
  const node = new V1Node(peerSend(base), newIdentity());
  const registered = await node.register(CAPS);
  const loop = (async () => {
    while (!stop.done) {
      const res = await node.poll(CAPS);
      if (res.status !== 200 || typeof res.body.chat_history !== 'string') {
        continue;
      }
      await node.respond(node.openWork(res.body), OK_ANSWER, padding);
    }
  })();
  return { loop, unregister: () => node.unregister(registered.body.control_credential) };
}

/** The browser's way: one tab key, its own encryption, the raw E2EE routes. */
async function rawChat(base, identity) {
  const client = new V1Client(peerSend(base), identity);
  const next = await client.next('qwen3-8b-instruct', '8k-fast');
  const requestId = randomBytes(16).toString('hex');
  await client.submit(next.body.server_public_key, { model: 'qwen3-8b-instruct', messages: [{ role: 'user', content: 'hi' }], options: {} }, { requestId, cancelToken: randomBytes(16).toString('hex') }, 'oaep');
  for (;;) {
    const res = await client.retrieve(requestId, { Prefer: 'wait=8' });
    if (res.status === 200) {
      return client.openAnswer(res.body).inner.api_v1_response.message.content;
    }
    if (res.status !== 202) {
      throw new Error(`retrieve ${res.status}`);
    }
  }
}

const gatewayChat = async (base) => {
  const res = await post(base, '/v1/chat/completions', { model: 'qwen3-8b-instruct', messages: [{ role: 'user', content: 'hi' }] });
  if (res.status !== 200) {
    throw new Error(`gateway ${res.status} ${JSON.stringify(res.body)}`);
  }
  return res.body.choices[0].message.content;
};

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function alternated(n, gapMs, a, b) {
  const out = [[], []];
  for (let i = 0; i < n; i += 1) {
    for (const [k, fn] of [a, b].entries()) {
      const t0 = performance.now();
      await fn();
      out[k].push(performance.now() - t0);
      await sleep(gapMs);
    }
  }
  return out.map((x) => x.sort((p, q) => p - q));
}

async function latency() {
  const rows = [];
  for (const [label, main] of ROOTS)
  for (const padding of ['pkcs1', 'oaep']) {
    // The pool size only matters to relays from before issue 22 (later ones ignore it, with a warning).
    const relay = await startRelay(5181, { TOKENPLACE_GATEWAY_KEY_POOL_SIZE: '16' }, [], main);
    const stop = { done: false };
    try {
      const node = await instantNode(relay.base, padding, stop);
      const client = newIdentity();
      for (let i = 0; i < 10; i += 1) {
        await gatewayChat(relay.base);
        await rawChat(relay.base, client);
      }
      await sleep(3000); // let the key pool refill
      const n = Number(values.samples);
      const gap = Number(values.gap);
      // Alternated, so both paths see the same moments of a busy machine.
      const [raw, gw] = await alternated(n, gap, () => rawChat(relay.base, client), () => gatewayChat(relay.base));
      const r = (x) => Math.round(x * 10) / 10;
      rows.push({
        relay: label,
        nodeReplyPadding: padding,
        samples: n,
        rawP50Ms: r(percentile(raw, 50)),
        rawP99Ms: r(percentile(raw, 99)),
        gatewayP50Ms: r(percentile(gw, 50)),
        gatewayP99Ms: r(percentile(gw, 99)),
        addedP50Ms: r(percentile(gw, 50) - percentile(raw, 50)),
        addedP99Ms: r(percentile(gw, 99) - percentile(raw, 99)),
      });
      process.stdout.write(`${JSON.stringify(rows.at(-1))}\n`);
      stop.done = true;
      await node.unregister();
    } finally {
      await relay.stop();
    }
  }
  process.stdout.write(`\n${table(rows, Object.keys(rows[0]))}\n`);
}

async function metrics(base) {
  const { body } = await request(base, 'GET', '/metrics');
  const read = (name) => Number((body.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm')) ?? [])[1] ?? NaN);
  return { rssMiB: read('process_resident_memory_bytes') / 2 ** 20, heapMiB: read('nodejs_heap_size_used_bytes') / 2 ** 20, queued: read('tokenplace_relay_queue_depth') };
}

async function held() {
  for (const [label, main] of ROOTS) {
    await heldOne(label, main);
  }
}

async function heldOne(label, main) {
  const N = Number(values.held);
  const relay = await startRelay(5182, { TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '3600', TOKENPLACE_GATEWAY_KEY_POOL_SIZE: '0', TOKENPLACE_GATEWAY_MAX_CONCURRENT: String(N + 10) }, [], main);
  try {
    const silent = new V1Node(peerSend(relay.base), newIdentity());
    const registered = await silent.register(CAPS);
    // One chat first so every lazily built piece exists before the baseline.
    const warm = post(relay.base, '/v1/chat/completions', { model: 'qwen3-8b-instruct', messages: [{ role: 'user', content: 'warm' }] });
    while ((await metrics(relay.base)).queued < 1) {
      await sleep(100);
    }
    await sleep(1000);
    const before = await metrics(relay.base);
    const t0 = performance.now();
    const chats = Array.from({ length: N }, (_, i) => post(relay.base, '/v1/chat/completions', { model: 'qwen3-8b-instruct', messages: [{ role: 'user', content: `held chat ${i} ${'x'.repeat(200)}` }] }));
    let m = before;
    while (m.queued < N + 1) {
      await sleep(250);
      m = await metrics(relay.base);
    }
    const admittedS = (performance.now() - t0) / 1000;
    await sleep(2000);
    const after = await metrics(relay.base);
    await silent.unregister(registered.body.control_credential);
    const results = await Promise.all([warm, ...chats]);
    const statuses = {};
    for (const r of results) {
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    }
    const row = {
      relay: label,
      waiting: N,
      admitSeconds: Math.round(admittedS * 10) / 10,
      rssBeforeMiB: Math.round(before.rssMiB),
      rssAfterMiB: Math.round(after.rssMiB),
      rssPerChatKiB: Math.round(((after.rssMiB - before.rssMiB) * 1024) / N),
      heapBeforeMiB: Math.round(before.heapMiB),
      heapAfterMiB: Math.round(after.heapMiB),
      heapPerChatKiB: Math.round(((after.heapMiB - before.heapMiB) * 1024) / N),
      endedWith: JSON.stringify(statuses),
    };
    process.stdout.write(`${JSON.stringify(row)}\n\n${table([row], Object.keys(row))}\n`);
  } finally {
    await relay.stop();
  }
}

/** What a profiled function is doing, by its name and file (first match wins). */
const CATEGORIES = [
  ['RSA and key objects (node:crypto)', /crypto\/(cipher|keys|keygen)|createPrivateKey|createPublicKey|KeyObject/],
  ['other crypto (AES, random, hashes)', /node:internal\/crypto|randomFill|randomBytes/],
  ['garbage collector', /^\(garbage collector\)/],
  ['socket writes and reads', /writeUtf8String|writev|writeBuffer|^\(anonymous\) node:net|node:internal\/stream_base|onStreamRead|base64Write/],
  ['node:http', /node:_http|node:internal\/http/],
  ['streams, events, timers, microtasks', /node:internal\/streams|node:events|node:internal\/timers|runMicrotasks|task_queues|nextTick/],
  ['NestJS', /nm:@nestjs/],
  ['Express, router, body parsing', /nm:(express|router|body-parser|raw-body|finalhandler|iconv-lite|type-is|content-type|on-finished|parseurl)/],
  ['class-validator, class-transformer', /nm:class-(validator|transformer)/],
  ['prom-client, pino', /nm:(prom-client|pino|sonic-boom)/],
  ['relay code (dist/)', /dist\//],
  ['JSON', /JSON|stringify|parse /],
];

/** A node that answers each piece of work at once from its outer fields (no decryption of its own). */
async function fastNode(base, stop, received) {
  const node = new V1Node(peerSend(base), newIdentity());
  const caps = { supported_model_ids: ['qwen3-8b-instruct'], max_concurrency: 64 };
  const registered = await node.register(caps);
  const loop = async () => {
    while (!stop.done) {
      const res = await node.poll();
      if (res.status !== 200 || typeof res.body.request_id !== 'string') {
        continue;
      }
      received.push(performance.now());
      // Answered from the outer fields alone: the bench's own CPU stays small.
      const answer = () => node.respond({ requestId: res.body.request_id, clientKey: res.body.client_public_key }, OK_ANSWER, values['node-padding']);
      if (values['node-answers'] === 'sync') {
        await answer();
      } else {
        answer().catch(() => undefined); // the chat's own status says whether it arrived
      }
    }
  };
  for (let i = 0; i < Number(values.polls); i += 1) {
    loop().catch(() => undefined); // the relay stops under it at the end
  }
  return { unregister: () => node.unregister(registered.body.control_credential) };
}

async function burst() {
  const N = Number(values.burst);
  const rows = [];
  const profiles = [];
  for (const [label, main] of ROOTS)
  for (const mode of values.keys.split(',').map((k) => (k === 'keygen' ? 'built' : k)))
  for (const threads of values['unwrap-threads'].split(',')) {
    const dir = values.profile ? mkdtempSync(join(tmpdir(), 'relay-burst-prof-')) : null;
    const env = {
      ...(threads === '' ? {} : { TOKENPLACE_GATEWAY_UNWRAP_THREADS: threads }),
      TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '3600',
      // The default cap (1,024) would refuse half of a 2,000 burst with 503: not what is measured.
      TOKENPLACE_GATEWAY_MAX_CONCURRENT: String(N + 100),
      ...(mode === 'premade' ? { BENCH_PROBE_KEYS: premadeKeys() } : {}),
    };
    const relay = await startRelay(5184, env, dir ? ['--cpu-prof', '--cpu-prof-dir', dir] : [], main, { probe: true, cpus: values.cpus });
    const stop = { done: false };
    const received = [];
    try {
      const nodes = await Promise.all(Array.from({ length: Number(values.nodes) }, () => fastNode(relay.base, stop, received)));
      for (let i = 0; i < 20; i += 1) {
        await gatewayChat(relay.base);
      }
      await sleep(mode === 'built' ? 5000 : 500); // a keygen pool (before issue 22) refills
      received.length = 0;
      const cpu0 = threadCpuMs(relay.pid);
      const keys0 = await relay.probe('keygen');
      await relay.probe('eld'); // reset the event-loop delay histogram
      const t0 = performance.now();
      const chats = await Promise.all(
        Array.from({ length: N }, async (_, i) => {
          const sent = performance.now();
          const res = await post(relay.base, '/v1/chat/completions', { model: 'qwen3-8b-instruct', messages: [{ role: 'user', content: `burst chat ${i}` }] }).catch((e) => ({ status: 0, body: String(e) }));
          return { status: res.status, ms: performance.now() - sent, at: performance.now() };
        }),
      );
      const cpu1 = threadCpuMs(relay.pid);
      const keys1 = await relay.probe('keygen');
      const loop = await relay.probe('eld');
      stop.done = true;
      for (const node of nodes) {
        await node.unregister().catch(() => undefined);
      }
      const ok = chats.filter((c) => c.status === 200);
      const statuses = {};
      for (const c of chats) statuses[c.status] = (statuses[c.status] ?? 0) + 1;
      const admitS = (Math.max(...received) - t0) / 1000;
      const doneS = (Math.max(...chats.map((c) => c.at)) - t0) / 1000;
      const ms = ok.map((c) => c.ms).sort((a, b) => a - b);
      const per = (x) => Math.round((x / N) * 100) / 100;
      rows.push({
        relay: label,
        keys: mode,
        nodePadding: values['node-padding'],
        unwrapThreads: threads === '' ? 'default' : threads,
        chats: N,
        relayCpus: values.cpus || 'any',
        nodes: `${values.nodes}×${values.polls}`,
        admitSeconds: Math.round(admitS * 100) / 100,
        admittedPerSecond: Math.round(received.length / admitS),
        completedPerSecond: Math.round(ok.length / doneS),
        p50Ms: Math.round(quantile(ms, 0.5)),
        p99Ms: Math.round(quantile(ms, 0.99)),
        cpuMainMsPerChat: per(cpu1.main - cpu0.main),
        cpuOtherThreadsMsPerChat: per(cpu1.others - cpu0.others),
        keygens: keys1.calls - keys0.calls,
        keygenWaitMsPerChat: per(keys1.waitMs - keys0.waitMs),
        loopP99Ms: loop.p99Ms,
        loopMaxMs: loop.maxMs,
        statuses: JSON.stringify(statuses),
      });
      process.stdout.write(`${JSON.stringify(rows.at(-1))}\n`);
    } finally {
      stop.done = true;
      await relay.stop();
    }
    if (dir) {
      const file = readdirSync(dir).find((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f)); // thread 0: the main thread (workers write their own)
      if (file) profiles.push([`${label} ${mode}`, join(dir, file), rows.length - 1]);
    }
  }
  process.stdout.write(`\n${table(rows, Object.keys(rows[0]))}\n`);
  for (const [mode, file, row] of profiles) {
    const summary = summariseProfile(file, 30);
    process.stdout.write(`\nrelay CPU profile, keys ${mode} (${Math.round(summary.totalMs)} ms sampled, main thread): ${file}\n${summary.lines.join('\n')}\n`);
    // The main thread's CPU per chat split by what it was doing (the profile's share of non-idle
    // samples times the measured CPU per chat).
    const busy = [...summary.byFunction].filter(([k]) => !k.startsWith('(idle)'));
    const sum = busy.reduce((a, [, us]) => a + us, 0);
    const cats = new Map();
    for (const [k, us] of busy) {
      const cat = CATEGORIES.find(([, re]) => re.test(k))?.[0] ?? 'other';
      cats.set(cat, (cats.get(cat) ?? 0) + us);
    }
    const perChat = rows[row].cpuMainMsPerChat;
    process.stdout.write(`\nmain-thread CPU per chat by activity, keys ${mode} (${perChat} ms per chat):\n`);
    for (const [cat, us] of [...cats].sort((a, b) => b[1] - a[1])) {
      process.stdout.write(`  ${((us / sum) * perChat).toFixed(2).padStart(6)} ms  ${((us / sum) * 100).toFixed(1).padStart(5)}%  ${cat}\n`);
    }
  }
}

/** The relay with its demo node: --demo-chats chats at once, per relay checkout and Node binary. */
async function demo() {
  const N = Number(values['demo-chats']);
  const bins = values['node-bins'] ? values['node-bins'].split(',') : [process.execPath];
  const rows = [];
  for (const [label, main] of ROOTS)
  for (const bin of bins) {
    const env = { USE_MOCK_LLM: '1', TOKENPLACE_GATEWAY_MAX_CONCURRENT: String(N + 100) };
    const relay = await startRelay(5186, env, [], main, { probe: true, cpus: values.cpus, node: bin });
    try {
      for (let i = 0; i < 100; i += 1) {
        const diag = await request(relay.base, 'GET', '/relay/diagnostics');
        if ((diag.body.api_v1_registered_compute_nodes ?? []).length > 0) break;
        await sleep(100);
      }
      for (let i = 0; i < 5; i += 1) {
        await gatewayChat(relay.base);
      }
      await sleep(3000); // a keygen pool (before issue 22) refills
      const cpu0 = threadCpuMs(relay.pid);
      const keys0 = await relay.probe('keygen');
      const t0 = performance.now();
      const chats = await Promise.all(
        Array.from({ length: N }, async (_, i) => {
          const sent = performance.now();
          const res = await post(relay.base, '/v1/chat/completions', { model: 'qwen3-8b-instruct', messages: [{ role: 'user', content: `demo chat ${i}` }] }).catch((e) => ({ status: 0, body: String(e) }));
          const ok = res.status === 200 && /^Mock response/.test(res.body?.choices?.[0]?.message?.content ?? '');
          return { status: ok ? 200 : res.status, ms: performance.now() - sent, at: performance.now() };
        }),
      );
      const cpu1 = threadCpuMs(relay.pid);
      const keys1 = await relay.probe('keygen');
      const ok = chats.filter((c) => c.status === 200);
      const statuses = {};
      for (const c of chats) statuses[c.status] = (statuses[c.status] ?? 0) + 1;
      const doneS = (Math.max(...chats.map((c) => c.at)) - t0) / 1000;
      const ms = ok.map((c) => c.ms).sort((a, b) => a - b);
      const per = (x) => Math.round((x / N) * 100) / 100;
      rows.push({
        relay: label,
        node: nodeVersion(bin),
        relayCpus: values.cpus || 'any',
        chats: N,
        seconds: Math.round(doneS * 100) / 100,
        completedPerSecond: Math.round(ok.length / doneS),
        p50Ms: Math.round(quantile(ms, 0.5)),
        p99Ms: Math.round(quantile(ms, 0.99)),
        cpuMainMsPerChat: per(cpu1.main - cpu0.main),
        cpuOtherThreadsMsPerChat: per(cpu1.others - cpu0.others),
        keygens: keys1.calls - keys0.calls,
        statuses: JSON.stringify(statuses),
      });
      process.stdout.write(`${JSON.stringify(rows.at(-1))}\n`);
    } finally {
      await relay.stop();
    }
  }
  process.stdout.write(`\n${table(rows, Object.keys(rows[0]))}\n`);
}

for (const part of values.parts.split(',')) {
  process.stdout.write(`\n== gateway ${part}\n`);
  if (part === 'latency') {
    await latency();
  } else if (part === 'held') {
    await held();
  } else if (part === 'burst') {
    await burst();
  } else if (part === 'demo') {
    await demo();
  }
}
process.exit(0);
