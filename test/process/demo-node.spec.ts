import { createServer } from 'node:net';
import { newIdentity } from '../../src/peer/peer.crypto';
import { gatewayChat, MOCK, pageChat } from '../helpers/demo-chat';
import { HeadNodeLoop } from '../helpers/gateway';
import { eventually } from '../helpers/eventually';
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { call } from '../helpers/test-app';

/** The demo node is listed apart from the compute nodes people run (as upstream's mock mode). */
async function registeredNodes(relay: RelayProcess): Promise<{ nodes: number; demo: number }> {
  const res = await call(relay.baseUrl, 'GET', '/relay/diagnostics');
  const demo = res.body.demo_compute_nodes as unknown[] | undefined;
  return {
    nodes: res.body.total_api_v1_registered_compute_nodes as number,
    demo: demo?.length ?? 0,
  };
}

/**
 * A loopback port free right now, below the ephemeral range: the readiness poll's own connections
 * (source ports from that range) can then never connect to themselves before the relay binds it.
 */
async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) {
      return port;
    }
  }
}

const READINESS = ['/healthz', '/api/v1/health', '/v1/health'] as const;

/**
 * Polls a readiness route from the moment the process starts (connection refused until it
 * listens) and returns every non-200 answer seen before the first 200.
 */
async function untilReady(port: number, path: string, stop: AbortSignal): Promise<string[]> {
  const seen: string[] = [];
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline && !stop.aborted) {
    try {
      const res = await call(`http://127.0.0.1:${port}`, 'GET', path);
      if (res.status === 200) {
        return seen;
      }
      seen.push(`${res.status} ${String(res.body.status)}`);
    } catch {
      await new Promise((r) => setTimeout(r, 5)); // not listening yet
    }
  }
  throw new Error(`${path} never answered 200`);
}

/** Starts a relay with the demo node on a chosen port, polling `path` from the first moment. */
async function startPolling(path: string): Promise<{ relay: RelayProcess; seen: string[] }> {
  for (let attempt = 1; ; attempt += 1) {
    const port = await freePort();
    const stop = new AbortController();
    const seen = untilReady(port, path, stop.signal);
    let relay: RelayProcess;
    try {
      relay = await startRelayProcess(
        { RELAY_PORT: String(port), TOKENPLACE_RELAY_DRAIN_SECONDS: '0' },
        ['--use_mock_llm'],
        { startTimeoutMs: 60_000 }, // boots are slow on a shared machine, and these are 50
      );
    } catch (error) {
      stop.abort();
      await seen.catch(() => undefined);
      // Another process took the port between freePort() and the relay's bind (exit 98): again.
      if (attempt < 3 && /exited \(98\)/.test((error as Error).message)) {
        continue;
      }
      throw error;
    }
    try {
      return { relay, seen: await seen };
    } catch (error) {
      relay.child.kill('SIGKILL');
      await relay.exited;
      throw error;
    }
  }
}

