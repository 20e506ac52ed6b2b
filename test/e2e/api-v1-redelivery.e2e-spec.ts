import { ManualClock } from '../../src/common/clock';
import { simulatedAnswer, V1ClientSim, V1NodeSim } from '../helpers/simulators';
import { createTestApp } from '../helpers/test-app';

describe('redelivery of work a node never received', () => {
  it('should hand a claim the node never confirmed to the next poll once the in-flight lease lapses', async () => {
    const clock = new ManualClock();
    const t = await createTestApp(
      {
        TOKENPLACE_RELAY_SWEEP_INTERVAL_SECONDS: '60',
        TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0',
        TOKEN_PLACE_API_V1_IN_FLIGHT_TTL_SECONDS: '5',
      },
      clock,
    );
    try {
      const node = new V1NodeSim(t.baseUrl);
      const client = new V1ClientSim(t.baseUrl);
      await node.register();
      const sub = await client.submit(node.key, 'did it arrive?');
      // The poll answer is lost on the way (the node crashed, or a replica died mid-answer):
      // the node never calls /servers/control for it.
      const lostOnTheWay = await node.poll();

      clock.advance(4_000);
      await t.sweep();
      await node.register();
      const tooEarly = await node.poll();
      clock.advance(1_001);
      await t.sweep();
      const redelivered = await node.take();
      await node.control(redelivered!.requestId);
      await node.respond(redelivered!);
      const answer = await client.retrieve(sub.requestId);

      expect(lostOnTheWay.body.request_id).toBe(sub.requestId);
      expect(tooEarly.body).toMatchObject({ message: 'No requests available' });
      expect(redelivered?.requestId).toBe(sub.requestId);
      expect(client.openResponse(answer.body, sub.requestId).content).toBe(
        simulatedAnswer([{ role: 'user', content: 'did it arrive?' }]),
      );
    } finally {
      await t.close();
    }
  });
});
