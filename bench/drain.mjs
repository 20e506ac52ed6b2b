#!/usr/bin/env node
// Graceful drain at full scale: 64 API v1 pipelines (node + client each) cycling against one relay
// (memory store), SIGTERM mid-load; counts requests accepted before/after the signal, answered,
// refused while draining, and lost (accepted but never answered). Target: lost = 0, exit 0.
// usage: node bench/drain.mjs [--pipelines 64] [--load-seconds 5] [--drain 5]   (needs npm run build)
import { spawn } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import { BENCH_ENV, ROOT, cli, nodePublicKeys } from './lib.mjs';

const values = cli(
  'usage: node bench/drain.mjs [--pipelines N] [--load-seconds S] [--drain S] [--port N]',
  {
    pipelines: { type: 'string', default: '64' },
    'load-seconds': { type: 'string', default: '5' },
    drain: { type: 'string', default: '5' },
    port: { type: 'string', default: '5097' },
  },
);
const base = { hostname: '127.0.0.1', port: Number(values.port) };
const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });

function post(path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request({ ...base, agent, method: 'POST', path, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(Buffer.concat(chunks).toString() || '{}') }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

const child = spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
  env: { ...process.env, ...BENCH_ENV, RELAY_PORT: values.port, TOKENPLACE_RELAY_DRAIN_SECONDS: values.drain, TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS: String(Number(values.drain) + 15) },
  stdio: 'ignore',
});
const nodeKeys = await nodePublicKeys(Number(values.pipelines)); // API v1 admits only real RSA keys
const exit = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
let exited = false;
void exit.then(() => (exited = true));
for (let i = 0; i < 200; i += 1) {
  try {
    await post('/api/v1/relay/servers/register', { server_public_key: 'probe' });
    break;
  } catch {
    await new Promise((r) => setTimeout(r, 50));
  }
}

let signalled = false;
const t = { acceptedBefore: 0, acceptedAfter: 0, answered: 0, refused: 0, failures: 0 };
const accepted = new Set();
const answered = new Set();

async function pipeline(i) {
  const node = nodeKeys[i];
  const client = `drain-client-${i}`;
  await post('/api/v1/relay/servers/register', { server_public_key: node, capabilities: { supported_model_ids: ['m'] } });
  const nodeLoop = (async () => {
    while (!exited) {
      try {
        const work = await post('/api/v1/relay/servers/poll', { server_public_key: node });
        if (typeof work.body.request_id === 'string') {
          await post('/api/v1/relay/responses', { client_public_key: client, request_id: work.body.request_id, chat_history: 'a', cipherkey: 'k', iv: 'i' });
        }
      } catch {
        return;
      }
    }
  })();
  try {
    for (let n = 0; !exited; n += 1) {
      const id = `${i}-${n}`;
      const sub = await post('/api/v1/relay/requests', { server_public_key: node, client_public_key: client, request_id: id, ciphertext: 'c'.repeat(2048), cipherkey: 'k', iv: 'i' });
      if (sub.status === 503) {
        t.refused += 1;
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      if (sub.status !== 200) {
        t.failures += 1;
        continue;
      }
      accepted.add(id);
      if (signalled) t.acceptedAfter += 1;
      else t.acceptedBefore += 1;
      for (;;) {
        const got = await post('/api/v1/relay/responses/retrieve', { client_public_key: client, request_id: id }, { Prefer: 'wait=2' });
        if (got.status === 200) {
          answered.add(id);
          break;
        }
        if (got.status !== 202) {
          t.failures += 1;
          break;
        }
      }
    }
  } catch {
    // relay gone
  }
  await nodeLoop;
}

const runs = Array.from({ length: Number(values.pipelines) }, (_, i) => pipeline(i));
await new Promise((r) => setTimeout(r, Number(values['load-seconds']) * 1000));
const signalledAt = Date.now();
signalled = true;
child.kill('SIGTERM');
const code = await exit;
const exitMs = Date.now() - signalledAt;
await Promise.all(runs);
agent.destroy();
const lost = [...accepted].filter((id) => !answered.has(id)).length;
process.stdout.write(`${JSON.stringify({ pipelines: Number(values.pipelines), acceptedBeforeSignal: t.acceptedBefore, acceptedAfterSignal: t.acceptedAfter, answered: answered.size, refusedWhileDraining: t.refused, otherFailures: t.failures, lost, exitCode: code, exitMs, drainSeconds: Number(values.drain) })}\n`);
process.exit(lost === 0 && code === 0 ? 0 : 1);
