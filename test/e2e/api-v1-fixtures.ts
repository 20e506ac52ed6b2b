import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import forge from 'node-forge';
import { PROTOCOL_ID } from '../../src/peer/relay.protocol';
import { deletePrefix, randomPrefix, sharedRedisUrl } from '../helpers/redis-server';
import { call, type TestApp, type WireResult } from '../helpers/test-app';

/**
 * Shared wire-level helpers for the API v1 conformance suites. The relay treats keys and
 * ciphertext as opaque strings, so most suites use cheap fake values; the chat suites use the
 * real-crypto simulators of test/helpers/simulators.ts.
 */
export const V1 = '/api/v1/relay';
export const PROTOCOL = PROTOCOL_ID;

/**
 * For suites on a ManualClock: the background sweep runs on a real interval, so keep it out of
 * the way (tests call `t.sweep()` when they want one) and every expiry path stays deterministic.
 */
export const MANUAL_SWEEP = { TOKENPLACE_RELAY_SWEEP_INTERVAL_SECONDS: '60' };

const E65537 = new forge.jsbn.BigInteger('65537');

/**
 * A distinct node identity shaped like a real one: the base64 of an RSA public key PEM (what
 * API v1 registration accepts). Its modulus is random, not a product of two primes, so it costs
 * nothing to make and nobody holds its private key; suites that decrypt use the simulators' keys.
 * The label only says what the key stands for where it is made.
 */
export function fakeKey(_label = 'k', bits = 2048): string {
  const modulus = randomBytes(bits / 8);
  modulus[0] = (modulus[0] as number) | 0x80;
  modulus[modulus.length - 1] = (modulus[modulus.length - 1] as number) | 1;
  const key = forge.pki.setRsaPublicKey(
    new forge.jsbn.BigInteger(modulus.toString('hex'), 16),
    E65537,
  );
  return Buffer.from(forge.pki.publicKeyToPem(key)).toString('base64');
}

/** Headers that make a call come from `address` (the app must trust loopback as its proxy). */
export function from(
  address: string,
  headers: Record<string, string> = {},
): Record<string, string> {
  return { 'X-Forwarded-For': address, ...headers };
}

/** Lets tests give calls a client address with {@link from}. */
export const TRUST_LOOPBACK = { TOKENPLACE_RELAY_TRUST_PROXY: 'loopback' };

export interface StoreVariant {
  label: string;
  /** Environment of a fresh app on this store (a new key prefix each time for Redis). */
  env: () => Record<string, string>;
  /** Removes what the apps of this variant left in the store. */
  cleanup: () => Promise<void>;
}

/** The memory store always; the Redis store as well when REDIS_URL is set (loudly skipped if not). */
export function storeVariants(name: string): StoreVariant[] {
  const url = sharedRedisUrl(`${name} on the Redis store`);
  const prefixes: string[] = [];
  const variants: StoreVariant[] = [
    { label: 'memory store', env: () => ({}), cleanup: () => Promise.resolve() },
  ];
  if (url !== '') {
    variants.push({
      label: 'Redis store',
      env: () => {
        const prefix = randomPrefix('e2e');
        prefixes.push(prefix);
        return {
          TOKENPLACE_RELAY_STATE_STORE: 'redis',
          TOKENPLACE_RELAY_REDIS_URL: url,
          TOKENPLACE_RELAY_REDIS_KEY_PREFIX: prefix,
        };
      },
      cleanup: async () => {
        for (const prefix of prefixes.splice(0)) {
          await deletePrefix(url, prefix);
        }
      },
    });
  }
  return variants;
}

export function hex(bytes = 16): string {
  return randomBytes(bytes).toString('hex');
}

