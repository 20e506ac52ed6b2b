#!/usr/bin/env node
// Crash and restart in Redis mode: two relay replicas share one Redis; API v1 pipelines (node +
// client each) spread over both, each caller failing over to the other replica when its connection
// breaks (what a Kubernetes Service does once the endpoint is gone). Mid-load, replica A is killed
// with SIGKILL. Then every request accepted by either replica must still end with its answer:
// `lost` counts accepted requests never answered (target 0). Claims A was answering when it died
// are redelivered after the in-flight lease (set short here with --inflight).
// usage: node bench/crash.mjs [--pipelines 32] [--before 5] [--after 10] [--inflight 3]
//   [--signal SIGKILL|SIGTERM]  (SIGTERM: graceful drain of A while B takes over)
//   Uses REDIS_URL when set, else starts its own redis-server.          (needs npm run build)
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRelay, stopProcess, cli, nodePublicKeys } from './lib.mjs';

const values = cli(
  'usage: node bench/crash.mjs [--pipelines N] [--before S] [--after S] [--inflight N] [--signal SIGKILL|SIGTERM]',
  {
    pipelines: { type: 'string', default: '32' },
    before: { type: 'string', default: '5' },
    after: { type: 'string', default: '10' },
    inflight: { type: 'string', default: '3' },
    signal: { type: 'string', default: 'SIGKILL' },
  },
);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let redisChild = null;
let redisUrl = process.env.REDIS_URL;
if (!redisUrl) {
  const port = await freePort();
  redisChild = spawn(process.env.REDIS_SERVER_BIN || 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', mkdtempSync(join(tmpdir(), 'tp-crash-'))], { stdio: 'ignore' });
  redisUrl = `redis://127.0.0.1:${port}`;
  await sleep(300);
}
const env = {
  TOKENPLACE_RELAY_STATE_STORE: 'redis',
  TOKENPLACE_RELAY_REDIS_URL: redisUrl,
  TOKENPLACE_RELAY_REDIS_KEY_PREFIX: `crash${Date.now()}:`,
  TOKEN_PLACE_API_V1_IN_FLIGHT_TTL_SECONDS: values.inflight,
  TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '2',
  TOKENPLACE_RELAY_SWEEP_INTERVAL_SECONDS: '0.5',
};
const a = await startRelay(await freePort(), env);
const b = await startRelay(await freePort(), env);
const replicas = [new URL(a.base), new URL(b.base)];
const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });

/** POST to the preferred replica; on a broken connection, fail over to the other one and retry. */
function post(pref, path, body, headers = {}) {
  return new Promise((resolve) => {
    const attempt = (i, tries) => {
      const url = replicas[i];
      const data = JSON.stringify(body);
      const req = http.request({ hostname: url.hostname, port: url.port, agent, method: 'POST', path, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers } }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(Buffer.concat(chunks).toString() || '{}'), via: i }));
      });
      req.on('error', () => (tries > 20 ? resolve({ status: 0, body: {} }) : setTimeout(() => attempt(1 - i, tries + 1), 50)));
      req.end(data);
    };
    attempt(pref.i, 0);
  });
}

let stop = false;
const accepted = new Set();
const answered = new Set();
let failures = 0;
const failureKinds = new Map();
const countFailure = (kind) => {
  failures += 1;
  failureKinds.set(kind, (failureKinds.get(kind) ?? 0) + 1);
};

async function pipeline(k) {
  const node = nodeKeys[k];
  const client = `crash-client-${k}`;
  // Half the pipelines have their node on A and client on B, half the reverse.
  const nodePref = { i: k % 2 };
  const clientPref = { i: 1 - (k % 2) };
  await post(nodePref, '/api/v1/relay/servers/register', { server_public_key: node, capabilities: { supported_model_ids: ['m'] } });
  const nodeLoop = (async () => {
    while (!stop || answered.size < accepted.size) {
      const work = await post(nodePref, '/api/v1/relay/servers/poll', { server_public_key: node });
      if (work.status === 404) {
        await post(nodePref, '/api/v1/relay/servers/register', { server_public_key: node, capabilities: { supported_model_ids: ['m'] } });
      }
      if (typeof work.body.request_id === 'string') {
        await post(nodePref, '/api/v1/relay/servers/control', { server_public_key: node, request_id: work.body.request_id, control_credential: 'none' });
        await post(nodePref, '/api/v1/relay/responses', { client_public_key: client, request_id: work.body.request_id, chat_history: 'answer', cipherkey: 'k', iv: 'i' });
      }
      if (stop && Date.now() > deadline) return;
    }
  })();
  for (let n = 0; !stop; n += 1) {
    const id = `${k}-${n}`;
    const sub = await post(clientPref, '/api/v1/relay/requests', { server_public_key: node, client_public_key: client, request_id: id, ciphertext: 'c'.repeat(1024), cipherkey: 'k', iv: 'i' });
    if (sub.status !== 200) {
      countFailure(`requests ${sub.status}`);
      await sleep(50);
      continue;
    }
    accepted.add(id);
    for (;;) {
      const got = await post(clientPref, '/api/v1/relay/responses/retrieve', { client_public_key: client, request_id: id }, { Prefer: 'wait=2' });
      if (got.status === 200) {
        answered.add(id);
        break;
      }
      if (got.status !== 202 || Date.now() > deadline) {
        countFailure(`retrieve ${got.status} via ${got.via === 0 ? 'A' : 'B'} ${JSON.stringify(got.body).slice(0, 80)}`);
        break;
      }
    }
  }
  await nodeLoop;
}

let deadline = Infinity;
const progress = setInterval(() => process.stderr.write(`accepted ${accepted.size} answered ${answered.size} failures ${failures}\n`), 2000);
const nodeKeys = await nodePublicKeys(Number(values.pipelines)); // API v1 admits only real RSA keys
const runs = Array.from({ length: Number(values.pipelines) }, (_, k) => pipeline(k));
await sleep(Number(values.before) * 1000);
const acceptedBeforeKill = accepted.size;
const answeredBeforeKill = answered.size;
a.child.kill(values.signal);
const killedAt = Date.now();
await sleep(Number(values.after) * 1000);
stop = true;
deadline = Date.now() + 30_000;
await Promise.all(runs);
clearInterval(progress);
const lost = [...accepted].filter((id) => !answered.has(id));
await stopProcess(b.child);
await stopProcess(a.child).catch(() => undefined);
redisChild?.kill('SIGKILL');
agent.destroy();
process.stdout.write(
  `${JSON.stringify({
    pipelines: Number(values.pipelines),
    acceptedBeforeKill,
    answeredBeforeKill,
    accepted: accepted.size,
    answered: answered.size,
    lost: lost.length,
    requestFailures: failures,
    failureKinds: Object.fromEntries(failureKinds),
    secondsAfterKill: Math.round((Date.now() - killedAt) / 1000),
    inFlightTtlSeconds: Number(values.inflight),
    signal: values.signal,
  })}\n`,
);
process.exit(lost.length === 0 ? 0 : 1);
