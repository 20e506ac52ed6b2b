#!/usr/bin/env node
// Soak: moderate, churning load on one relay for --minutes (default 10): API v1 and legacy
// pipelines, 10% of clients abandon their answer (exercises the response TTL), nodes come and go
// with fresh keys (registry churn and evictions), random clients probe retrieve. Every --every
// seconds it samples RSS, heap, event-loop delay p99, active handles and the size of every store
// collection (tokenplace_relay_* gauges), and prints the curve. Flat = no leak.
// usage: node bench/soak.mjs [--minutes 10] [--every 30] [--pipelines 8] [--store memory|redis]
//   (redis: uses REDIS_URL, best a dedicated server: it also samples DBSIZE)
import { randomBytes } from 'node:crypto';
import { request as send, startRelay, table, cli, nodePublicKeys } from './lib.mjs';

const values = cli(
  'usage: node bench/soak.mjs [--minutes N] [--every S] [--pipelines N] [--store memory|redis] [--response-ttl S]',
  {
    minutes: { type: 'string', default: '10' },
    every: { type: 'string', default: '30' },
    pipelines: { type: 'string', default: '8' },
    store: { type: 'string', default: 'memory' },
    'response-ttl': { type: 'string', default: '60' },
  },
);
const storeEnv =
  values.store === 'redis'
    ? { TOKENPLACE_RELAY_STATE_STORE: 'redis', TOKENPLACE_RELAY_REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', TOKENPLACE_RELAY_REDIS_KEY_PREFIX: `soak${Date.now()}:` }
    : {};
const relay = await startRelay(5120, {
  ...storeEnv,
  TOKENPLACE_RELAY_RESPONSE_TTL_SECONDS: values['response-ttl'],
  TOKENPLACE_TERMINAL_REQUEST_TTL_SECONDS: values['response-ttl'],
  TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '10',
  TOKENPLACE_RELAY_SINK_STALE_SECONDS: '10',
  TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '5',
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let stop = false;
let cycles = 0;
let errors = 0;

/** One exchange through the shared bench helper; a transport failure reads as status 0. */
function request(method, path, body, headers = {}) {
  return send(relay.base, method, path, body, headers).catch(() => ({ status: 0, body: null }));
}

const post = (path, body, headers) => request('POST', path, body, headers);
const payload = randomBytes(1536).toString('base64');

// API v1 admits only real RSA node keys, and a key a live (or silent, not yet evicted) node holds
// needs that node's credential: a fresh key for each node lifetime (one per 20-60 s per pipeline).
const v1Keys = await nodePublicKeys(Math.ceil(Number(values.pipelines) * ((Number(values.minutes) * 60) / 20 + 2)));
let nextV1Key = 0;

async function v1Pipeline() {
  while (!stop) {
    const node = v1Keys[nextV1Key++ % v1Keys.length];
    const registered = await post('/api/v1/relay/servers/register', { server_public_key: node, capabilities: { supported_model_ids: ['qwen3-8b-instruct'] } });
    const credential = registered.body?.control_credential ?? 'x';
    const lifetime = Date.now() + 20_000 + Math.random() * 40_000;
    while (!stop && Date.now() < lifetime) {
      const client = `soak-client-${randomBytes(6).toString('hex')}`;
      const id = randomBytes(8).toString('hex');
      const poll = post('/api/v1/relay/servers/poll', { server_public_key: node });
      const sub = await post('/api/v1/relay/requests', { server_public_key: node, client_public_key: client, request_id: id, ciphertext: payload, cipherkey: 'k', iv: 'i', cancel_token: 't' });
      const work = await poll;
      if (sub.status !== 200 || work.status !== 200) {
        errors += 1;
        continue;
      }
      if (work.body?.request_id === id) {
        await post('/api/v1/relay/servers/control', { server_public_key: node, request_id: id, control_credential: credential });
        await post('/api/v1/relay/responses', { client_public_key: client, request_id: id, chat_history: payload, cipherkey: 'k', iv: 'i' });
        if (Math.random() < 0.9) {
          const got = await post('/api/v1/relay/responses/retrieve', { client_public_key: client, request_id: id });
          if (got.status !== 200) errors += 1;
        }
      }
      cycles += 1;
      await sleep(20);
    }
    // Half the nodes leave politely, half just go silent and get evicted.
  }
}

async function legacyPipeline() {
  while (!stop) {
    const node = `soak-legacy-${randomBytes(6).toString('hex')}`;
    const lifetime = Date.now() + 20_000 + Math.random() * 40_000;
    await post('/sink', { server_public_key: node });
    while (!stop && Date.now() < lifetime) {
      const client = `soak-lclient-${randomBytes(6).toString('hex')}`;
      const sub = await post('/faucet', { server_public_key: node, client_public_key: client, chat_history: payload, cipherkey: 'k', iv: 'i' });
      const work = await post('/sink', { server_public_key: node });
      if (sub.status !== 200 || typeof work.body?.chat_history !== 'string') {
        errors += 1;
        continue;
      }
      await post('/source', { client_public_key: client, chat_history: payload, cipherkey: 'k', iv: 'i' });
      if (Math.random() < 0.9) await post('/retrieve', { client_public_key: client });
      cycles += 1;
      await sleep(20);
    }
    if (Math.random() < 0.5) await post('/unregister', { server_public_key: node });
  }
}

async function prober() {
  while (!stop) {
    await post('/api/v1/relay/responses/retrieve', { client_public_key: `probe-${randomBytes(4).toString('hex')}`, request_id: 'x' });
    await request('GET', '/relay/diagnostics');
    await request('GET', '/healthz');
    await sleep(200);
  }
}

const redis = values.store === 'redis' ? new (await import('ioredis')).Redis(storeEnv.TOKENPLACE_RELAY_REDIS_URL) : null;

async function sample(elapsedS) {
  const { body } = await request('GET', '/metrics');
  const redisKeys = redis ? (await redis.dbsize()) : undefined;
  const read = (name, labels = '') => {
    const m = body.match(new RegExp(`^${name}${labels ? `\\{${labels}\\}` : '(?:\\{[^}]*\\})?'} (\\S+)$`, 'm'));
    return m ? Number(m[1]) : NaN;
  };
  const handles = [...body.matchAll(/^nodejs_active_handles\{[^}]*\} (\S+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);

  return {
    t: `${Math.round(elapsedS)}s`,
    cycles,
    errors,
    rssMiB: Math.round(read('process_resident_memory_bytes') / 2 ** 20),
    heapMiB: Math.round(read('nodejs_heap_size_used_bytes') / 2 ** 20),
    loopP99Ms: Math.round(read('nodejs_eventloop_lag_p99_seconds') * 1000 * 10) / 10,
    handles,
    nodes: read('tokenplace_relay_registered_nodes'),
    queued: read('tokenplace_relay_queue_depth'),
    inFlight: read('tokenplace_relay_in_flight_requests'),
    responses: read('tokenplace_relay_stored_responses'),
    terminal: read('tokenplace_relay_terminal_records'),
    tombstones: read('tokenplace_relay_control_tombstones'),
    buckets: read('tokenplace_relay_rate_limit_buckets'),
    ...(redis ? { redisKeys } : {}),
  };
}

const P = Number(values.pipelines);
const workers = [...Array.from({ length: P }, v1Pipeline), ...Array.from({ length: P }, legacyPipeline), prober()];
const rows = [];
const started = Date.now();
const end = started + Number(values.minutes) * 60_000;
while (Date.now() < end) {
  await sleep(Math.min(Number(values.every) * 1000, Math.max(0, end - Date.now())));
  const row = await sample((Date.now() - started) / 1000);
  rows.push(row);
  process.stdout.write(`${JSON.stringify(row)}\n`);
}
stop = true;
await Promise.race([Promise.all(workers), sleep(15_000)]);
await relay.stop();
redis?.disconnect();
process.stdout.write(`\n${table(rows, Object.keys(rows[0]))}\n`);
process.exit(0);
