import { randomBytes } from 'node:crypto';
import { ManualClock } from '../../src/common/clock';
import { openAny, seal } from '../../src/peer/peer.crypto';
import { PROTOCOL, simulatedAnswer, V1ClientSim, V1NodeSim } from '../helpers/simulators';
import { call, createTestApp, type TestApp } from '../helpers/test-app';
import { apiError, MANUAL_SWEEP, parked, V1 } from './api-v1-fixtures';

const expectedAnswer = (content: string): string => simulatedAnswer([{ role: 'user', content }]);

describe('encrypted API v1 chats through the relay (real crypto)', () => {
  let t: TestApp;

  beforeEach(async () => {
    t = await createTestApp({ TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0' });
  });

  afterEach(async () => {
    await t.close();
  });

  it.each([
    ['pkcs1', 'pkcs1'],
    ['pkcs1', 'oaep'],
    ['oaep', 'pkcs1'],
    ['oaep', 'oaep'],
  ] as const)(
    'should complete a chat with a %s-wrapped request and a %s-wrapped reply, ciphertext untouched',
    async (requestPadding, replyPadding) => {
      const node = new V1NodeSim(t.baseUrl, { replyPadding });
      const client = new V1ClientSim(t.baseUrl, { padding: requestPadding });
      await node.register();
      const next = await client.next();

      const submission = await client.submit(
        next.body.server_public_key as string,
        `hello ${requestPadding}/${replyPadding}`,
      );
      const work = await node.take();
      const posted = await node.respond(work!);
      const answer = await client.retrieve(submission.requestId);

      expect(submission.response.status).toBe(200);
      expect(work!.padding).toBe(requestPadding);
      expect(work!.raw).toMatchObject({
        ciphertext: submission.sealed.ciphertext,
        chat_history: submission.sealed.ciphertext,
        cipherkey: submission.sealed.cipherkey,
        iv: submission.sealed.iv,
        client_public_key: client.key,
        request_id: submission.requestId,
        cancel_token: submission.cancelToken,
      });
      expect(posted.status).toBe(200);
      expect(answer.status).toBe(200);
      expect(client.openResponse(answer.body, submission.requestId)).toEqual({
        content: expectedAnswer(`hello ${requestPadding}/${replyPadding}`),
        padding: replyPadding,
      });
    },
  );

  it('should carry a client.py-style request (chat_history, no cancel token, OAEP)', async () => {
    const node = new V1NodeSim(t.baseUrl, { replyPadding: 'oaep' });
    const client = new V1ClientSim(t.baseUrl);
    await node.register();
    const requestId = randomBytes(8).toString('hex');
    const sealed = seal(
      {
        protocol: PROTOCOL,
        version: 1,
        request_id: requestId,
        client_public_key: client.key,
        api_v1_request: {
          model: 'qwen3-8b-instruct',
          messages: [{ role: 'user', content: 'from python' }],
          options: {},
          routing: null,
        },
      },
      node.key,
      'oaep',
    );

    const submitted = await call(t.baseUrl, 'POST', `${V1}/requests`, {
      server_public_key: node.key,
      client_public_key: client.key,
      request_id: requestId,
      protocol: PROTOCOL,
      version: 1,
      chat_history: sealed.ciphertext,
      cipherkey: sealed.cipherkey,
      iv: sealed.iv,
    });
    const work = await node.take();
    await node.respond(work!);
    const answer = await client.retrieve(requestId);

    expect(submitted.status).toBe(200);
    expect(work!.raw.cancel_token).toBeUndefined();
    expect(work!.raw.chat_history).toBe(sealed.ciphertext);
    expect(client.openResponse(answer.body, requestId).content).toBe(expectedAnswer('from python'));
  });

  it('should keep many concurrent conversations apart', async () => {
    const nodes = [0, 1, 2].map(() => new V1NodeSim(t.baseUrl, { capabilities: undefined }));
    for (const node of nodes) {
      await node.register();
    }
    const clients = [0, 1, 2, 3, 4, 5].map((i) => ({
      sim: new V1ClientSim(t.baseUrl, { padding: i % 2 ? 'pkcs1' : 'oaep' }),
      i,
    }));

    const submissions = await Promise.all(
      clients.map(async ({ sim, i }) => {
        const next = await sim.next();
        return {
          sim,
          i,
          sub: await sim.submit(next.body.server_public_key as string, `message number ${i}`),
        };
      }),
    );
    let served = 0;
    for (let round = 0; round < 10 && served < clients.length; round += 1) {
      for (const node of nodes) {
        const work = await node.take();
        if (work) {
          expect((await node.respond(work)).status).toBe(200);
          served += 1;
        }
      }
    }
    const answers = await Promise.all(
      submissions.map(async ({ sim, i, sub }) => ({
        i,
        sim,
        sub,
        res: await sim.retrieve(sub.requestId),
      })),
    );

    expect(served).toBe(clients.length);
    for (const { i, sim, sub, res } of answers) {
      expect(res.status).toBe(200);
      expect(sim.openResponse(res.body, sub.requestId).content).toBe(
        expectedAnswer(`message number ${i}`),
      );
    }
  });

  it('should relay encrypted progress exactly once, readable only by the client', async () => {
    const node = new V1NodeSim(t.baseUrl);
    const client = new V1ClientSim(t.baseUrl);
    await node.register();
    const submission = await client.submit(node.key, 'progress please');
    const work = await node.take();
    const progress = {
      schema_version: 1,
      sequence: 1,
      phase: 'prefill',
      total_prompt_tokens: 12,
      cached_prompt_tokens: 0,
      processed_prompt_tokens: 6,
      generated_tokens: 0,
      elapsed_ms: 120,
    };

    const accepted = await node.progress(work!, progress);
    const first = await client.retrieve(submission.requestId);
    const second = await client.retrieve(submission.requestId);
    await node.respond(work!);
    const answer = await client.retrieve(submission.requestId);

    expect(accepted.status).toBe(202);
    expect(first.status).toBe(202);
    const envelope = first.body.encrypted_progress as Record<string, string>;
    expect(envelope).toMatchObject({
      client_public_key: client.key,
      request_id: submission.requestId,
      protocol: PROTOCOL,
      version: 1,
    });
    const { value } = openAny(client.identity, {
      ciphertext: envelope.ciphertext!,
      cipherkey: envelope.cipherkey!,
      iv: envelope.iv!,
    });
    expect(value).toEqual({
      protocol: PROTOCOL,
      version: 1,
      request_id: submission.requestId,
      client_public_key: client.key,
      api_v1_progress: progress,
    });
    expect(() =>
      openAny(node.identity, {
        ciphertext: envelope.ciphertext!,
        cipherkey: envelope.cipherkey!,
        iv: envelope.iv!,
      }),
    ).toThrow();
    expect(second.status).toBe(202);
    expect(second.body.encrypted_progress).toBeUndefined();
    expect(client.openResponse(answer.body, submission.requestId).content).toBe(
      expectedAnswer('progress please'),
    );
  });

  it('should cancel a queued chat: the node never sees it and the client gets 410', async () => {
    const node = new V1NodeSim(t.baseUrl);
    const client = new V1ClientSim(t.baseUrl);
    await node.register();
    const submission = await client.submit(node.key, 'never mind');

    const cancelled = await client.cancel(submission.requestId, submission.cancelToken);
    const work = await node.take();
    const answer = await client.retrieve(submission.requestId);

    expect(cancelled.body).toEqual({
      status: 'cancelled',
      request_id: submission.requestId,
      removed_from_queue: 1,
    });
    expect(work).toBeNull();
    expect(answer.status).toBe(410);
    expect(answer.body).toEqual(
      apiError('Request cancelled', 'cancelled', {
        status: 'cancelled',
        reason: 'requester_cancelled',
      }),
    );
  });

  it('should cancel an in-flight chat: control says cancelled, ack, then completed/unavailable; the late answer is refused', async () => {
    const node = new V1NodeSim(t.baseUrl);
    const client = new V1ClientSim(t.baseUrl);
    await node.register();
    const submission = await client.submit(node.key, 'stop generating');
    const work = await node.take();
    const active = await node.control(work!.requestId);

    const cancelled = await client.cancel(submission.requestId, submission.cancelToken, {
      reason: 'client_timeout',
    });
    const seen = await node.control(work!.requestId);
    const ack = await node.control(work!.requestId, true);
    const after = await node.control(work!.requestId);
    const late = await node.respond(work!);
    const answer = await client.retrieve(submission.requestId);

    expect(active.body.status).toBe('active');
    expect(cancelled.body).toEqual({
      status: 'cancelled',
      request_id: submission.requestId,
      removed_from_queue: 0,
    });
    expect(seen.body.status).toBe('cancelled');
    expect(ack.body.status).toBe('cancelled');
    expect(after.body.status).toBe('completed/unavailable');
    expect(late.status).toBe(410);
    expect(late.body).toEqual(
      apiError('Request is no longer waiting for a response', 'cancelled', { status: 'cancelled' }),
    );
    expect(answer.body).toEqual(
      apiError('Request cancelled', 'cancelled', { status: 'cancelled', reason: 'client_timeout' }),
    );
  });
});

describe('encrypted API v1 chats against time (ManualClock)', () => {
  it('should deliver a chat to a node that was already long-polling', async () => {
    const clock = new ManualClock();
    const t = await createTestApp(MANUAL_SWEEP, clock);
    try {
      const node = new V1NodeSim(t.baseUrl);
      const client = new V1ClientSim(t.baseUrl, { padding: 'pkcs1' });
      await node.register();
      const held = node.take();
      await parked(t.lifecycle);

      const submission = await client.submit(node.key, 'wake up');
      const work = await held;
      await node.respond(work!);
      const answer = await client.retrieve(submission.requestId);

      expect(work!.requestId).toBe(submission.requestId);
      expect(work!.raw.request_ttl_seconds).toBe(480);
      expect(client.openResponse(answer.body, submission.requestId).content).toBe(
        expectedAnswer('wake up'),
      );
    } finally {
      await t.close();
    }
  });

  it('should expire a chat at its deadline: node sees expired, its answer is refused, the client gets 410', async () => {
    const clock = new ManualClock();
    const t = await createTestApp(
      {
        ...MANUAL_SWEEP,
        TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0',
        TOKEN_PLACE_API_V1_REQUEST_DEADLINE_SECONDS: '2',
      },
      clock,
    );
    try {
      const node = new V1NodeSim(t.baseUrl);
      const client = new V1ClientSim(t.baseUrl);
      await node.register();
      const submission = await client.submit(node.key, 'too slow');
      const work = await node.take();

      clock.advance(2_000);
      const seen = await node.control(work!.requestId);
      const late = await node.respond(work!);
      const answer = await client.retrieve(submission.requestId);

      expect(submission.response.body.request_ttl_seconds).toBe(2);
      expect(seen.body.status).toBe('expired');
      expect(late.status).toBe(410);
      expect(late.body).toEqual(
        apiError('Request is no longer waiting for a response', 'expired', { status: 'expired' }),
      );
      expect(answer.status).toBe(410);
      expect(answer.body).toMatchObject({ error: { code: 'expired', status: 'expired' } });
    } finally {
      await t.close();
    }
  });

  it('should survive a node evicted mid-request: client 410 server_unregistered, node tombstone, then a fresh chat after re-registering', async () => {
    const clock = new ManualClock();
    const t = await createTestApp(
      {
        ...MANUAL_SWEEP,
        TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0',
        TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '2',
        TOKENPLACE_RELAY_NODE_LAPSE_GRACE_SECONDS: '3',
      },
      clock,
    );
    try {
      const node = new V1NodeSim(t.baseUrl);
      const client = new V1ClientSim(t.baseUrl);
      await node.register();
      const oldCredential = node.credential;
      const lost = await client.submit(node.key, 'lost in a crash');
      const queued = await client.submit(node.key, 'queued behind it');
      const work = await node.take();
      await node.control(work!.requestId); // today's nodes confirm a claim at once

      clock.advance(2_000 + 3_000 + 1); // lease + lapse grace: the node is gone
      await t.sweep();
      const lostAnswer = await client.retrieve(lost.requestId);
      const queuedAnswer = await client.retrieve(queued.requestId);
      const tombstone = await node.control(work!.requestId);
      const pollAfter = await node.poll();
      const late = await node.respond(work!);
      await node.register();
      const retry = await client.submit(node.key, 'second try');
      const fresh = await node.take();
      await node.respond(fresh!);
      const answer = await client.retrieve(retry.requestId);

      const unregistered = apiError('Request cancelled', 'cancelled', {
        status: 'cancelled',
        reason: 'server_unregistered',
      });
      expect(lostAnswer.body).toEqual(unregistered);
      expect(queuedAnswer.body).toEqual(unregistered);
      expect(tombstone.body.status).toBe('cancelled');
      expect(pollAfter.status).toBe(404);
      expect(late.status).toBe(410);
      expect(node.credential).not.toBe(oldCredential);
      expect(client.openResponse(answer.body, retry.requestId).content).toBe(
        expectedAnswer('second try'),
      );
    } finally {
      await t.close();
    }
  });
});
