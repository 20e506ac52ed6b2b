// The framework floor for a gateway chat (bench/gateway.mjs --roots floor): a bare NestJS 12 express
// app that does what a chat needs and nothing else. It has the routes the bench's simulated nodes
// call (register, poll, responses, unregister) and `POST /v1/chat/completions`:
// - a chat seals its request to a node (AES-256-CBC + RSA-OAEP, the relay's own helpers);
// - it hands the request to a held poll or queues it;
// - it waits for the node's answer, unwraps it with one per-process client key (WebCrypto, off the
//   event loop, as the relay does) and answers an OpenAI-shaped body.
// It has no validation, no store, no caps, no logging and no metrics.
// usage: RELAY_PORT=N node bench/gateway-floor-app.mjs (needs `npm run build`)
import 'reflect-metadata';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { Body, Controller, Get, HttpCode, Post } from '@nestjs/common';
import { serveBareNest } from './lib.mjs';

const require = createRequire(import.meta.url);
const { identityOf, openTextAsync, publicKeyFromB64, sealText } = require('../dist/common/hybrid.crypto.js');
const { PROTOCOL_ID } = require('../dist/state/state.types.js');

const port = Number(process.env.RELAY_PORT ?? 5184);
const gateway = identityOf(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);

/** Registered nodes in order (round-robin), each with its parsed key, held polls and queue. */
const nodes = new Map();
const order = [];
let turn = 0;
/** Chats waiting for their answer, by request id. */
const chats = new Map();

function nodeOf(key) {
  let node = nodes.get(key);
  if (!node) {
    node = { key: publicKeyFromB64(key), polls: [], queue: [] };
    nodes.set(key, node);
    order.push(node);
  }
  return node;
}

class FloorController {
  livez() {
    return { status: 'alive' };
  }

  register(body) {
    nodeOf(body.server_public_key);
    return { status: 'registered', control_credential: 'floor' };
  }

  unregister() {
    return { message: 'Server unregistered', removed: true };
  }

  poll(body) {
    const node = nodeOf(body.server_public_key);
    const work = node.queue.shift();
    if (work) return work;
    return new Promise((resolve) => {
      const held = { resolve };
      node.polls.push(held);
      setTimeout(() => {
        const at = node.polls.indexOf(held);
        if (at >= 0) {
          node.polls.splice(at, 1);
          resolve({ message: 'No requests available' });
        }
      }, 10_000);
    });
  }

  responses(body) {
    const chat = chats.get(body.request_id);
    if (chat) {
      chats.delete(body.request_id);
      chat({ ciphertext: body.chat_history ?? body.ciphertext, cipherkey: body.cipherkey, iv: body.iv });
    }
    return { message: 'Response received' };
  }

  async chat(body) {
    const node = order[turn++ % order.length];
    const requestId = `api-v1-${randomBytes(16).toString('hex')}`;
    const inner = {
      protocol: PROTOCOL_ID,
      version: 1,
      request_id: requestId,
      client_public_key: gateway.publicKeyB64,
      api_v1_request: { model: body.model, messages: body.messages, options: {} },
    };
    const sealed = sealText(JSON.stringify(inner), node.key, 'oaep');
    const work = {
      client_public_key: gateway.publicKeyB64,
      chat_history: sealed.ciphertext,
      cipherkey: sealed.cipherkey,
      iv: sealed.iv,
      request_id: requestId,
    };
    const answered = new Promise((resolve) => chats.set(requestId, resolve));
    const held = node.polls.shift();
    if (held) held.resolve(work);
    else node.queue.push(work);
    const { text } = await openTextAsync(gateway.privateKey, await answered, 'oaep');
    const reply = JSON.parse(text).api_v1_response;
    return {
      id: `chatcmpl-${randomBytes(16).toString('hex')}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      choices: [{ index: 0, message: reply.message, finish_reason: reply.finish_reason ?? 'stop' }],
      usage: reply.usage,
    };
  }
}

const routes = [
  ['livez', Get, '/livez'],
  ['register', Post, '/api/v1/relay/servers/register'],
  ['unregister', Post, '/api/v1/relay/servers/unregister'],
  ['poll', Post, '/api/v1/relay/servers/poll'],
  ['responses', Post, '/api/v1/relay/responses'],
  ['chat', Post, '/v1/chat/completions'],
];
Controller()(FloorController);
for (const [name, verb, path] of routes) {
  const descriptor = Object.getOwnPropertyDescriptor(FloorController.prototype, name);
  verb(path)(FloorController.prototype, name, descriptor);
  if (verb === Post) {
    HttpCode(200)(FloorController.prototype, name, descriptor);
    Body()(FloorController.prototype, name, 0);
    Reflect.defineMetadata('design:paramtypes', [Object], FloorController.prototype, name);
  }
}

await serveBareNest(FloorController, port);
