import { Inject, Injectable } from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
import { sha256Hex } from '../common/ids';
import { ANSWER_RETRY_MS } from '../config/relay-config';
import { Errors } from '../common/relay-error';
import { nestedDeeperThan } from '../common/validators';
import { STATE_STORE, type StateStore } from '../state/state-store';
import type { Envelope } from '../state/state.types';
import type { ProgressDto, ResponsesDto, SourceDto, StreamSourceDto } from './source.dto';

/** The refusal of an answer the relay has no room for now (the work stays answerable). */
const ANSWER_NOT_STORED =
  'Relay answer storage is full; the answer was not stored, retry it shortly (the request stays answerable)';
const ANSWER_RETRY_SECONDS = ANSWER_RETRY_MS / 1000;

/** Stream chunks are small JSON values; deeper nesting is refused rather than stored. */
const MAX_CHUNK_DEPTH = 64;

/** Compute nodes answering: `/source`, `/stream/source`, `/responses`, `/progress`. */
@Injectable()
export class SourceService {
  constructor(
    @Inject(STATE_STORE) private readonly store: StateStore,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  async legacySource(dto: SourceDto): Promise<object> {
    const envelope: Envelope = {
      ciphertext: dto.chat_history,
      cipherkey: dto.cipherkey,
      iv: dto.iv,
      extra: {},
    };
    const result = await this.store.complete({
      dialect: 'legacy',
      clientKey: dto.client_public_key,
      requestId: null,
      envelope,
      now: this.clock.now(),
    });
    if (result.status === 'responses_full' || result.status === 'answers_full') {
      // Not stored: the claim stays with this node and is queued again if it does not resend.
      throw Errors.capacity(ANSWER_NOT_STORED, ANSWER_RETRY_SECONDS, 503);
    }
    return { message: 'Response received and queued for client' };
  }

  async streamChunk(dto: StreamSourceDto): Promise<object> {
    if (nestedDeeperThan(dto.chunk, MAX_CHUNK_DEPTH)) {
      // It could not be serialised back to the client (nor measured) without overflowing the stack.
      throw Errors.invalidRequest();
    }
    // Stored as its JSON text: a parsed chunk ([{},{},...]) costs ~20 heap bytes per byte of text.
    const chunk = JSON.stringify(dto.chunk) ?? 'null';
    const result = await this.store.appendStreamChunk({
      sessionId: dto.session_id,
      chunk,
      chunkBytes: Buffer.byteLength(chunk),
      final: dto.final,
      now: this.clock.now(),
    });
    if (result.status === 'unknown') {
      throw Errors.unknownStream();
    }
    if (result.status === 'full') {
      throw Errors.streamFull();
    }
    if (result.status === 'answers_full') {
      throw Errors.capacity(ANSWER_NOT_STORED, ANSWER_RETRY_SECONDS, 503);
    }
    return { message: 'Chunk stored', final: dto.final };
  }

  /** `/responses`: `answerer` is the caller's owner address (only the holding node may answer). */
  async responses(dto: ResponsesDto, answerer: string): Promise<object> {
    const extra: Record<string, string | number> = { client_public_key: dto.client_public_key };
    for (const key of ['request_id', 'protocol', 'version', 'cancel_token'] as const) {
      const value = dto[key];
      if (value !== undefined) {
        extra[key] = value;
      }
    }
    const envelope: Envelope = {
      ciphertext: (dto.ciphertext ?? dto.chat_history) as string,
      cipherkey: dto.cipherkey,
      iv: dto.iv,
      extra,
    };
    const result = await this.store.complete({
      dialect: 'v1',
      clientKey: dto.client_public_key,
      requestId: dto.request_id ?? null,
      envelope,
      answerer,
      now: this.clock.now(),
    });
    switch (result.status) {
      case 'stored':
        return { message: 'Response received and queued for client' };
      case 'duplicate':
        return { message: 'Response already queued for client' };
      case 'not_holder':
        throw Errors.notHolder();
      case 'gone':
        throw Errors.noLongerWaiting(result.code);
      case 'responses_full':
        throw Errors.capacity('Too many unretrieved responses for this client; retry later', 5);
      case 'answers_full':
        throw Errors.capacity(ANSWER_NOT_STORED, ANSWER_RETRY_SECONDS, 503);
      default: {
        const never: never = result;
        return never;
      }
    }
  }

  async progress(dto: ProgressDto): Promise<object> {
    const result = await this.store.putProgress({
      nodeId: dto.server_public_key,
      credentialDigest: sha256Hex(dto.control_credential),
      clientKey: dto.client_public_key,
      requestId: dto.request_id,
      envelope: {
        ciphertext: dto.ciphertext,
        cipherkey: dto.cipherkey,
        iv: dto.iv,
        extra: {
          client_public_key: dto.client_public_key,
          request_id: dto.request_id,
          protocol: dto.protocol,
          version: dto.version,
        },
      },
      now: this.clock.now(),
    });
    switch (result.status) {
      case 'accepted':
        return { message: 'Encrypted progress accepted' };
      case 'forbidden':
        throw Errors.controlCredential();
      case 'not_active':
        throw Errors.progressNotActive();
      case 'expired':
        throw Errors.progressExpired();
      default: {
        const never: never = result.status;
        return never;
      }
    }
  }
}
