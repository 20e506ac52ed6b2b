import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { V1ClientSim, V1NodeSim } from '../helpers/simulators';

/**
 * Issue 18 item 8: SIGHUP drains like SIGTERM, and with the memory store work already handed out
 * can still be answered and collected after the drain window, until the grace period ends, while
 * no new work is handed out (it would die with the process).
 */
describe('drain: SIGHUP and work handed out (real process, memory store)', () => {
  let relay: RelayProcess | undefined;

  afterEach(async () => {
    if (relay && relay.child.exitCode === null && relay.child.signalCode === null) {
      relay.child.kill('SIGKILL');
      await relay.exited;
    }
    relay = undefined;
  });

  it('should drain on SIGHUP as on SIGTERM and exit 0', async () => {
    relay = await startRelayProcess({
      TOKENPLACE_RELAY_DRAIN_SECONDS: '1',
      TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS: '10',
    });
    const signalledAt = Date.now();

    relay.child.kill('SIGHUP');
    const code = await relay.exited;
    const elapsed = Date.now() - signalledAt;

    expect(code).toBe(0);
    expect(elapsed).toBeGreaterThanOrEqual(1000);
    expect(relay.logs).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ msg: 'draining', reason: 'SIGHUP' }),
        expect.objectContaining({ msg: 'relay stopped', signal: 'SIGHUP' }),
      ]),
    );
  });

  it('should let handed-out work be answered and collected after the drain window, hand out nothing new, and exit once it is collected', async () => {
    relay = await startRelayProcess({
      TOKENPLACE_RELAY_DRAIN_SECONDS: '1',
      TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS: '15',
    });
    const node = new V1NodeSim(relay.baseUrl);
    const client = new V1ClientSim(relay.baseUrl);
    await node.register();
    const handedOut = await client.submit(node.key, 'first');
    await client.submit(node.key, 'second, still queued');
    const work = await node.take();
    const signalledAt = Date.now();

    relay.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 2500));
    const stillUp = relay.child.exitCode === null;
    const poll = await node.poll();
    const answered = await node.respond(work!);
    const collected = await client.await(handedOut.requestId);
    const code = await relay.exited;
    const elapsed = Date.now() - signalledAt;

    expect(work?.requestId).toBe(handedOut.requestId);
    expect(stillUp).toBe(true);
    expect(poll.status).toBe(200);
    expect(poll.body).toMatchObject({ message: 'No requests available' });
    expect(answered.status).toBe(200);
    expect(collected.status).toBe(200);
    expect(code).toBe(0);
    expect(elapsed).toBeLessThan(12_000);
    expect(relay.logs.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['lingering for work already handed out', 'relay stopped']),
    );
  }, 30_000);
});
