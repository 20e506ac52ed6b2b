import { Allow, ValidateIf } from 'class-validator';
import { BodyShape, Coerce, FailsAs } from '../common/envelope-body';
import { V1_ENVELOPE_KEYS, V1EnvelopeFields } from '../common/v1-envelope.dto';
import { Errors } from '../common/relay-error';
import {
  MAX_CIPHERTEXT_CHARS,
  MAX_ID_CHARS,
  MAX_KEY_CHARS,
  MAX_TOKEN_CHARS,
  Present,
  Str,
} from '../common/validators';
import { PROTOCOL_ID } from '../state/state.types';

/** `POST /source` (legacy): a node's answer for a client. */
@BodyShape({ invalid: Errors.invalidRequest })
export class SourceDto {
  @FailsAs() @Str(MAX_KEY_CHARS) client_public_key!: string;
  @FailsAs() @Str(MAX_CIPHERTEXT_CHARS) chat_history!: string;
  @FailsAs() @Str(MAX_TOKEN_CHARS * 8) cipherkey!: string;
  @FailsAs() @Str(MAX_ID_CHARS, { allowEmpty: true }) iv!: string;
}

/** `POST /stream/source` (legacy): one chunk of a stream session. */
@BodyShape({ invalid: Errors.invalidRequest })
export class StreamSourceDto {
  @FailsAs() @Str(MAX_ID_CHARS) session_id!: string;
  @FailsAs() @Present() chunk!: unknown;

  @FailsAs()
  @Coerce(({ value }: { value: unknown }) => Boolean(value))
  @Allow()
  final = false;
}

export const RESPONSE_KEYS = ['client_public_key', ...V1_ENVELOPE_KEYS] as const;

/** `POST /api/v1/relay/responses` (spec §4.4.7). */
@BodyShape({ invalid: Errors.invalidRequest, allowlist: RESPONSE_KEYS })
export class ResponsesDto extends V1EnvelopeFields {
  @FailsAs() @Str(MAX_KEY_CHARS) client_public_key!: string;
}

export const PROGRESS_KEYS = [
  'server_public_key',
  'client_public_key',
  'request_id',
  'control_credential',
  'protocol',
  'version',
  'ciphertext',
  'cipherkey',
  'iv',
] as const;

/** `POST /api/v1/relay/progress`: exactly nine keys (spec §4.4.10). */
@BodyShape({
  invalid: Errors.progressSchema,
  allowlist: PROGRESS_KEYS,
  exactKeys: Errors.progressSchema,
})
export class ProgressDto {
  @FailsAs(Errors.progressProtocol)
  @ValidateIf(() => true)
  @Coerce(({ value }: { value: unknown }) => (value === PROTOCOL_ID ? value : undefined))
  @Present()
  protocol!: string;

  @FailsAs(Errors.progressProtocol)
  @Coerce(({ value }: { value: unknown }) => (value === 1 ? value : undefined))
  @Present()
  version!: number;

  @FailsAs(Errors.progressEnvelope) @Str(MAX_KEY_CHARS) server_public_key!: string;
  @FailsAs(Errors.progressEnvelope) @Str(MAX_KEY_CHARS) client_public_key!: string;
  @FailsAs(Errors.progressEnvelope) @Str(MAX_ID_CHARS) request_id!: string;
  @FailsAs(Errors.progressEnvelope) @Str(MAX_TOKEN_CHARS) control_credential!: string;
  @FailsAs(Errors.progressEnvelope) @Str(16384) ciphertext!: string;
  @FailsAs(Errors.progressEnvelope) @Str(16384) cipherkey!: string;
  @FailsAs(Errors.progressEnvelope) @Str(MAX_ID_CHARS) iv!: string;
}