describe('the demo compute node (real process)', () => {
  it('should register over HTTP with the node token, answer gateway chats, and unregister on SIGTERM', async () => {
    const relay = await startRelayProcess(
      { TOKEN_PLACE_RELAY_SERVER_TOKEN: 'demo-token', TOKENPLACE_RELAY_DRAIN_SECONDS: '0' },
      ['--use_mock_llm'],
    );
    await eventually(async () => ((await registeredNodes(relay)).demo === 1 ? true : undefined));
    const listed = await registeredNodes(relay);
    const health = await call(relay.baseUrl, 'GET', '/healthz');

    const chat = await call(relay.baseUrl, 'POST', '/v1/chat/completions', {
      model: 'gpt-3.5-turbo',
      messages: [{ role: 'user', content: 'What is the capital of France?' }],
    });
    const completion = await call(relay.baseUrl, 'POST', '/api/v1/completions', {
      model: 'qwen3-8b-instruct',
      prompt: 'Hello',
    });
    relay.child.kill('SIGTERM');
    const code = await relay.exited;
    const messages = relay.logs.map((l) => l.msg);

    expect(listed).toEqual({ nodes: 0, demo: 1 });
    expect(health.body).toMatchObject({ status: 'ok', knownServers: 0, demoNodes: 1 });
    expect(chat.status).toBe(200);
    expect(
      (chat.body.choices as Array<{ message: { content: string } }>)[0]!.message.content,
    ).toMatch(MOCK);
    expect((completion.body.choices as Array<{ text: string }>)[0]!.text).toMatch(MOCK);
    expect(relay.logs.find((l) => l.msg === 'relay listening')).toMatchObject({ demoNode: true });
    expect(messages).toContain('demo compute node registered');
    expect(messages).toContain('demo compute node unregistered');
    expect(
      relay.logs.filter((l) => l.route === '/api/v1/relay/servers/register' && l.status === 200),
    ).toHaveLength(1);
    expect(code).toBe(0);
  });

  it('should also start with USE_MOCK_LLM=1 and stay off without it', async () => {
    const withEnv = await startRelayProcess({ USE_MOCK_LLM: '1' });
    await eventually(async () => ((await registeredNodes(withEnv)).demo === 1 ? true : undefined));
    withEnv.child.kill('SIGINT');
    await withEnv.exited;
    const without = await startRelayProcess({});
    const none = await registeredNodes(without);
    without.child.kill('SIGINT');
    await without.exited;

    expect(none).toEqual({ nodes: 0, demo: 0 });
  });

  it('should leave the work to a real compute node while one can take it, and answer again when it leaves', async () => {
    const relay = await startRelayProcess({ TOKENPLACE_RELAY_DRAIN_SECONDS: '0' }, [
      '--use_mock_llm',
    ]);
    await eventually(async () => ((await registeredNodes(relay)).demo === 1 ? true : undefined));
    const real = await new HeadNodeLoop(relay.baseUrl).start();
    const withReal = await registeredNodes(relay);

    const answers = [];
    for (const text of ['one', 'two', 'three']) {
      answers.push(await gatewayChat(relay.baseUrl, text));
    }
    await real.stop();
    const afterwards = await gatewayChat(relay.baseUrl);
    relay.child.kill('SIGTERM');
    await relay.exited;

    expect(withReal).toEqual({ nodes: 1, demo: 1 });
    expect(answers).toEqual(['echo: eno', 'echo: owt', 'echo: eerht']);
    expect(real.works).toHaveLength(3);
    expect(afterwards).toMatch(MOCK);
  });

  it('should report ready on /healthz, /api/v1/health and /v1/health only once a chat can be served: a chat at the first 200 succeeds in 50 starts of 50', async () => {
    const client = newIdentity();
    const outcomes: string[] = [];
    const notReady = new Set<string>();
    const start = async (i: number): Promise<void> => {
      const path = READINESS[i % READINESS.length] as string;
      const { relay, seen } = await startPolling(path);
      try {
        seen.forEach((s) => notReady.add(s));
        // The instant readiness is 200: the page's chat and a gateway chat, at once.
        const texts = await Promise.all([
          pageChat(relay.baseUrl, client),
          gatewayChat(relay.baseUrl),
        ]);
        const wrong = texts.filter((t) => !MOCK.test(t));
        outcomes.push(wrong.length === 0 ? 'ok' : `start ${i} (${path}): ${wrong.join(' | ')}`);
      } catch (error) {
        outcomes.push(`start ${i} (${path}): ${(error as Error).message}`);
      } finally {
        relay.child.kill('SIGINT');
        await relay.exited;
      }
    };
    // Two relays boot at a time (the suite's runtime); each is its own process and race.
    for (let i = 0; i < 50; i += 2) {
      await Promise.all([start(i), start(i + 1)]);
    }

    expect(outcomes.filter((o) => o !== 'ok')).toEqual([]);
    expect(outcomes).toHaveLength(50);
    expect([...notReady].every((s) => s === '503 starting')).toBe(true);
  }, 600_000);
});
