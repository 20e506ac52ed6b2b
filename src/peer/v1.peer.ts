import type { KeyObject } from 'node:crypto';
import { openAny, openAnyAsync, seal, type Padding, type Sealed } from './peer.crypto';
import {
  carriesSealed,
  innerEnvelope,
  Peer,
  post,
  sealedOf,
  text,
  type Json,
  type RelayReply,
} from './relay.client';
import { PROTOCOL_ID, PROTOCOL_VERSION, V1_ROUTES } from './relay.protocol';

/** A work item a poll answer carried, decrypted. */
export interface V1Work {
  raw: Json;
  requestId: string;
  clientKey: string;
  inner: Json;
  padding: Padding;
}

/** Whether a work item's inner envelope names the outer request, client and protocol. */
export function workMatches(work: V1Work): boolean {
  return (
    work.inner.client_public_key === work.clientKey &&
    work.inner.request_id === work.requestId &&
    work.inner.protocol === PROTOCOL_ID
  );
}

/** An API v1 compute node (`server.py` at HEAD): register, long-poll, control, progress, respond. */
export class V1Node<R extends RelayReply = RelayReply> extends Peer<R> {
  register(capabilities: Json): Promise<R> {
    return this.send(post(V1_ROUTES.register, { server_public_key: this.key, capabilities }, true));
  }

  /** Long-polls for work; `capabilities` renew what the node offers (today's nodes send them). */
  poll(capabilities?: Json): Promise<R> {
    const offer = capabilities === undefined ? {} : { capabilities };
    return this.send(post(V1_ROUTES.poll, { server_public_key: this.key, ...offer }, true, true));
  }

  /** Decrypts the work item a poll answer carried, or null when it carried none; throws when it cannot. */
  openWork(body: Json): V1Work | null {
    if (!carriesSealed(body)) {
      return null;
    }
    const { value, padding } = openAny(this.identity, sealedOf(body));
    return this.work(body, value, padding);
  }

  /** {@link openWork} with the OAEP unwrap off the event loop. */
  async openWorkAsync(body: Json): Promise<V1Work | null> {
    if (!carriesSealed(body)) {
      return null;
    }
    const { value, padding } = await openAnyAsync(this.identity, sealedOf(body));
    return this.work(body, value, padding);
  }

  private work(body: Json, value: unknown, padding: Padding): V1Work {
    const inner = value !== null && typeof value === 'object' ? (value as Json) : {};
    return {
      raw: body,
      requestId: text(body, 'request_id'),
      clientKey: text(body, 'client_public_key'),
      inner,
      padding,
    };
  }

  control(requestId: string, credential: string | null, acknowledge = false): Promise<R> {
    return this.send(
      post(
        V1_ROUTES.control,
        {
          server_public_key: this.key,
          request_id: requestId,
          control_credential: credential,
          acknowledge,
        },
        true,
      ),
    );
  }

  progress(
    work: Pick<V1Work, 'requestId' | 'clientKey'>,
    progress: Json,
    credential: string | null,
    padding: Padding,
  ): Promise<R> {
    const sealed = seal(
      innerEnvelope(work.requestId, work.clientKey, { api_v1_progress: progress }),
      work.clientKey,
      padding,
    );
    return this.send(
      post(
        V1_ROUTES.progress,
        {
          server_public_key: this.key,
          client_public_key: work.clientKey,
          request_id: work.requestId,
          control_credential: credential,
          protocol: PROTOCOL_ID,
          version: PROTOCOL_VERSION,
          ...sealed,
        },
        true,
      ),
    );
  }

  /**
   * Answers a work item: `response` (the `api_v1_response`, or an `error`) sealed to the client,
   * whose key may come already parsed.
   */
  respond(
    work: Pick<V1Work, 'requestId' | 'clientKey'>,
    response: Json,
    padding: Padding,
    clientKey: KeyObject | string = work.clientKey,
  ): Promise<R> {
    const sealed = seal(
      innerEnvelope(work.requestId, work.clientKey, { api_v1_response: response }),
      clientKey,
      padding,
    );
    return this.send(
      post(
        V1_ROUTES.responses,
        {
          client_public_key: work.clientKey,
          request_id: work.requestId,
          protocol: PROTOCOL_ID,
          version: PROTOCOL_VERSION,
          chat_history: sealed.ciphertext,
          cipherkey: sealed.cipherkey,
          iv: sealed.iv,
        },
        true,
      ),
    );
  }

  unregister(credential: string | null): Promise<R> {
    return this.send(
      post(
        V1_ROUTES.unregister,
        { server_public_key: this.key, control_credential: credential },
        true,
      ),
    );
  }
}

export interface V1Submitted<R> {
  requestId: string;
  cancelToken: string;
  sealed: Sealed;
  reply: R;
}

/** An API v1 client (the web page, `client.py` at HEAD): next, requests, retrieve, cancel. */
export class V1Client<R extends RelayReply = RelayReply> extends Peer<R> {
  next(model: string, contextTier: string): Promise<R> {
    return this.send({
      method: 'GET',
      path: `${V1_ROUTES.next}?model=${encodeURIComponent(model)}&context_tier=${contextTier}`,
      asNode: false,
      mayHold: false,
    });
  }

  /** Submits `request` (the `api_v1_request`) sealed to `serverKey`; `extra` joins the outer body. */
  async submit(
    serverKey: string,
    request: Json,
    ids: { requestId: string; cancelToken: string },
    padding: Padding = 'oaep',
    extra: Json = {},
  ): Promise<V1Submitted<R>> {
    const { requestId, cancelToken } = ids;
    const sealed = seal(
      innerEnvelope(requestId, this.key, { api_v1_request: request }),
      serverKey,
      padding,
    );
    const reply = await this.send(
      post(
        V1_ROUTES.requests,
        {
          server_public_key: serverKey,
          client_public_key: this.key,
          request_id: requestId,
          protocol: PROTOCOL_ID,
          version: PROTOCOL_VERSION,
          ciphertext: sealed.ciphertext,
          cipherkey: sealed.cipherkey,
          iv: sealed.iv,
          cancel_token: cancelToken,
          ...extra,
        },
        false,
      ),
    );
    return { requestId, cancelToken, sealed, reply };
  }

  retrieve(requestId?: string, headers: Record<string, string> = {}): Promise<R> {
    return this.send({
      ...post(
        V1_ROUTES.retrieve,
        {
          client_public_key: this.key,
          ...(requestId !== undefined ? { request_id: requestId } : {}),
        },
        false,
      ),
      headers,
    });
  }

  cancel(requestId: string, cancelToken: string, extra: Json = {}): Promise<R> {
    return this.send(
      post(
        V1_ROUTES.cancel,
        {
          client_public_key: this.key,
          request_id: requestId,
          cancel_token: cancelToken,
          status: 'cancelled',
          reason: 'requester_cancelled',
          ...extra,
        },
        false,
      ),
    );
  }

  /** Decrypts a 200 retrieve body's inner envelope (either padding); throws when it cannot. */
  openAnswer(body: Json): { inner: Json; padding: Padding } {
    const { value, padding } = openAny(this.identity, sealedOf(body));
    return { inner: value !== null && typeof value === 'object' ? (value as Json) : {}, padding };
  }

  /** Whether an answer's inner envelope names this client, `requestId` and the protocol. */
  answerMatches(inner: Json, requestId: string): boolean {
    return (
      inner.protocol === PROTOCOL_ID &&
      inner.version === PROTOCOL_VERSION &&
      inner.request_id === requestId &&
      inner.client_public_key === this.key
    );
  }
}
