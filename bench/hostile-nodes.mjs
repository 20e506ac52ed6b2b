// Helpers for the registry scenarios of bench/hostile/ (kept outside that folder: every module in
// it is a scenario). Every call goes to loopback, from a chosen 127.0.0.0/8 source address (Linux
// routes the whole block to `lo`), so the relay sees distinct client addresses without trusting a
// proxy. Every loop here is capped in count and time.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { peerLibrary, ROOT } from './lib.mjs';

const forge = createRequire(join(ROOT, 'package.json'))('node-forge');

export const V1 = '/api/v1/relay';
export const PROTOCOL = peerLibrary().PROTOCOL_ID;

/** The n-th loopback source address after 127.0.0.1: 127.0.0.2, ..., 127.0.1.1, ... */
export function loopback(n) {
  const i = n + 2;
  return `127.0.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

const agents = new Map();
function agentFor(from) {
  let agent = agents.get(from);
  if (!agent) {
    agent = new http.Agent({ keepAlive: true, maxSockets: 64, localAddress: from });
    agents.set(from, agent);
  }
  return agent;
}

/** Closes the keep-alive connections of every source address (call before a scenario ends). */
export function closeAgents() {
  for (const agent of agents.values()) {
    agent.destroy();
  }
  agents.clear();
}

/**
 * One JSON exchange from `from`: `{ status, body, bytes, ms, headers }`; status 'error' or
 * 'timeout' when the relay did not answer. `parse: false` skips reading the body as JSON (large
 * bodies read in a loop would load the machine the relay shares).
 */
export function call(base, method, path, body, { from = '127.0.0.1', headers = {}, timeoutMs = 30_000, parse = true } = {}) {
  const url = new URL(base);
  const data = body === undefined ? undefined : JSON.stringify(body);
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.request(
      {
        hostname: url.hostname,
        port: url.port,
        method,
        path,
        agent: agentFor(from),
        timeout: timeoutMs,
        headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers } : headers,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks);
          let parsed = parse ? raw.toString() : null;
          try {
            parsed = parse ? JSON.parse(parsed) : null;
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode, body: parsed, bytes: raw.length, ms: performance.now() - started, headers: res.headers });
        });
        res.on('error', () => resolve({ status: 'error', body: null, bytes: 0, ms: performance.now() - started, headers: {} }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) =>
      resolve({ status: error.message === 'timeout' ? 'timeout' : 'error', body: null, bytes: 0, ms: performance.now() - started, headers: {} }),
    );
    req.end(data);
  });
}

/**
 * A node key shaped like a real one: the base64 of an RSA public key PEM with a random modulus of
 * `bits` (nobody holds a private key for it; the relay cannot tell). 8192 bits is the largest this
 * relay accepts (1,988+ characters).
 */
export function rsaKey(bits = 2048) {
  const modulus = randomBytes(bits / 8);
  modulus[0] |= 0x80;
  modulus[modulus.length - 1] |= 1;
  const key = forge.pki.setRsaPublicKey(new forge.jsbn.BigInteger(modulus.toString('hex'), 16), new forge.jsbn.BigInteger('65537'));
  return Buffer.from(forge.pki.publicKeyToPem(key)).toString('base64');
}

/** An opaque 8,192-character "key": what a relay that never checks keys accepts at most. */
export function junkKey(chars = 8192) {
  return Buffer.from(randomBytes(Math.floor((chars * 3) / 4))).toString('base64').slice(0, chars);
}

export function capabilities(overrides = {}) {
  return {
    api_version: 'v1',
    supported_model_ids: ['qwen3-8b-instruct'],
    active_context_tier: '8k-fast',
    maximum_total_context_tokens: 8192,
    default_output_token_reservation: 1024,
    maximum_output_tokens: 8192,
    max_concurrency: 1,
    backend_class: 'cuda',
    ...overrides,
  };
}

/**
 * Capabilities as large as registration allows (spec §4.2): 64 model ids of 128 characters, the
 * first the model clients ask for (so the junk competes for every pick).
 */
export function maxCapabilities(seed) {
  const ids = Array.from({ length: 63 }, (_, i) => `m${seed}-${i}-`.padEnd(128, 'x'));
  return capabilities({ supported_model_ids: ['qwen3-8b-instruct', ...ids] });
}

/**
 * The largest key `base` accepts at API v1 registration: an 8,192-character opaque string where
 * keys are not checked, else an RSA-8192 public key (about 2,000 characters).
 */
export async function largestKey(base, from) {
  const probe = junkKey();
  const res = await call(base, 'POST', `${V1}/servers/register`, { server_public_key: probe, capabilities: capabilities() }, { from });
  if (res.status === 200) {
    await call(base, 'POST', `${V1}/servers/unregister`, { server_public_key: probe, control_credential: res.body.control_credential }, { from });
    return () => junkKey();
  }
  return () => rsaKey(8192);
}

/** Registers `count` maximum-size nodes, `perAddress` from each source address; statuses and time. */
export async function flood(base, { count, perAddress, firstAddress = 0, keys, deadlineMs = 120_000 }) {
  const statuses = new Map();
  const accepted = [];
  const started = performance.now();
  for (let i = 0; i < count && performance.now() - started < deadlineMs; i += 32) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(32, count - i) }, async (_, j) => {
        const n = i + j;
        const key = keys();
        const res = await call(base, 'POST', `${V1}/servers/register`, { server_public_key: key, capabilities: maxCapabilities(n) }, { from: loopback(firstAddress + Math.floor(n / perAddress)) });
        return { key, res };
      }),
    );
    for (const { key, res } of batch) {
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 200) {
        accepted.push(key);
      }
    }
  }
  return { accepted, statuses: [...statuses].map(([s, n]) => `${s}×${n}`).join(' '), seconds: (performance.now() - started) / 1000 };
}

export function percentile(values, p) {
  if (values.length === 0) {
    return null;
  }
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

export const round = (x, digits = 1) => (x === null || x === undefined ? null : Number(x.toFixed(digits)));

export function requestBody(nodeKey, clientKey, extra = {}) {
  return {
    server_public_key: nodeKey,
    client_public_key: clientKey,
    request_id: randomBytes(16).toString('hex'),
    protocol: PROTOCOL,
    version: 1,
    ciphertext: randomBytes(96).toString('base64'),
    cipherkey: randomBytes(256).toString('base64'),
    iv: randomBytes(16).toString('base64'),
    cancel_token: randomBytes(16).toString('hex'),
    ...extra,
  };
}
