import { call } from '../helpers/test-app';
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { eventually } from '../helpers/eventually';
import { fakeKey } from '../e2e/api-v1-fixtures';

/** API v1 registration wants a key shaped like an RSA one. */
const NODE = fakeKey('node-1');

describe('process life: SIGTERM drain (real process)', () => {
  let relay: RelayProcess | undefined;

  afterEach(() => {
    if (relay && relay.child.exitCode === null) {
      relay.child.kill('SIGKILL');
    }
  });

  it('should flip readiness, answer held long-polls, keep serving through the drain window, then exit 0', async () => {
    relay = await startRelayProcess({
      TOKENPLACE_RELAY_DRAIN_SECONDS: '2',
      TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS: '15',
      TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '60',
    });
    const { baseUrl } = relay;
    await call(baseUrl, 'POST', '/api/v1/relay/servers/register', {
      server_public_key: NODE,
      capabilities: { supported_model_ids: ['m'] },
    });
    const ready = await call(baseUrl, 'GET', '/healthz');
    const held = call(baseUrl, 'POST', '/api/v1/relay/servers/poll', {
      server_public_key: NODE,
    });
    await new Promise((r) => setTimeout(r, 100));
    const signalledAt = Date.now();

    relay.child.kill('SIGTERM');
    const poll = await held;
    const draining = await eventually(async () => {
      const res = await call(baseUrl, 'GET', '/healthz');
      return res.status === 503 ? res : undefined;
    });
    const live = await call(baseUrl, 'GET', '/livez');
    const served = await call(baseUrl, 'POST', '/sink', { server_public_key: 'legacy-node' });
    const code = await relay.exited;
    const elapsed = Date.now() - signalledAt;

    expect(ready.body).toMatchObject({ status: 'ok' });
    expect(poll.status).toBe(200);
    expect(poll.body).toMatchObject({ message: 'No requests available' });
    expect(draining.body).toMatchObject({ status: 'draining', details: { shutdown: true } });
    expect(draining.headers.get('retry-after')).toBe('0');
    expect(live.body).toEqual({ status: 'alive' });
    expect(served.status).toBe(200);
    expect(code).toBe(0);
    expect(elapsed).toBeGreaterThanOrEqual(2000);
    expect(elapsed).toBeLessThan(15_000);
    expect(relay.logs.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['draining', 'relay stopped']),
    );
  });

  it('should answer a held /retrieve at once on SIGTERM and keep accepting answers during the window', async () => {
    relay = await startRelayProcess({
      TOKENPLACE_RELAY_DRAIN_SECONDS: '1',
      TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS: '10',
      TOKENPLACE_RELAY_RETRIEVE_HOLD_SECONDS: '8',
    });
    const { baseUrl } = relay;
    const pending = call(baseUrl, 'POST', '/retrieve', { client_public_key: 'c' });
    await new Promise((r) => setTimeout(r, 200));

    relay.child.kill('SIGTERM');
    const res = await pending;
    const source = await call(baseUrl, 'POST', '/source', {
      client_public_key: 'c',
      chat_history: 'a',
      cipherkey: 'k',
      iv: 'i',
    });

    expect(res.status).toBe(200);
    expect(res.body).toEqual({ error: 'No response available for the given public key' });
    expect(source.status).toBe(200);
    expect(await relay.exited).toBe(0);
  });

  it('should skip the drain window on SIGINT (Ctrl-C stays fast)', async () => {
    relay = await startRelayProcess({
      TOKENPLACE_RELAY_DRAIN_SECONDS: '60',
      TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS: '120',
    });
    const signalledAt = Date.now();

    relay.child.kill('SIGINT');
    const code = await relay.exited;

    expect(code).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(30_000);
  });

  it('should skip the rest of the drain window on a second SIGTERM', async () => {
    relay = await startRelayProcess({
      TOKENPLACE_RELAY_DRAIN_SECONDS: '60',
      TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS: '120',
    });
    relay.child.kill('SIGTERM');
    await eventually(async () =>
      (await call(relay!.baseUrl, 'GET', '/healthz')).status === 503 ? true : undefined,
    );
    const signalledAt = Date.now();

    relay.child.kill('SIGTERM');
    const code = await relay.exited;

    expect(code).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(30_000);
  });

  it('should refuse to start with a clear message listing every bad variable', async () => {
    await expect(
      startRelayProcess({ RELAY_PORT: 'x', TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '-5' }),
    ).rejects.toThrow(
      /relay exited \(78\).*RELAY_PORT=\\"x\\": value must be an integer number.*TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS=\\"-5\\": value must not be less than 0/s,
    );
  });
});