export function capabilities(overrides: Record<string, unknown> = {}): Record<string, unknown> {
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

export function caps64k(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return capabilities({
    active_context_tier: '64k-full',
    maximum_total_context_tokens: 65536,
    ...overrides,
  });
}

export function post(
  t: TestApp,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<WireResult> {
  return call(t.baseUrl, 'POST', path, body, headers);
}

export function get(
  t: TestApp,
  path: string,
  headers: Record<string, string> = {},
): Promise<WireResult> {
  return call(t.baseUrl, 'GET', path, undefined, headers);
}

/** The `{"error":{"message","code"}}` body of API v1 errors. */
export function apiError(
  message: string,
  code: number | string,
  extra: Record<string, unknown> = {},
): unknown {
  return { error: { message, code, ...extra } };
}

export interface FakeNode {
  key: string;
  credential: string;
  headers: Record<string, string>;
}

/** Registers an API v1 node with a fake key; returns its key and control credential. */
export async function registerNode(
  t: TestApp,
  opts: {
    key?: string;
    caps?: Record<string, unknown> | null;
    token?: string;
    /** Extra headers on every call of this node (an address with {@link from}). */
    headers?: Record<string, string>;
  } = {},
): Promise<FakeNode> {
  const key = opts.key ?? fakeKey('node');
  const headers: Record<string, string> = {
    ...(opts.token ? { 'X-Relay-Server-Token': opts.token } : {}),
    ...opts.headers,
  };
  const body: Record<string, unknown> = { server_public_key: key };
  if (opts.caps !== null) {
    body.capabilities = opts.caps ?? capabilities();
  }
  const res = await post(t, `${V1}/servers/register`, body, headers);
  if (res.status !== 200 || typeof res.body.control_credential !== 'string') {
    throw new Error(`register answered ${res.status}: ${res.text}`);
  }
  return { key, credential: res.body.control_credential, headers };
}

export interface FakeRequest {
  clientKey: string;
  requestId: string;
  cancelToken: string;
  body: Record<string, unknown>;
  res: WireResult;
}

/** A browser-shaped `/requests` body with opaque ciphertext. */
export function requestBody(
  nodeKey: string,
  clientKey: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    server_public_key: nodeKey,
    client_public_key: clientKey,
    request_id: hex(),
    protocol: PROTOCOL,
    version: 1,
    ciphertext: randomBytes(96).toString('base64'),
    cipherkey: randomBytes(256).toString('base64'),
    iv: randomBytes(16).toString('base64'),
    cancel_token: hex(),
    ...extra,
  };
}

export async function submit(
  t: TestApp,
  nodeKey: string,
  opts: {
    clientKey?: string;
    extra?: Record<string, unknown>;
    headers?: Record<string, string>;
  } = {},
): Promise<FakeRequest> {
  const clientKey = opts.clientKey ?? fakeKey('client');
  const body = requestBody(nodeKey, clientKey, opts.extra);
  const res = await post(t, `${V1}/requests`, body, opts.headers);
  return {
    clientKey,
    requestId: body.request_id as string,
    cancelToken: body.cancel_token as string,
    body,
    res,
  };
}

export function poll(
  t: TestApp,
  node: FakeNode,
  extra: Record<string, unknown> = {},
): Promise<WireResult> {
  return post(t, `${V1}/servers/poll`, { server_public_key: node.key, ...extra }, node.headers);
}

export function control(
  t: TestApp,
  node: FakeNode,
  requestId: string,
  extra: Record<string, unknown> = {},
): Promise<WireResult> {
  return post(
    t,
    `${V1}/servers/control`,
    {
      server_public_key: node.key,
      request_id: requestId,
      control_credential: node.credential,
      ...extra,
    },
    node.headers,
  );
}

/** A node-shaped `/responses` body with opaque ciphertext. */
export function responseBody(
  req: { clientKey: string; requestId: string },
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    client_public_key: req.clientKey,
    request_id: req.requestId,
    protocol: PROTOCOL,
    version: 1,
    chat_history: randomBytes(64).toString('base64'),
    cipherkey: randomBytes(256).toString('base64'),
    iv: randomBytes(16).toString('base64'),
    ...extra,
  };
}

export function respond(
  t: TestApp,
  req: { clientKey: string; requestId: string },
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<WireResult> {
  return post(t, `${V1}/responses`, responseBody(req, extra), headers);
}

export function retrieve(t: TestApp, clientKey: string, requestId?: string): Promise<WireResult> {
  return post(t, `${V1}/responses/retrieve`, {
    client_public_key: clientKey,
    ...(requestId !== undefined ? { request_id: requestId } : {}),
  });
}

export function cancel(
  t: TestApp,
  req: FakeRequest,
  extra: Record<string, unknown> = {},
): Promise<WireResult> {
  return post(t, `${V1}/requests/cancel`, {
    client_public_key: req.clientKey,
    request_id: req.requestId,
    cancel_token: req.cancelToken,
    status: 'cancelled',
    reason: 'requester_cancelled',
    ...extra,
  });
}

export function progressBody(
  node: FakeNode,
  req: { clientKey: string; requestId: string },
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    server_public_key: node.key,
    client_public_key: req.clientKey,
    request_id: req.requestId,
    control_credential: node.credential,
    protocol: PROTOCOL,
    version: 1,
    ciphertext: randomBytes(48).toString('base64'),
    cipherkey: randomBytes(256).toString('base64'),
    iv: randomBytes(16).toString('base64'),
    ...extra,
  };
}

/** Scrapes /metrics and returns the value of one sample (0 when absent). */
export async function metric(
  t: TestApp,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const res = await get(t, '/metrics');
  return sampleValue(res.text, name, labels);
}

export function sampleValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) {
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) {
      continue;
    }
    const have: Record<string, string> = {};
    for (const pair of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      have[pair[1] as string] = pair[2] as string;
    }
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) {
      return Number(m[4]);
    }
  }
  return 0;
}

/**
 * Resolves once the relay holds `count` more long-polls waiting (`LifecycleService.waiting`: one
 * per request that waits, until its exchange ends). Checks on each event-loop turn; it waits for
 * an event, never for time to pass.
 */
export async function parked(
  lifecycle: { readonly waiting: number },
  count = 1,
  before = 0,
): Promise<void> {
  const giveUp = Date.now() + 5000;
  while (lifecycle.waiting < before + count) {
    if (Date.now() > giveUp) {
      throw new Error(`expected ${before + count} parked waiters, found ${lifecycle.waiting}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

export interface RawResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: unknown;
}

/**
 * A request through node:http, for what fetch cannot send: a Host header, chunked bodies without
 * Content-Length, exact header bytes.
 */
export function raw(
  t: TestApp,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: string; chunked?: boolean } = {},
): Promise<RawResult> {
  const url = new URL(t.baseUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, path, method, headers: opts.headers ?? {} },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
        });
      },
    );
    req.on('error', reject);
    if (opts.body !== undefined && opts.chunked) {
      const half = Math.floor(opts.body.length / 2);
      req.write(opts.body.slice(0, half));
      req.end(opts.body.slice(half));
    } else {
      req.end(opts.body);
    }
  });
}
