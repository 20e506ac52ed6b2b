#!/usr/bin/env node
// Cycle benchmark against a running relay: N pipelines, each a simulated compute node plus a
// client doing full request cycles, as fast as the relay answers.
//   legacy: /faucet -> /sink -> /source -> /retrieve
//   v1:     /servers/poll (long-poll, started first) + /requests -> /responses -> /responses/retrieve
// Prints one JSON line: cycles/s, requests/s, p50/p99 cycle latency and, for v1, the delivery
// latency (/requests answered -> the node's long-poll answered).
// --poll (v1) says when a node's poll is sent:
//   with-request (default, the figures of docs/performance.md): at the start of each cycle, at the
//     same moment as the client's /requests, so the poll is often not yet held when the work arrives
//     and the delivery includes the relay reaching that poll;
//   held: the node polls again the moment it receives work, before it posts its answer (as a node
//     that polls again at once does), so the next cycle's work finds a poll already held: the
//     delivery is the wake-up of a held poll (issue 22's definition).
//
// usage: node bench/cycle.mjs --url http://127.0.0.1:5010 --protocol legacy|v1|bare
//          [--pipelines 16] [--duration 10] [--warmup 2] [--payload 2048] [--token T]
//          [--poll with-request|held] [--key-offset K]
// --key-offset: the pipelines' node keys are the cached keys K .. K+pipelines-1 (bench/lib.mjs
//   nodePublicKeys). Cycle runs at once on one store (several relays on one Redis) need disjoint
//   ranges: a node key registered by two runs is one node, and one run's poll takes the other's work.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { cli, nodePublicKeys, peerLibrary } from './lib.mjs';

const args = cli(
  'usage: node bench/cycle.mjs --url http://127.0.0.1:5010 [--protocol legacy|v1] [--pipelines N] [--duration S] [--warmup S] [--payload BYTES] [--token T] [--node-url URL] [--poll with-request|held] [--key-offset K]',
  {
    url: { type: 'string', default: 'http://127.0.0.1:5010' },
    protocol: { type: 'string', default: 'legacy' },
    pipelines: { type: 'string', default: '16' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    payload: { type: 'string', default: '2048' },
    token: { type: 'string', default: '' },
    'node-url': { type: 'string', default: '' },
    poll: { type: 'string', default: 'with-request' },
    'key-offset': { type: 'string', default: '0' },
  },
);
if (!['with-request', 'held'].includes(args.poll)) {
  process.stderr.write(`--poll takes with-request or held, not ${args.poll}\n`);
  process.exit(2);
}
const { PROTOCOL_ID } = peerLibrary();

const clientUrl = new URL(args.url);
const nodeUrl = new URL(args['node-url'] || args.url);
const pipelines = Number(args.pipelines);
const durationMs = Number(args.duration) * 1000;
const warmupMs = Number(args.warmup) * 1000;
const payload = randomBytes(Math.ceil((Number(args.payload) * 3) / 4)).toString('base64');
const agent = new http.Agent({ keepAlive: true, maxSockets: pipelines * 3 });
const nodeHeaders = args.token ? { 'X-Relay-Server-Token': args.token } : {};

let requests = 0;
let errors = 0;
const firstErrors = [];

function post(base, path, body, headers = {}) {
  return send(base, 'POST', path, JSON.stringify(body), headers);
}

function send(base, method, path, data, headers = {}) {
  return new Promise((resolve) => {
    const req = http.request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        method,
        path,
        headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers } : headers,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          requests += 1;
          const text = Buffer.concat(chunks).toString('utf8');
          let body = null;
          try {
            body = JSON.parse(text);
          } catch {
            body = text;
          }
          resolve({ status: res.statusCode, body });
        });
      },
    );
    req.on('error', (error) => {
      resolve({ status: 0, body: String(error) });
    });
    if (data) {
      req.write(data);
    }
    req.end();
  });
}

