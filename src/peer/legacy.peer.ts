import { open, openAny, seal, type Padding, type Sealed } from './peer.crypto';
import { Peer, post, sealedOf, text, type Json, type RelayReply } from './relay.client';
import { LEGACY_ROUTES, type ChatMessage } from './relay.protocol';

/** Work a legacy `/sink` answer carried, decrypted. */
export interface LegacyWork {
  raw: Json;
  clientKey: string;
  history: ChatMessage[];
  padding: Padding;
}

/** A legacy compute node (`server.py` of Dec 2025): `/sink`, `/source`, `/unregister`. */
export class LegacyNode<R extends RelayReply = RelayReply> extends Peer<R> {
  /** Registers or pings; the answer may carry work. */
  sink(extra: Json = {}): Promise<R> {
    return this.send(
      post(LEGACY_ROUTES.sink, { server_public_key: this.key, ...extra }, true, true),
    );
  }

  /**
   * Decrypts the work a `/sink` answer carried (the history, bare or under `chat_history`), or
   * null when it carried none. Throws when it cannot be decrypted with this node's key.
   */
  openWork(body: Json): LegacyWork | null {
    if (typeof body.chat_history !== 'string') {
      return null;
    }
    const { value, padding } = openAny(this.identity, sealedOf(body));
    const history = (
      Array.isArray(value) ? value : (value as { chat_history: unknown }).chat_history
    ) as ChatMessage[];
    return { raw: body, clientKey: text(body, 'client_public_key'), history, padding };
  }

  /** Posts `history` (the conversation with the answer appended), sealed to the client. */
  source(clientKey: string, history: ChatMessage[], padding: Padding = 'oaep'): Promise<R> {
    const sealed = seal(history, clientKey, padding);
    return this.send(
      post(
        LEGACY_ROUTES.source,
        {
          client_public_key: clientKey,
          chat_history: sealed.ciphertext,
          cipherkey: sealed.cipherkey,
          iv: sealed.iv,
        },
        true,
      ),
    );
  }

  unregister(): Promise<R> {
    return this.send(post(LEGACY_ROUTES.unregister, { server_public_key: this.key }, true));
  }
}

/** A legacy client (`client.py` of Dec 2025): `/next_server`, `/faucet`, `/retrieve`. */
export class LegacyClient<R extends RelayReply = RelayReply> extends Peer<R> {
  nextServer(): Promise<R> {
    return this.send({
      method: 'GET',
      path: LEGACY_ROUTES.nextServer,
      asNode: false,
      mayHold: false,
    });
  }

  /** Sends the conversation so far, sealed to `serverKey`. */
  async faucet(
    serverKey: string,
    history: ChatMessage[],
    padding: Padding = 'oaep',
  ): Promise<{ sealed: Sealed; reply: R }> {
    const sealed = seal(history, serverKey, padding);
    const reply = await this.send(
      post(
        LEGACY_ROUTES.faucet,
        {
          server_public_key: serverKey,
          client_public_key: this.key,
          chat_history: sealed.ciphertext,
          cipherkey: sealed.cipherkey,
          iv: sealed.iv,
        },
        false,
      ),
    );
    return { sealed, reply };
  }

  retrieve(): Promise<R> {
    return this.send(post(LEGACY_ROUTES.retrieve, { client_public_key: this.key }, false));
  }

  /** The conversation a `/retrieve` answer carried, decrypted, or null when it carried none. */
  openAnswer(body: Json): ChatMessage[] | null {
    return typeof body.chat_history === 'string'
      ? (open(this.identity, sealedOf(body)) as ChatMessage[])
      : null;
  }
}
