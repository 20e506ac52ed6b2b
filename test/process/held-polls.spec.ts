import { eventually } from '../helpers/eventually';
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { call, type WireResult } from '../helpers/test-app';
import { fakeKey } from '../e2e/api-v1-fixtures';

const HELD = 2000;

async function inBatches<T>(
  count: number,
  size: number,
  fn: (i: number) => Promise<T>,
): Promise<T[]> {
  const out: T[] = [];
  for (let start = 0; start < count; start += size) {
    const batch = Array.from({ length: Math.min(size, count - start) }, (_, i) => fn(start + i));
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

describe(`${HELD} long-polls held at once (real process)`, () => {
  let relay: RelayProcess;

  afterAll(() => {
    relay?.child.kill('SIGKILL');
  });

  it('should hold them without any Node warning on stderr and answer them all when draining starts', async () => {
    relay = await startRelayProcess({
      TOKENPLACE_RELAY_MAX_NODES: String(HELD),
      TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS: String(HELD), // every node calls from 127.0.0.1
      TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '60',
      TOKENPLACE_RELAY_DRAIN_SECONDS: '1',
    });
    const keys = Array.from({ length: HELD }, (_, i) => fakeKey(`held-node-${i}`));
    await inBatches(HELD, 200, (i) =>
      call(relay.baseUrl, 'POST', '/api/v1/relay/servers/register', {
        server_public_key: keys[i],
      }),
    );
    const started = Date.now();
    const polls: Array<Promise<WireResult>> = keys.map((key) =>
      call(relay.baseUrl, 'POST', '/api/v1/relay/servers/poll', { server_public_key: key }),
    );
    const waiting = await eventually(async () => {
      const text = (await call(relay.baseUrl, 'GET', '/metrics')).text;
      const held = Number(/^tokenplace_relay_waiting_requests (\S+)$/m.exec(text)?.[1]);
      return held >= HELD ? held : undefined;
    }, 1200);
    const quietWhileHeld = relay.stderr();

    relay.child.kill('SIGTERM');
    const answers = await Promise.all(polls);
    const code = await relay.exited;

    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(answers.every((a) => a.body.message === 'No requests available')).toBe(true);
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(waiting).toBe(HELD);
    expect(quietWhileHeld).toBe('');
    expect(relay.stderr()).not.toMatch(/Warning/);
    expect(code).toBe(0);
  }, 120_000);
});
