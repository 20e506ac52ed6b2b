import type { RsaKey, Sealed } from './peer.crypto';
import { PROTOCOL_ID, PROTOCOL_VERSION } from './relay.protocol';

/**
 * What the typed calls of both protocols (`legacy.peer.ts`, `v1.peer.ts`) share: the request a
 * peer sends, the envelope fields, the API v1 inner envelope (spec §6.4). Each peer brings its own
 * way of sending (fetch with a timeout, a keep-alive agent, a virtual-time driver): a
 * {@link Send} gets a {@link RelayRequest} and returns at least the status and the parsed JSON body.
 */
export type Json = Record<string, unknown>;

export interface RelayRequest {
  method: 'GET' | 'POST';
  /** The route, with its query string (GET). */
  path: string;
  body?: Json;
  headers?: Record<string, string>;
  /** A compute node's call: it carries the node token when the relay requires one. */
  asNode: boolean;
  /** The relay may hold it open (`/sink`, `/servers/poll`): a long-poll. */
  mayHold: boolean;
}

export interface RelayReply {
  status: number;
  body: Json;
}

export type Send<R extends RelayReply = RelayReply> = (request: RelayRequest) => Promise<R>;

/** A POST of `body` to `path`. */
export const post = (path: string, body: Json, asNode: boolean, mayHold = false): RelayRequest => ({
  method: 'POST',
  path,
  body,
  asNode,
  mayHold,
});

/** A JSON body's string field, or an error naming it. */
export function text(body: Json, field: string): string {
  const value = body[field];
  if (typeof value !== 'string') {
    throw new Error(`the work item has no ${field}`);
  }
  return value;
}

/** The sealed fields of a body: the ciphertext under `chat_history` (or `ciphertext`). */
export function sealedOf(body: Json): Sealed {
  const ciphertext = typeof body.chat_history === 'string' ? body.chat_history : body.ciphertext;
  if (typeof ciphertext !== 'string') {
    throw new Error('the body carries no ciphertext');
  }
  return { ciphertext, cipherkey: text(body, 'cipherkey'), iv: text(body, 'iv') };
}

/** Whether a body carries a sealed value (work on `/sink` or a poll, an answer on a retrieve). */
export function carriesSealed(body: Json): boolean {
  return typeof body.chat_history === 'string' || typeof body.ciphertext === 'string';
}

/** The API v1 inner envelope: identity fields, then the request, progress or response. */
export function innerEnvelope(
  requestId: string,
  clientKey: string,
  payload: { api_v1_request: Json } | { api_v1_response: Json } | { api_v1_progress: Json },
): Json {
  return {
    protocol: PROTOCOL_ID,
    version: PROTOCOL_VERSION,
    request_id: requestId,
    client_public_key: clientKey,
    ...payload,
  };
}

/** What every peer of both protocols holds: its way of sending, and its RSA identity. */
export abstract class Peer<R extends RelayReply = RelayReply> {
  constructor(
    protected readonly send: Send<R>,
    readonly identity: RsaKey,
  ) {}

  /** The peer's public key as the wire carries it (base64 of the PEM). */
  get key(): string {
    return this.identity.publicKeyB64;
  }
}
