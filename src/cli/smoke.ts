import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { processEnv } from '../config/relay-config';
import { newIdentity } from '../peer/peer.crypto';
import { LegacyClient, LegacyNode } from '../peer/legacy.peer';
import { carriesSealed, type Json, type RelayRequest } from '../peer/relay.client';
import { V1Client, V1Node, workMatches } from '../peer/v1.peer';
import { NODE_TOKEN_HEADER } from '../peer/relay.protocol';

/**
 * Synthetic end-to-end check for operators: `node dist/cli/smoke.js <relay-url>` (the image keeps
 * `/app/dist/smoke/smoke.js` for it).
 *
 * Registers a throwaway echo compute node, sends one encrypted chat as a client through each
 * protocol (legacy and API v1) straight to that node's key, checks the decrypted answer,
 * unregisters, and prints one line per step with its duration. Exit 0 when every step passed,
 * 1 when one failed, 2 on bad usage. Needs nothing but Node (global fetch, node:crypto); speaks
 * both protocols through the peer library (`src/peer/`).
 */

export interface SmokeOptions {
  baseUrl: string;
  token: string | null;
  /** Per-request timeout, and the longest wait for an answer. */
  timeoutMs: number;
  skipLegacy: boolean;
}

export type StepStatus = 'ok' | 'fail' | 'skip';

export interface SmokeStep {
  protocol: 'relay' | 'legacy' | 'api-v1';
  name: string;
  status: StepStatus;
  ms: number;
  detail: string;
}

export interface SmokeReport {
  ok: boolean;
  steps: SmokeStep[];
  ms: number;
}

interface Reply {
  status: number;
  body: Json;
  text: string;
  path: string;
}

class StepFailure extends Error {}

/** Thrown by a step to stop its protocol and report it as skipped (e.g. legacy routes off). */
class StepSkip extends Error {}

const CHAT_MODEL_PREFIX = 'tokenplace-smoke-';

export function echoOf(text: string): string {
  return `smoke-echo: ${[...text].reverse().join('')}`;
}

/** The smoke check's way of sending: fetch with a timeout, no redirects, the token on node calls. */
async function send(options: SmokeOptions, request: RelayRequest): Promise<Reply> {
  const headers: Record<string, string> = { accept: 'application/json', ...request.headers };
  if (request.body !== undefined) {
    headers['content-type'] = 'application/json';
  }
  if (request.asNode && options.token) {
    headers[NODE_TOKEN_HEADER] = options.token;
  }
  const res = await fetch(new URL(request.path.replace(/^\//, ''), options.baseUrl), {
    method: request.method,
    headers,
    body: request.body === undefined ? undefined : JSON.stringify(request.body),
    redirect: 'manual',
    signal: AbortSignal.timeout(options.timeoutMs),
  });
  const text = await res.text();
  if (res.status >= 300 && res.status < 400) {
    throw new StepFailure(
      `redirected (${res.status}) to ${res.headers.get('location') ?? '?'}: use that URL`,
    );
  }
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text for the message
  }
  const body =
    parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Json) : {};
  return { status: res.status, body, text, path: request.path.split('?')[0] as string };
}

/** The reply's body when it has the `expected` status; otherwise fails the step with the answer. */
function expectStatus(expected: number, reply: Reply): Json {
  if (reply.status !== expected) {
    throw new StepFailure(describe(reply));
  }
  return reply.body;
}

function describe(reply: Reply): string {
  const hint =
    reply.status === 401 && !/metrics/.test(reply.path)
      ? ' (compute-node token missing or wrong: pass --token or set TOKENPLACE_RELAY_SERVER_TOKEN)'
      : reply.status === 429
        ? ' (rate limited: wait for the window to pass)'
        : '';
  return `${reply.path} answered ${reply.status}${hint}: ${reply.text.slice(0, 200).trim()}`;
}

function str(body: Json, key: string): string {
  const value = body[key];
  if (typeof value !== 'string' || value === '') {
    throw new StepFailure(`answer has no ${key}`);
  }
  return value;
}