function fail(what, res) {
  errors += 1;
  if (firstErrors.length < 5) {
    firstErrors.push(`${what}: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
  }
}

const key = (label, i) => Buffer.from(`-----BEGIN PUBLIC KEY-----\n${label}-${i}-${randomBytes(24).toString('base64')}\n-----END PUBLIC KEY-----\n`).toString('base64');

async function legacyCycle(p) {
  let res = await post(clientUrl, '/faucet', {
    server_public_key: p.node,
    client_public_key: p.client,
    chat_history: payload,
    cipherkey: p.cipherkey,
    iv: p.iv,
  });
  if (res.status !== 200) return fail('faucet', res);
  res = await post(nodeUrl, '/sink', { server_public_key: p.node }, nodeHeaders);
  if (res.status !== 200 || res.body.chat_history !== payload) return fail('sink', res);
  res = await post(nodeUrl, '/source', { client_public_key: p.client, chat_history: payload, cipherkey: p.cipherkey, iv: p.iv }, nodeHeaders);
  if (res.status !== 200) return fail('source', res);
  res = await post(clientUrl, '/retrieve', { client_public_key: p.client });
  if (res.status !== 200 || res.body.chat_history !== payload) return fail('retrieve', res);
  return true;
}

/** A node's `/servers/poll`, stamped with the moment its answer was read. */
function nodePoll(p) {
  return post(nodeUrl, '/api/v1/relay/servers/poll', { server_public_key: p.node }, nodeHeaders).then((r) => ({
    ...r,
    at: performance.now(),
  }));
}

async function v1Cycle(p, deliveries) {
  const requestId = randomBytes(8).toString('hex');
  // With --poll held, the poll sent when the previous cycle's work arrived (or, first, a new one).
  const poll = p.heldPoll ?? nodePoll(p);
  p.heldPoll = null;
  const submitted = await post(clientUrl, '/api/v1/relay/requests', {
    server_public_key: p.node,
    client_public_key: p.client,
    request_id: requestId,
    protocol: PROTOCOL_ID,
    version: 1,
    ciphertext: payload,
    cipherkey: p.cipherkey,
    iv: p.iv,
    cancel_token: 'c',
  });
  const acceptedAt = performance.now();
  if (submitted.status !== 200) {
    await poll;
    return fail('requests', submitted);
  }
  let work = await poll;
  while (work.status === 200 && work.body.request_id === undefined) {
    work = await nodePoll(p);
  }
  if (work.status !== 200 || work.body.request_id !== requestId) return fail('poll', work);
  deliveries.push(Math.max(0, work.at - acceptedAt));
  if (args.poll === 'held') {
    p.heldPoll = nodePoll(p);
  }
  let res = await post(nodeUrl, '/api/v1/relay/responses', {
    client_public_key: p.client,
    request_id: requestId,
    protocol: PROTOCOL_ID,
    version: 1,
    chat_history: payload,
    cipherkey: p.cipherkey,
    iv: p.iv,
  }, nodeHeaders);
  if (res.status !== 200) return fail('responses', res);
  res = await post(clientUrl, '/api/v1/relay/responses/retrieve', { client_public_key: p.client, request_id: requestId });
  if (res.status !== 200 || res.body.ciphertext !== payload) return fail('retrieve', res);
  return true;
}

/** The framework floor for the same client code: four POSTs of the same sizes to a bare route. */
async function bareCycle(p) {
  // Same request bodies and the same response sizes as a legacy cycle's four steps.
  const work = JSON.stringify({ client_public_key: p.client, chat_history: payload, cipherkey: p.cipherkey, iv: p.iv }).length;
  for (const [body, size] of [
    [{ server_public_key: p.node, client_public_key: p.client, chat_history: payload, cipherkey: p.cipherkey, iv: p.iv }, 30],
    [{ server_public_key: p.node }, work + 30],
    [{ client_public_key: p.client, chat_history: payload, cipherkey: p.cipherkey, iv: p.iv }, 54],
    [{ client_public_key: p.client }, work],
  ]) {
    const res = await post(clientUrl, `/bare?size=${size}`, body);
    if (res.status !== 200) return fail('bare', res);
  }
  return true;
}

async function setup(i, nodeKey) {
  const p = {
    node: nodeKey,
    client: key('client', i),
    cipherkey: randomBytes(256).toString('base64'),
    iv: randomBytes(16).toString('base64'),
  };
  if (args.protocol === 'bare') {
    return p;
  }
  const res =
    args.protocol === 'v1'
      ? await post(nodeUrl, '/api/v1/relay/servers/register', {
          server_public_key: p.node,
          capabilities: { supported_model_ids: [`bench-${i}`], max_concurrency: 4 },
        }, nodeHeaders)
      : await post(nodeUrl, '/sink', { server_public_key: p.node }, nodeHeaders);
  if (res.status !== 200) {
    throw new Error(`registration failed: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return p;
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] * 100) / 100;
}

async function main() {
  // Node keys are real RSA-2048 public keys: the relay admits nothing else (issue 18).
  const keyOffset = Number(args['key-offset']);
  const nodeKeys = (await nodePublicKeys(keyOffset + pipelines)).slice(keyOffset);
  const pipes = await Promise.all(Array.from({ length: pipelines }, (_, i) => setup(i, nodeKeys[i])));
  const latencies = [];
  const deliveries = [];
  let measuring = false;
  let stop = false;
  let measuredRequestsStart = 0;
  const cycle = args.protocol === 'v1' ? v1Cycle : args.protocol === 'bare' ? bareCycle : legacyCycle;

  const workers = pipes.map(async (p) => {
    while (!stop) {
      const started = performance.now();
      const d = [];
      const ok = await cycle(p, d);
      if (measuring && ok === true) {
        latencies.push(performance.now() - started);
        deliveries.push(...d);
      }
    }
  });
  await new Promise((r) => setTimeout(r, warmupMs));
  errors = 0;
  measuring = true;
  measuredRequestsStart = requests;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, durationMs));
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  const measuredRequests = requests - measuredRequestsStart;
  stop = true;
  await Promise.all(workers);
  agent.destroy();

  latencies.sort((a, b) => a - b);
  deliveries.sort((a, b) => a - b);
  const out = {
    protocol: args.protocol,
    pipelines,
    durationSeconds: Math.round(elapsed * 100) / 100,
    cycles: latencies.length,
    cyclesPerSecond: Math.round((latencies.length / elapsed) * 10) / 10,
    requestsPerSecond: Math.round((measuredRequests / elapsed) * 10) / 10,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    errors,
  };
  if (args.protocol === 'v1') {
    out.poll = args.poll;
    out.deliveryP50Ms = percentile(deliveries, 0.5);
    out.deliveryP99Ms = percentile(deliveries, 0.99);
  }
  if (firstErrors.length) out.firstErrors = firstErrors;
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(1);
});
