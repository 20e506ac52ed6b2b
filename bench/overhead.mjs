#!/usr/bin/env node
// Relay overhead against the framework floor, measured in one invocation so the ratio holds on a
// noisy machine: for each relay route, autocannon at 64 connections against the relay, then
// against a bare NestJS express route (bench/bare-app.mjs) answering the same size of JSON to the
// same request body. Prints one JSON line per scenario and a table with relay/bare ratios.
//
// usage: node bench/overhead.mjs [--duration 8] [--connections 64] [--rounds 1]  (needs `npm run build`)
//          [--cpus LIST --bench-cpus LIST]: pin the relay and the bare app (`taskset -c`) to one set
//          of cores and this script with its load generators to another, e.g. `--cpus 0
//          --bench-cpus 1`, so the ratio is per core and the load generator takes nothing from it.
import autocannon from 'autocannon';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ROOT, startRelay, stopProcess, table, cycle, cli, nodePublicKeys, peerLibrary, pinSelf } from './lib.mjs';

const values = cli(
  'usage: node bench/overhead.mjs [--duration S] [--connections N] [--rounds N] [--port N] [--cpus LIST] [--bench-cpus LIST]',
  {
    duration: { type: 'string', default: '8' },
    connections: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '1' },
    port: { type: 'string', default: '5095' },
    cpus: { type: 'string', default: '' },
    'bench-cpus': { type: 'string', default: '' },
  },
);
if (values['bench-cpus']) {
  // Every thread of this process, and the cycle processes it starts (they inherit the affinity).
  pinSelf(values['bench-cpus']);
}
/** The relay's and the bare app's command line: pinned with --cpus. */
const pinned = (argv) => (values.cpus ? ['taskset', ['-c', values.cpus, ...argv]] : [argv[0], argv.slice(1)]);
const { PROTOCOL_ID } = peerLibrary();
const DURATION = Number(values.duration);
const CONNECTIONS = Number(values.connections);

const pemKey = (label) =>
  Buffer.from(`-----BEGIN PUBLIC KEY-----\n${label}${randomBytes(300).toString('base64')}\n-----END PUBLIC KEY-----\n`).toString('base64');

function load(url, opts) {
  return new Promise((resolve, reject) => {
    autocannon({ url, connections: CONNECTIONS, duration: opts.duration ?? DURATION, ...opts }, (err, result) =>
      err ? reject(err) : resolve(result),
    );
  });
}

async function measure(url, opts) {
  await load(url, { ...opts, duration: 2 });
  const r = await load(url, opts);
  const bad = r.non2xx + r.errors + r.timeouts;
  return { rps: Math.round(r.requests.average), p99: r.latency.p99, bad, bytes: Math.round(r.throughput.average / Math.max(1, r.requests.average)) };
}