/** Decrypting what a peer received: any failure fails the step with the reason. */
function decrypted<T>(open: () => T): T {
  try {
    return open();
  } catch (error) {
    throw new StepFailure(`cannot decrypt: ${(error as Error).message}`);
  }
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

type Relay = (request: RelayRequest) => Promise<Reply>;

export async function runSmoke(
  options: SmokeOptions,
  print: (line: string) => void = () => undefined,
): Promise<SmokeReport> {
  const relay: Relay = (request) => send(options, request);
  const steps: SmokeStep[] = [];
  const started = performance.now();

  async function step(
    protocol: SmokeStep['protocol'],
    name: string,
    run: () => Promise<string>,
  ): Promise<boolean> {
    const t0 = performance.now();
    let status: StepStatus = 'ok';
    let detail: string;
    try {
      detail = await run();
    } catch (error) {
      status = error instanceof StepSkip ? 'skip' : 'fail';
      detail = error instanceof Error ? error.message : String(error);
    }
    const entry = { protocol, name, status, ms: Math.round(performance.now() - t0), detail };
    steps.push(entry);
    print(formatStep(entry));
    return status === 'ok';
  }

  /** Polls `attempt` until it returns a value, or fails the step after the timeout. */
  async function waitFor<T>(what: string, attempt: () => Promise<T | null>): Promise<T> {
    const deadline = performance.now() + options.timeoutMs;
    for (let pause = 50; ; pause = Math.min(pause * 2, 500)) {
      const value = await attempt();
      if (value !== null) {
        return value;
      }
      if (performance.now() > deadline) {
        throw new StepFailure(`no ${what} within ${options.timeoutMs} ms`);
      }
      await delay(pause);
    }
  }

  const get = (path: string): Promise<Reply> =>
    relay({ method: 'GET', path, asNode: false, mayHold: false });
  const healthy =
    (await step('relay', 'liveness GET /livez', async () => {
      const body = expectStatus(200, await get('/livez'));
      return `status=${String(body.status)}`;
    })) &&
    (await step('relay', 'readiness GET /healthz', async () => {
      const body = expectStatus(200, await get('/healthz'));
      return `status=${String(body.status)} knownServers=${String(body.knownServers)} store=${typeof body.store === 'string' ? body.store : '?'}`;
    }));

  if (healthy && !options.skipLegacy) {
    await legacyRoundTrip(relay, step, waitFor);
  } else if (options.skipLegacy) {
    await step('legacy', 'legacy round trip', () =>
      Promise.reject(new StepSkip('skipped (--skip-legacy)')),
    );
  }
  if (healthy) {
    await v1RoundTrip(relay, step, waitFor);
  }

  const ms = Math.round(performance.now() - started);
  const ok = steps.every((s) => s.status !== 'fail');
  const skipped = steps.filter((s) => s.status === 'skip').length;
  print(
    `smoke: ${ok ? 'PASS' : 'FAIL'} ${options.baseUrl} (${steps.length} steps, ${skipped} skipped) in ${ms} ms`,
  );
  return { ok, steps, ms };
}

type StepFn = (
  protocol: SmokeStep['protocol'],
  name: string,
  run: () => Promise<string>,
) => Promise<boolean>;
type WaitFn = <T>(what: string, attempt: () => Promise<T | null>) => Promise<T>;

/** Runs the steps of a round trip in order until one does not pass. */
async function inOrder(...steps: Array<() => Promise<boolean>>): Promise<void> {
  for (const run of steps) {
    if (!(await run())) {
      return;
    }
  }
}

async function legacyRoundTrip(relay: Relay, step: StepFn, waitFor: WaitFn): Promise<void> {
  const node = new LegacyNode(relay, newIdentity());
  const client = new LegacyClient(relay, newIdentity());
  const question = `legacy ${randomBytes(6).toString('hex')}`;
  let registered = false;

  /** Polls a legacy route until its 200 body carries a `chat_history` (work, or an answer). */
  const legacyEnvelope = (what: string, call: () => Promise<Reply>): Promise<Json> =>
    waitFor(what, async () => {
      const body = expectStatus(200, await call());
      return typeof body.chat_history === 'string' ? body : null;
    });

  await inOrder(
    () =>
      step('legacy', 'register echo node POST /sink', async () => {
        const reply = await node.sink();
        if (reply.status === 410) {
          throw new StepSkip(
            'legacy routes are disabled on this relay (410): skipping the legacy protocol',
          );
        }
        if (reply.status !== 200 || typeof reply.body.next_ping_in_x_seconds !== 'number') {
          throw new StepFailure(describe(reply));
        }
        registered = true;
        return `next_ping_in_x_seconds=${reply.body.next_ping_in_x_seconds}`;
      }),
    () =>
      step('legacy', 'client sends POST /faucet', async () => {
        const { reply } = await client.faucet(node.key, [{ role: 'user', content: question }]);
        expectStatus(200, reply);
        return 'queued for the echo node';
      }),
    () =>
      step('legacy', 'node takes work POST /sink and answers POST /source', async () => {
        const body = await legacyEnvelope('work on /sink', () => node.sink());
        str(body, 'cipherkey');
        str(body, 'iv');
        const work = decrypted(() => node.openWork(body));
        const last = work?.history.at(-1);
        if (!work || !last || last.content !== question || work.clientKey !== client.key) {
          throw new StepFailure('the node decrypted something else than the client sent');
        }
        const answer = [
          ...work.history,
          { role: 'assistant' as const, content: echoOf(last.content) },
        ];
        expectStatus(200, await node.source(work.clientKey, answer));
        return 'decrypted the request, answer posted';
      }),
    () =>
      step('legacy', 'client retrieves and decrypts POST /retrieve', async () => {
        const body = await legacyEnvelope('answer on /retrieve', () => client.retrieve());
        const answer = decrypted(() => client.openAnswer(body)) ?? [];
        const expected = echoOf(question);
        if (answer.at(-1)?.content !== expected) {
          throw new StepFailure(
            `decrypted answer ${JSON.stringify(answer.at(-1))} is not ${JSON.stringify(expected)}`,
          );
        }
        return 'round trip verified';
      }),
  );

  if (registered) {
    await step('legacy', 'unregister echo node POST /unregister', async () => {
      const body = expectStatus(200, await node.unregister());
      return `removed=${String(body.removed)}`;
    });
  }
}

async function v1RoundTrip(relay: Relay, step: StepFn, waitFor: WaitFn): Promise<void> {
  const node = new V1Node(relay, newIdentity());
  const client = new V1Client(relay, newIdentity());
  const nonce = randomBytes(6).toString('hex');
  const model = `${CHAT_MODEL_PREFIX}${nonce}`;
  const question = `api v1 ${nonce}`;
  const requestId = randomBytes(16).toString('hex');
  const capabilities = {
    api_version: 'v1',
    supported_model_ids: [model],
    active_context_tier: '8k-fast',
    maximum_total_context_tokens: 8192,
    default_output_token_reservation: 256,
    maximum_output_tokens: 512,
    max_concurrency: 1,
    backend_class: 'cpu',
  };
  let credential: string | null = null;

  await inOrder(
    () =>
      step('api-v1', 'register echo node POST /api/v1/relay/servers/register', async () => {
        const body = expectStatus(200, await node.register(capabilities));
        credential = str(body, 'control_credential');
        return `model=${model} lease=${String(body.next_ping_in_x_seconds)}s`;
      }),
    () =>
      step('api-v1', 'client submits POST /api/v1/relay/requests', async () => {
        const { reply } = await client.submit(
          node.key,
          {
            model,
            messages: [{ role: 'user', content: question }],
            options: { max_tokens: 64 },
            routing: { context_tier: '8k-fast' },
          },
          { requestId, cancelToken: randomBytes(16).toString('hex') },
        );
        const body = expectStatus(200, reply);
        return `deadline=${String(body.request_deadline_remaining_seconds)}s`;
      }),
    () =>
      step('api-v1', 'node polls POST /servers/poll and answers POST /responses', async () => {
        const body = await waitFor('work on /servers/poll', async () => {
          const work = expectStatus(200, await node.poll(capabilities));
          return carriesSealed(work) ? work : null;
        });
        const work = decrypted(() => node.openWork(body));
        if (
          !work ||
          !workMatches(work) ||
          work.requestId !== requestId ||
          work.clientKey !== client.key
        ) {
          throw new StepFailure('inner envelope does not match the outer fields');
        }
        const request = work.inner.api_v1_request as
          { messages?: Array<{ content?: string }> } | undefined;
        const content = request?.messages?.at(-1)?.content ?? '';
        const answer = {
          message: { role: 'assistant', content: echoOf(content) },
          finish_reason: 'stop',
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        };
        expectStatus(200, await node.respond(work, answer, 'oaep'));
        return 'decrypted the request, answer posted';
      }),
    () =>
      step('api-v1', 'client retrieves and decrypts POST /responses/retrieve', async () => {
        const body = await waitFor('answer on /responses/retrieve', async () => {
          const reply = await client.retrieve(requestId);
          return reply.status === 202 ? null : expectStatus(200, reply);
        });
        const { inner } = decrypted(() => client.openAnswer(body));
        const message = (inner.api_v1_response as { message?: { content?: string } } | undefined)
          ?.message;
        if (!client.answerMatches(inner, requestId) || message?.content !== echoOf(question)) {
          throw new StepFailure(
            `decrypted answer ${JSON.stringify(message)} is not the echo of the request`,
          );
        }
        return 'round trip verified';
      }),
  );

  if (credential !== null) {
    const owner = credential;
    await step('api-v1', 'unregister echo node POST /servers/unregister', async () => {
      const body = expectStatus(200, await node.unregister(owner));
      return `removed=${String(body.removed)}`;
    });
  }
}

export function formatStep(s: SmokeStep): string {
  const mark = s.status === 'ok' ? 'ok  ' : s.status === 'skip' ? 'skip' : 'FAIL';
  return `${mark} ${s.protocol.padEnd(6)} ${s.name.padEnd(58)} ${String(s.ms).padStart(6)} ms  ${s.detail}`;
}

export const USAGE = `usage: smoke <relay-url> [--token TOKEN | --token-file FILE] [--timeout SECONDS] [--skip-legacy]
  Registers a throwaway echo compute node, round-trips one encrypted chat through the legacy and
  the API v1 protocol, unregisters it. The compute-node token defaults to TOKENPLACE_RELAY_SERVER_TOKEN,
  TOKEN_PLACE_RELAY_SERVER_TOKEN or the first of TOKEN_PLACE_RELAY_SERVER_TOKENS.`;

/** Parses the command line; throws an Error with a usage message on bad input. */
export function parseArgs(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): SmokeOptions {
  let url: string | undefined;
  let token: string | null = null;
  let timeoutMs = 15_000;
  let skipLegacy = false;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    const value = (): string => {
      const v = argv[i + 1];
      if (v === undefined) {
        throw new Error(`${arg} needs a value`);
      }
      i += 1;
      return v;
    };
    if (arg === '--token') {
      token = value().trim();
    } else if (arg === '--token-file') {
      token =
        readFileSync(value(), 'utf8')
          .split(/\r?\n/)
          .map((l) => l.trim())
          .find(Boolean) ?? '';
    } else if (arg === '--timeout') {
      const seconds = Number(value());
      if (!Number.isFinite(seconds) || seconds <= 0) {
        throw new Error('--timeout needs a positive number of seconds');
      }
      timeoutMs = seconds * 1000;
    } else if (arg === '--skip-legacy') {
      skipLegacy = true;
    } else if (arg === '-h' || arg === '--help') {
      throw new Error('help');
    } else if (arg.startsWith('-')) {
      throw new Error(`unknown option ${arg}`);
    } else if (url === undefined) {
      url = arg;
    } else {
      throw new Error(`unexpected argument ${arg}`);
    }
  }
  if (url === undefined) {
    throw new Error('the relay URL is required');
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`not a URL: ${url}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`not an http(s) URL: ${url}`);
  }
  if (token === null) {
    const list = env.TOKEN_PLACE_RELAY_SERVER_TOKENS?.split(/[,\n]/)
      .map((t) => t.trim())
      .find(Boolean);
    token =
      env.TOKENPLACE_RELAY_SERVER_TOKEN?.trim() ||
      env.TOKEN_PLACE_RELAY_SERVER_TOKEN?.trim() ||
      list ||
      null;
  }
  const baseUrl = parsed.href.endsWith('/') ? parsed.href : `${parsed.href}/`;
  return { baseUrl, token: token || null, timeoutMs, skipLegacy };
}

/** The CLI: returns the exit code. */
export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  out: (line: string) => void,
): Promise<number> {
  let options: SmokeOptions;
  try {
    options = parseArgs(argv, env);
  } catch (error) {
    const message = (error as Error).message;
    out(message === 'help' ? USAGE : `smoke: ${message}\n${USAGE}`);
    return message === 'help' ? 0 : 2;
  }
  out(`smoke: ${options.baseUrl} (node token ${options.token ? 'set' : 'not set'})`);
  const report = await runSmoke(options, out);
  return report.ok ? 0 : 1;
}

/** Runs the CLI on this process's arguments and environment, and sets its exit code. */
export function runCli(): void {
  // The smoke CLI is not the relay: it reads only its own token variables.
  void main(process.argv.slice(2), processEnv(), (line) => process.stdout.write(`${line}\n`)).then(
    (code) => {
      process.exitCode = code;
    },
  );
}

if (require.main === module) {
  runCli();
}
