import { randomBytes } from 'node:crypto';
import { openAny, seal, type Identity } from '../../src/peer/peer.crypto';
import { PROTOCOL } from './simulators';
import { call } from './test-app';

/** What the demo compute node answers (the existing relay's mock texts). */
export const MOCK = /^Mock response: .*Paris/;

/**
 * The chat page's flow (API v1 E2EE) against whatever node `/servers/next` picks: next, requests,
 * retrieve until answered; returns the decrypted text. Throws with the wire answer on a refusal.
 */
export async function pageChat(
  baseUrl: string,
  client: Identity,
  content = 'What is the capital of France?',
): Promise<string> {
  const next = await call(
    baseUrl,
    'GET',
    '/api/v1/relay/servers/next?model=qwen3-8b-instruct&context_tier=8k-fast',
  );
  if (next.status !== 200) {
    throw new Error(`servers/next answered ${next.status}: ${next.text}`);
  }
  const requestId = randomBytes(16).toString('hex');
  const sealed = seal(
    {
      protocol: PROTOCOL,
      version: 1,
      request_id: requestId,
      client_public_key: client.publicKeyB64,
      api_v1_request: { model: 'qwen3-8b-instruct', messages: [{ role: 'user', content }] },
    },
    next.body.server_public_key as string,
  );
  const sent = await call(baseUrl, 'POST', '/api/v1/relay/requests', {
    server_public_key: next.body.server_public_key,
    client_public_key: client.publicKeyB64,
    request_id: requestId,
    protocol: PROTOCOL,
    version: 1,
    ...sealed,
  });
  if (sent.status !== 200) {
    throw new Error(`requests answered ${sent.status}: ${sent.text}`);
  }
  for (let i = 0; i < 1000; i += 1) {
    const res = await call(baseUrl, 'POST', '/api/v1/relay/responses/retrieve', {
      client_public_key: client.publicKeyB64,
      request_id: requestId,
    });
    if (res.status === 200) {
      const { value } = openAny(client, {
        ciphertext: res.body.chat_history as string,
        cipherkey: res.body.cipherkey as string,
        iv: res.body.iv as string,
      });
      return (value as { api_v1_response: { message: { content: string } } }).api_v1_response
        .message.content;
    }
    if (res.status !== 202) {
      throw new Error(`retrieve answered ${res.status}: ${res.text}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no answer to ${requestId}`);
}

/** One OpenAI-compatible chat (`/v1/chat/completions`); returns the assistant's text. */
export async function gatewayChat(
  baseUrl: string,
  content = 'What is the capital of France?',
): Promise<string> {
  const chat = await call(baseUrl, 'POST', '/v1/chat/completions', {
    model: 'qwen3-8b-instruct',
    messages: [{ role: 'user', content }],
  });
  if (chat.status !== 200) {
    throw new Error(`chat answered ${chat.status}: ${chat.text}`);
  }
  return (chat.body.choices as Array<{ message: { content: string } }>)[0]!.message.content;
}
