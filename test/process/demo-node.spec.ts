import { eventually } from '../helpers/eventually';
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { call } from '../helpers/test-app';

const MOCK = /^Mock response: .*Paris/;

async function registeredNodes(relay: RelayProcess): Promise<number> {
  const res = await call(relay.baseUrl, 'GET', '/relay/diagnostics');
  return res.body.total_api_v1_registered_compute_nodes as number;
}

/** `node dist/main.js --use_mock_llm`: the demo compute node of a real relay process. */
describe('the demo compute node (real process)', () => {
  it('should register over HTTP with the node token, answer gateway chats, and unregister on SIGTERM', async () => {
    const relay = await startRelayProcess(
      { TOKEN_PLACE_RELAY_SERVER_TOKEN: 'demo-token', TOKENPLACE_RELAY_DRAIN_SECONDS: '0' },
      ['--use_mock_llm'],
    );
    await eventually(async () => ((await registeredNodes(relay)) === 1 ? true : undefined));

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
    await eventually(async () => ((await registeredNodes(withEnv)) === 1 ? true : undefined));
    withEnv.child.kill('SIGINT');
    await withEnv.exited;
    const without = await startRelayProcess({});
    const none = await registeredNodes(without);
    without.child.kill('SIGINT');
    await without.exited;

    expect(none).toBe(0);
  });
});