async function startBare(port, size) {
  const [command, argv] = pinned([process.execPath, join(ROOT, 'bench/bare-app.mjs'), String(port), String(size)]);
  const child = spawn(command, argv, { stdio: 'ignore' });
  for (let i = 0; i < 200; i += 1) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/bare`)).ok) return child;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('bare app did not start');
}

const port = Number(values.port);
const relay = await startRelay(port, { TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '3600' }, [], 'dist/main.js', { cpus: values.cpus });
const base = relay.base;
const node = pemKey('node');
// API v1 admits only real RSA public keys. The full cycles below (bench/cycle.mjs) take the first
// CONNECTIONS cached keys for their own nodes: this node is the next one, so no pipeline's node is
// this one (a pipeline sharing it got the pending request, or a dialect conflict, every cycle).
const v1node = (await nodePublicKeys(CONNECTIONS + 1))[CONNECTIONS];
const client = pemKey('client');
const json = (body) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
await fetch(`${base}/sink`, json({ server_public_key: node }));
await fetch(`${base}/api/v1/relay/servers/register`, json({ server_public_key: v1node, capabilities: { supported_model_ids: ['qwen3-8b-instruct'], max_concurrency: 64 } }));
await fetch(`${base}/api/v1/relay/requests`, json({ server_public_key: v1node, client_public_key: client, request_id: 'pending-1', ciphertext: 'x'.repeat(2048), cipherkey: 'k'.repeat(344), iv: 'i'.repeat(24), protocol: PROTOCOL_ID, version: 1, cancel_token: 't' }));

const sizeOf = async (path, init) => (await (await fetch(`${base}${path}`, init)).arrayBuffer()).byteLength;
const scenarios = [
  { name: 'legacy POST /sink (idle heartbeat)', path: '/sink', init: json({ server_public_key: node }) },
  { name: 'legacy GET /next_server', path: '/next_server', init: { method: 'GET' } },
  { name: 'legacy POST /retrieve (nothing yet)', path: '/retrieve', init: json({ client_public_key: client }) },
  { name: 'v1 GET /servers/next', path: '/api/v1/relay/servers/next?model=qwen3-8b-instruct&context_tier=8k-fast', init: { method: 'GET' } },
  { name: 'v1 POST /responses/retrieve (202 pending)', path: '/api/v1/relay/responses/retrieve', init: json({ client_public_key: client, request_id: 'pending-1' }) },
];

const rows = [];
try {
  for (let round = 0; round < Number(values.rounds); round += 1) {
    for (const s of scenarios) {
      const size = await sizeOf(s.path, s.init);
      const bare = await startBare(port + 1, size);
      const opts = { method: s.init.method, headers: s.init.headers, body: s.init.body };
      const bareResult = await measure(`http://127.0.0.1:${port + 1}/bare`, opts);
      await stopProcess(bare, 'SIGKILL');
      const relayResult = await measure(`${base}${s.path}`, opts);
      const row = {
        scenario: s.name,
        responseBytes: size,
        bareRps: bareResult.rps,
        relayRps: relayResult.rps,
        ratio: Math.round((relayResult.rps / bareResult.rps) * 100) / 100,
        relayP99Ms: relayResult.p99,
        bareP99Ms: bareResult.p99,
        errors: relayResult.bad + bareResult.bad,
      };
      process.stdout.write(`${JSON.stringify(row)}\n`);
      rows.push(row);
    }
    // Full cycles: every relay route in turn, 64 pipelines, against the same client code doing four
    // POSTs of the same sizes to the bare route (same load generator on both sides).
    const bare = await startBare(port + 1, 60);
    const floor = await cycle({ url: `http://127.0.0.1:${port + 1}`, protocol: 'bare', pipelines: CONNECTIONS, duration: DURATION, warmup: 2 });
    await stopProcess(bare, 'SIGKILL');
    for (const protocol of ['legacy', 'v1']) {
      // Each protocol's pipelines have their own node keys (legacy 0..63, API v1 after the pending
      // node's): a key the API v1 cycle registered is refused on /sink, so a second round's legacy
      // cycle on shared keys failed every request.
      const keyOffset = protocol === 'legacy' ? 0 : CONNECTIONS + 1;
      const c = await cycle({ url: base, protocol, pipelines: CONNECTIONS, duration: DURATION, warmup: 2, 'key-offset': keyOffset });
      const row = {
        scenario: `${protocol} full cycle (4 routes)`,
        responseBytes: '-',
        bareRps: floor.requestsPerSecond,
        relayRps: c.requestsPerSecond,
        ratio: Math.round((c.requestsPerSecond / floor.requestsPerSecond) * 100) / 100,
        relayP99Ms: c.p99Ms,
        bareP99Ms: floor.p99Ms,
        errors: c.errors + floor.errors,
      };
      process.stdout.write(`${JSON.stringify(row)}\n`);
      rows.push(row);
    }
  }
} finally {
  await relay.stop();
}
process.stdout.write(`\n${table(rows, ['scenario', 'responseBytes', 'bareRps', 'relayRps', 'ratio', 'relayP99Ms', 'bareP99Ms', 'errors'])}\n`);
