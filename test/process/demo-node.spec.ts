import { HeadNodeLoop } from '../helpers/gateway';
import { eventually } from '../helpers/eventually';
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { call } from '../helpers/test-app';

const MOCK = /^Mock response: .*Paris/;

/** The demo node is listed apart from the compute nodes people run (as upstream's mock mode). */
async function registeredNodes(relay: RelayProcess): Promise<{ nodes: number; demo: number }> {
  const res = await call(relay.baseUrl, 'GET', '/relay/diagnostics');
  const demo = res.body.demo_compute_nodes as unknown[] | undefined;
  return {
    nodes: res.body.total_api_v1_registered_compute_nodes as number,
    demo: demo?.length ?? 0,
  };
}

async function chatText(relay: RelayProcess, content: string): Promise<string> {
  const chat = await call(relay.baseUrl, 'POST', '/v1/chat/completions', {
    model: 'qwen3-8b-instruct',
    messages: [{ role: 'user', content }],
  });
  if (chat.status !== 200) {
    throw new Error(`chat answered ${chat.status}: ${JSON.stringify(chat.body)}`);
  }
  return (chat.body.choices as Array<{ message: { content: string } }>)[0]!.message.content;
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
      answers.push(await chatText(relay, text));
    }
    await real.stop();
    const afterwards = await chatText(relay, 'What is the capital of France?');
    relay.child.kill('SIGTERM');
    await relay.exited;

    expect(withReal).toEqual({ nodes: 1, demo: 1 });
    expect(answers).toEqual(['echo: eno', 'echo: owt', 'echo: eerht']);
    expect(real.works).toHaveLength(3);
    expect(afterwards).toMatch(MOCK);
  });
});
