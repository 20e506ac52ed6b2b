#!/usr/bin/env node
// CPU profile of the relay under load: starts `node --cpu-prof dist/main.js`, drives one route (or a
// full cycle) for a few seconds, stops the relay and prints the top self-time functions and the
// share of time per package, from the .cpuprofile Node writes on exit.
//
// usage: node bench/profile.mjs [--scenario retrieve|sink|next|v1cycle|legacycycle] [--duration 6]
import autocannon from 'autocannon';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cycle, startRelay, cli, summariseProfile, nodePublicKeys } from './lib.mjs';

const values = cli(
  'usage: node bench/profile.mjs [--scenario retrieve|...] [--duration S] [--top N]',
  {
    scenario: { type: 'string', default: 'retrieve' },
    duration: { type: 'string', default: '6' },
    top: { type: 'string', default: '25' },
  },
);
const dir = mkdtempSync(join(tmpdir(), 'relay-prof-'));
const relay = await startRelay(5096, { TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '3600' }, ['--cpu-prof', '--cpu-prof-dir', dir]);
const json = (body) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const key = Buffer.from('-----BEGIN PUBLIC KEY-----\n' + 'A'.repeat(400) + '\n-----END PUBLIC KEY-----\n').toString('base64');
// API v1 admits only real RSA public keys. Not one of the cycle pipelines' keys (the cached keys
// 0..63): a pipeline sharing this node's key found its pending request in the way of every cycle.
const PIPELINES = 64;
const v1key = (await nodePublicKeys(PIPELINES + 1))[PIPELINES];
await fetch(`${relay.base}/sink`, json({ server_public_key: key }));
await fetch(`${relay.base}/api/v1/relay/servers/register`, json({ server_public_key: v1key, capabilities: { supported_model_ids: ['qwen3-8b-instruct'] } }));

const routes = {
  retrieve: ['/retrieve', json({ client_public_key: key })],
  sink: ['/sink', json({ server_public_key: key })],
  next: ['/api/v1/relay/servers/next?model=qwen3-8b-instruct', { method: 'GET' }],
  pending: ['/api/v1/relay/responses/retrieve', json({ client_public_key: key, request_id: 'pending-1' })],
};
await fetch(`${relay.base}/api/v1/relay/requests`, json({ server_public_key: v1key, client_public_key: key, request_id: 'pending-1', ciphertext: 'c', cipherkey: 'k', iv: 'i' }));
if (values.scenario.endsWith('cycle')) {
  const result = await cycle({ url: relay.base, protocol: values.scenario.replace('cycle', ''), pipelines: PIPELINES, duration: values.duration, warmup: 1 });
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  const [path, init] = routes[values.scenario];
  const result = await new Promise((resolve, reject) =>
    autocannon({ url: `${relay.base}${path}`, connections: 64, duration: Number(values.duration), ...init }, (e, r) => (e ? reject(e) : resolve(r))),
  );
  process.stdout.write(`${values.scenario}: ${Math.round(result.requests.average)} req/s, p99 ${result.latency.p99} ms\n`);
}
await relay.stop();

const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
const summary = summariseProfile(join(dir, file), Number(values.top));
process.stdout.write(`\nprofile: ${join(dir, file)}\n\n${summary.lines.join('\n')}\n`);
