import {
  LegacyClientSim,
  LegacyNodeSim,
  simulatedAnswer,
  V1ClientSim,
  V1NodeSim,
} from '../helpers/simulators';
import { createTestApp, type TestApp } from '../helpers/test-app';

describe('encrypted chat round trips', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp();
  });

  afterAll(async () => {
    await t.close();
  });

  it('should carry a legacy chat end to end with byte-identical ciphertext', async () => {
    const node = new LegacyNodeSim(t.baseUrl);
    const client = new LegacyClientSim(t.baseUrl);
    expect((await node.sink()).body).toEqual({ next_ping_in_x_seconds: 10 });
    const history = [{ role: 'user' as const, content: 'hello relay' }];

    const sent = await client.send(node.key, history);
    const served = await node.serveOnce();
    const answer = await client.receive();

    expect(sent.status).toBe(200);
    expect(served).toBe(true);
    expect(node.received[0]).toMatchObject({
      client_public_key: client.key,
      chat_history: client.lastSent?.ciphertext,
      cipherkey: client.lastSent?.cipherkey,
      iv: client.lastSent?.iv,
    });
    expect(answer).toEqual([...history, { role: 'assistant', content: simulatedAnswer(history) }]);
  });

  it.each(['pkcs1', 'oaep'] as const)(
    'should carry an API v1 chat end to end when the node wraps with %s',
    async (replyPadding) => {
      const node = new V1NodeSim(t.baseUrl, { replyPadding });
      const client = new V1ClientSim(t.baseUrl);
      expect((await node.register()).status).toBe(200);
      const next = await client.next();
      expect(next.body.server_public_key).toBe(node.key);

      const submission = await client.submit(node.key, 'hello v1');
      const work = await node.take();
      expect(work?.raw).toMatchObject({
        ciphertext: submission.sealed.ciphertext,
        chat_history: submission.sealed.ciphertext,
        cipherkey: submission.sealed.cipherkey,
        iv: submission.sealed.iv,
        request_id: submission.requestId,
        cancel_token: submission.cancelToken,
        e2ee_v1: true,
      });
      expect((await node.respond(work!)).status).toBe(200);
      const answer = await client.await(submission.requestId);

      expect(answer.status).toBe(200);
      expect(client.openResponse(answer.body, submission.requestId)).toEqual({
        content: simulatedAnswer([{ role: 'user', content: 'hello v1' }]),
        padding: replyPadding,
      });
      await node.unregister();
    },
  );
});
