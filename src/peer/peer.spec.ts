import { newIdentity } from './peer.crypto';
import { LegacyClient, LegacyNode } from './legacy.peer';
import type { RelayReply, RelayRequest } from './relay.client';
import { V1Client, V1Node, workMatches } from './v1.peer';
import { PROTOCOL_ID } from './relay.protocol';

/** A relay stand-in that records each request and answers 200 with `reply`. */
function recorder(reply: Record<string, unknown> = {}): {
  sent: RelayRequest[];
  send: (request: RelayRequest) => Promise<RelayReply>;
} {
  const sent: RelayRequest[] = [];
  return {
    sent,
    send: (request) => {
      sent.push(request);
      return Promise.resolve({ status: 200, body: reply });
    },
  };
}

const nodeKey = newIdentity();
const clientKey = newIdentity();

describe('the protocol peer library', () => {
  it('should name the API v1 E2EE protocol as the wire does', () => {
    expect(PROTOCOL_ID).toBe('tokenplace_api_v1_relay_e2ee');
  });

  it('should carry an API v1 request from client to node and the answer back, identity checked', async () => {
    const wire = recorder();
    const client = new V1Client(wire.send, clientKey);
    const node = new V1Node(wire.send, nodeKey);
    const request = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };

    await client.submit(nodeKey.publicKeyB64, request, { requestId: 'r1', cancelToken: 't1' });
    const outer = wire.sent[0]?.body as Record<string, unknown>;
    const work = node.openWork({ ...outer, chat_history: outer.ciphertext });
    await node.respond(work!, { message: { role: 'assistant', content: 'yo' } }, 'pkcs1');
    const answer = client.openAnswer(wire.sent[1]?.body as Record<string, unknown>);

    expect(wire.sent.map((r) => [r.method, r.path, r.asNode, r.mayHold])).toEqual([
      ['POST', '/api/v1/relay/requests', false, false],
      ['POST', '/api/v1/relay/responses', true, false],
    ]);
    expect(outer).toMatchObject({
      server_public_key: nodeKey.publicKeyB64,
      client_public_key: clientKey.publicKeyB64,
      request_id: 'r1',
      protocol: PROTOCOL_ID,
      version: 1,
      cancel_token: 't1',
    });
    expect(work).toMatchObject({ requestId: 'r1', padding: 'oaep' });
    expect(work!.inner.api_v1_request).toEqual(request);
    expect(workMatches(work!)).toBe(true);
    expect(answer.padding).toBe('pkcs1');
    expect(client.answerMatches(answer.inner, 'r1')).toBe(true);
    expect(client.answerMatches(answer.inner, 'r2')).toBe(false);
  });

  it('should refuse a work item whose inner envelope names another request', async () => {
    const wire = recorder();
    const client = new V1Client(wire.send, clientKey);
    await client.submit(nodeKey.publicKeyB64, {}, { requestId: 'inner', cancelToken: 't' });
    const outer = wire.sent[0]?.body as Record<string, unknown>;

    const work = new V1Node(wire.send, nodeKey).openWork({
      ...outer,
      chat_history: outer.ciphertext,
      request_id: 'outer',
    });

    expect(workMatches(work!)).toBe(false);
  });

  it('should hold the long-polls open and mark node calls, on both protocols', async () => {
    const wire = recorder();

    await new LegacyNode(wire.send, nodeKey).sink();
    await new V1Node(wire.send, nodeKey).poll({});
    await new LegacyClient(wire.send, clientKey).retrieve();
    await new V1Client(wire.send, clientKey).next('qwen3 8b', '8k-fast');

    expect(wire.sent.map((r) => [r.method, r.path, r.asNode, r.mayHold])).toEqual([
      ['POST', '/sink', true, true],
      ['POST', '/api/v1/relay/servers/poll', true, true],
      ['POST', '/retrieve', false, false],
      ['GET', '/api/v1/relay/servers/next?model=qwen3%208b&context_tier=8k-fast', false, false],
    ]);
  });

  it('should carry a legacy history to the node and the answered history back', async () => {
    const wire = recorder();
    const client = new LegacyClient(wire.send, clientKey);
    const node = new LegacyNode(wire.send, nodeKey);
    const history = [{ role: 'user' as const, content: 'héllo' }];

    await client.faucet(nodeKey.publicKeyB64, history);
    const work = node.openWork(wire.sent[0]?.body as Record<string, unknown>);
    await node.source(work!.clientKey, [...work!.history, { role: 'assistant', content: 'ok' }]);

    expect(work!.clientKey).toBe(clientKey.publicKeyB64);
    expect(client.openAnswer(wire.sent[1]?.body as Record<string, unknown>)).toEqual([
      ...history,
      { role: 'assistant', content: 'ok' },
    ]);
    expect(node.openWork({})).toBeNull();
  });
});
