import { Allow, IsOptional } from 'class-validator';
import { BodyShape, FailsAs } from '../common/envelope-body';
import { V1_ENVELOPE_KEYS, V1EnvelopeFields } from '../common/v1-envelope.dto';
import { Errors } from '../common/relay-error';
import {
  MAX_CIPHERTEXT_CHARS,
  MAX_ID_CHARS,
  MAX_KEY_CHARS,
  MAX_TOKEN_CHARS,
  Str,
} from '../common/validators';

export const FAUCET_KEYS = [
  'client_public_key',
  'server_public_key',
  'chat_history',
  'cipherkey',
  'iv',
  'stream',
] as const;

/** `POST /faucet` (legacy, HEAD guardrails: no plaintext, no unknown keys). */
@BodyShape({ invalid: Errors.invalidRequest, allowlist: FAUCET_KEYS })
export class FaucetDto {
  @FailsAs() @Str(MAX_KEY_CHARS) server_public_key!: string;
  @FailsAs() @Str(MAX_CIPHERTEXT_CHARS) chat_history!: string;
  @FailsAs() @Str(MAX_TOKEN_CHARS * 8) cipherkey!: string;
  @FailsAs() @Str(MAX_ID_CHARS, { allowEmpty: true }) iv!: string;
  @FailsAs() @IsOptional() @Str(MAX_KEY_CHARS) client_public_key?: string | null;
  @Allow() stream?: unknown;
}

/** `POST /retrieve` and `POST /stream/retrieve` (legacy). */
@BodyShape({ invalid: Errors.invalidRequest })
export class LegacyRetrieveDto {
  @FailsAs() @Str(MAX_KEY_CHARS) client_public_key!: string;
}

export const REQUEST_KEYS = [
  'server_public_key',
  'client_public_key',
  ...V1_ENVELOPE_KEYS,
] as const;

/** `POST /api/v1/relay/requests` (spec §4.4.6, guardrails of §4.3). */
@BodyShape({ invalid: Errors.invalidRequest, allowlist: REQUEST_KEYS })
export class RequestsDto extends V1EnvelopeFields {
  @FailsAs() @Str(MAX_KEY_CHARS) server_public_key!: string;
  /** Checked last: its own message only when everything else is in order (spec §4.3). */
  @FailsAs(Errors.missingClientKey) @Str(MAX_KEY_CHARS) client_public_key!: string;
}

/** `POST /api/v1/relay/responses/retrieve`. */
@BodyShape({ invalid: Errors.invalidRequest })
export class RetrieveDto {
  @FailsAs() @Str(MAX_KEY_CHARS) client_public_key!: string;
  @FailsAs() @IsOptional() @Str(MAX_ID_CHARS) request_id?: string;
}

/** `POST /api/v1/relay/requests/cancel`. */
@BodyShape({ invalid: Errors.invalidRequest })
export class CancelDto {
  @FailsAs() @Str(MAX_KEY_CHARS) client_public_key!: string;
  @FailsAs() @Str(MAX_ID_CHARS) request_id!: string;
  @FailsAs(Errors.cancelProof)
  @IsOptional()
  @Str(MAX_TOKEN_CHARS, { allowEmpty: true })
  cancel_token?: string;
  @Allow() status?: unknown;
  @Allow() reason?: unknown;
}
