// Helpers shared by the scenarios of bench/hostile/ (kept outside that folder: every module in it
// is a scenario). Loopback only; every loop here is capped in count and time.
import { connect } from 'node:net';

export const MiB = 1024 * 1024;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function percentile(values, p) {
  if (values.length === 0) {
    return null;
  }
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

export const round = (x, digits = 1) => (x === null || x === undefined ? null : Number(x.toFixed(digits)));

/**
 * `count` uploads on their own connections from `from` (a 127.0.0.0/8 source address), each
 * declaring `declared` bytes of JSON and sending `sent` of them, then stalling. What the relay
 * answers is counted by status ('none' while it has not answered).
 */
export async function stalledUploads({ base, path = '/api/v1/relay/requests', count, declared = MiB, sent = declared - 1, from = '127.0.0.2', headers = () => ({}) }) {
  const url = new URL(base);
  const payload = Buffer.alloc(sent, 0x61);
  payload.write('{"x":"');
  const sockets = [];
  const statuses = new Array(count).fill('none');
  const opened = [];
  for (let i = 0; i < count; i += 1) {
    const socket = connect({ host: url.hostname, port: Number(url.port), localAddress: from });
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', (chunk) => {
      if (statuses[i] === 'none') {
        head += chunk.toString('latin1');
        const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
        if (m) {
          statuses[i] = m[1];
        }
      }
    });
    socket.on('close', () => {
      if (statuses[i] === 'none') {
        statuses[i] = 'closed';
      }
    });
    const extra = Object.entries(headers(i)).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    opened.push(
      new Promise((resolve) => {
        socket.once('connect', () => {
          socket.write(`POST ${path} HTTP/1.1\r\nHost: relay.bench\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n${extra}\r\n`);
          socket.write(payload);
          resolve();
        });
        socket.once('error', resolve);
      }),
    );
    sockets.push(socket);
  }
  await Promise.all(opened);
  return {
    counts: () => statuses.reduce((acc, s) => ({ ...acc, [s]: (acc[s] ?? 0) + 1 }), {}),
    close: () => {
      for (const s of sockets) {
        s.destroy();
      }
    },
  };
}

/** GETs `path` every `everyMs` for `durationMs` (each with a 5 s timeout): latencies and failures. */
export async function probe(base, path, { everyMs = 50, durationMs = 10_000 } = {}) {
  const latencies = [];
  let failures = 0;
  const until = Date.now() + durationMs;
  while (Date.now() < until) {
    const started = performance.now();
    try {
      const res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      if (res.status !== 200) {
        failures += 1;
      }
      latencies.push(performance.now() - started);
    } catch {
      failures += 1;
      latencies.push(performance.now() - started);
    }
    await sleep(everyMs);
  }
  return { latencies, failures, count: latencies.length };
}

/** One OpenAI-style chat through the gateway (the demo node answers): status and milliseconds. */
export async function gatewayChat(base, { timeoutMs = 30_000, headers = {} } = {}) {
  const started = performance.now();
  try {
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ model: 'qwen3-8b-instruct', messages: [{ role: 'user', content: 'hello' }] }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = await res.json().catch(() => null);
    return { status: res.status, ms: performance.now() - started, body };
  } catch (error) {
    return { status: error.name === 'TimeoutError' ? 'timeout' : 'error', ms: performance.now() - started, body: null };
  }
}

/** Retries a gateway chat until one succeeds (the demo node registers moments after boot), 20 s at most. */
export async function firstChat(base) {
  const until = Date.now() + 20_000;
  let last;
  while (Date.now() < until) {
    last = await gatewayChat(base, { timeoutMs: 10_000 });
    if (last.status === 200) {
      return last;
    }
    await sleep(250);
  }
  return last;
}

/** Samples `read()` every `everyMs` until `stop()` is called; returns the highest value seen. */
export function sampleMax(read, everyMs = 100) {
  let max = read();
  const timer = setInterval(() => {
    max = Math.max(max, read());
  }, everyMs);
  return { stop: () => (clearInterval(timer), Math.max(max, read())) };
}

/** A JSON POST with fetch: `{ status, body, headers }` (status 'error' when the relay did not answer). */
export async function post(base, path, body, headers = {}) {
  try {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    let parsed = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, body: parsed, headers: res.headers };
  } catch {
    return { status: 'error', body: null, headers: new Headers() };
  }
}

// ---- opaque protocol bodies (the relay never decrypts; these have the wire shape only)
import { randomBytes } from 'node:crypto';
import { PROTOCOL, rsaKey } from './hostile-nodes.mjs';

export { PROTOCOL };
export const V1 = '/api/v1/relay';

/**
 * A distinct node key shaped like a real RSA-2048 one (about 616 characters), as API v1
 * registration requires: a random modulus nobody holds a private key for. The label is for reading.
 */
export function fakeKey(_label = 'k') {
  return rsaKey(2048);
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

export function requestBody(nodeKey, clientKey) {
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
  };
}

export function responseBody(clientKey, requestId) {
  return {
    client_public_key: clientKey,
    request_id: requestId,
    protocol: PROTOCOL,
    version: 1,
    chat_history: randomBytes(64).toString('base64'),
    cipherkey: randomBytes(256).toString('base64'),
    iv: randomBytes(16).toString('base64'),
  };
}

export function progressBody(nodeKey, credential, clientKey, requestId) {
  return {
    server_public_key: nodeKey,
    client_public_key: clientKey,
    request_id: requestId,
    control_credential: credential,
    protocol: PROTOCOL,
    version: 1,
    ciphertext: randomBytes(48).toString('base64'),
    cipherkey: randomBytes(256).toString('base64'),
    iv: randomBytes(16).toString('base64'),
  };
}

/** Counts answers by status; `of(status)` and a compact text. */
export function tally() {
  const counts = new Map();
  return {
    add: (status) => counts.set(String(status), (counts.get(String(status)) ?? 0) + 1),
    of: (status) => counts.get(String(status)) ?? 0,
    total: () => [...counts.values()].reduce((a, b) => a + b, 0),
    text: () => [...counts].sort().map(([s, n]) => `${s}×${n}`).join(' '),
  };
}
