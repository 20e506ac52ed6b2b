import { startRelayProcess } from '../helpers/relay-process';
import { fakeKey } from '../e2e/api-v1-fixtures';

/** The 16 pipelines' nodes: API v1 registration wants keys shaped like RSA ones. */
const NODE_KEYS = Array.from({ length: 16 }, (_, i) => fakeKey(`drain-node-${i}`));

interface Tally {
  accepted: Set<string>;
  answered: Set<string>;
  refusedWhileDraining: number;
  otherFailures: string[];
}

async function post(
  base: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** One simulated node+client pipeline doing API v1 cycles until the relay goes away. */
async function pipeline(
  base: string,
  i: number,
  tally: Tally,
  stopped: () => boolean,
): Promise<void> {
  const node = NODE_KEYS[i] as string;
  const client = `drain-client-${i}`;
  let n = 0;
  const nodeLoop = (async () => {
    while (!stopped()) {
      try {
        const work = await post(base, '/api/v1/relay/servers/poll', { server_public_key: node });
        if (typeof work.body.request_id === 'string') {
          await post(base, '/api/v1/relay/responses', {
            client_public_key: client,
            request_id: work.body.request_id,
            chat_history: `answer-${work.body.request_id}`,
            cipherkey: 'k',
            iv: 'i',
          });
        }
      } catch {
        return; // the relay has exited
      }
    }
  })();
  try {
    while (!stopped()) {
      const requestId = `${i}-${n++}`;
      const submitted = await post(base, '/api/v1/relay/requests', {
        server_public_key: node,
        client_public_key: client,
        request_id: requestId,
        ciphertext: 'c',
        cipherkey: 'k',
        iv: 'i',
      });
      if (submitted.status === 503) {
        tally.refusedWhileDraining += 1;
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      if (submitted.status !== 200) {
        tally.otherFailures.push(`requests ${submitted.status}`);
        continue;
      }
      tally.accepted.add(requestId);
      for (;;) {
        const got = await post(
          base,
          '/api/v1/relay/responses/retrieve',
          { client_public_key: client, request_id: requestId },
          { Prefer: 'wait=2' },
        );
        if (got.status === 200) {
          tally.answered.add(requestId);
          break;
        }
        if (got.status !== 202) {
          tally.otherFailures.push(`retrieve ${got.status}`);
          break;
        }
      }
    }
  } catch {
    // connection refused: the relay has exited
  }
  await nodeLoop;
}

describe('graceful drain under load (memory store, real process)', () => {
  it('should answer every request accepted before SIGTERM and exit 0 within the grace period', async () => {
    const relay = await startRelayProcess({
      TOKENPLACE_RELAY_DRAIN_SECONDS: '3',
      TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS: '15',
      API_RATE_LIMIT: 'off',
      API_DAILY_QUOTA: 'off',
      API_RELAY_CONTROL_PLANE_RATE_LIMIT: 'off',
      API_RELAY_CONTROL_PLANE_IP_RATE_LIMIT: 'off',
      TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS: '16', // every node calls from 127.0.0.1
    });
    const tally: Tally = {
      accepted: new Set(),
      answered: new Set(),
      refusedWhileDraining: 0,
      otherFailures: [],
    };
    let exited = false;
    void relay.exited.then(() => {
      exited = true;
    });
    for (let i = 0; i < 16; i += 1) {
      await post(relay.baseUrl, '/api/v1/relay/servers/register', {
        server_public_key: NODE_KEYS[i],
        capabilities: { supported_model_ids: ['m'] },
      });
    }
    const pipelines = Array.from({ length: 16 }, (_, i) =>
      pipeline(relay.baseUrl, i, tally, () => exited),
    );
    while (tally.answered.size < 200) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const acceptedAtSignal = tally.accepted.size;
    const signalledAt = Date.now();

    relay.child.kill('SIGTERM');
    const code = await relay.exited;
    const elapsed = Date.now() - signalledAt;
    await Promise.all(pipelines);
    const lost = [...tally.accepted].filter((id) => !tally.answered.has(id));

    expect(code).toBe(0);
    expect(elapsed).toBeLessThan(15_000);
    expect(acceptedAtSignal).toBeGreaterThan(0);
    expect(tally.refusedWhileDraining).toBeGreaterThan(0);
    expect(tally.otherFailures).toEqual([]);
    expect(lost).toEqual([]);
  });
});
