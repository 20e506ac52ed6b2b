import { IsOptional, ValidateIf } from 'class-validator';
import { FailsAs } from './envelope-body';
import {
  MAX_CIPHERTEXT_CHARS,
  MAX_ID_CHARS,
  MAX_TOKEN_CHARS,
  Str,
  VersionLike,
} from './validators';

/**
 * The API v1 envelope fields `/requests` and `/responses` share (spec §4.3): the opaque ciphertext
 * (`ciphertext` or its alias `chat_history`), the wrapped key, the IV, and the pass-through
 * identifiers. Subclasses add their addressing keys.
 */
export abstract class V1EnvelopeFields {
  @FailsAs()
  @ValidateIf((o: V1EnvelopeFields) => o.chat_history === undefined || o.ciphertext !== undefined)
  @Str(MAX_CIPHERTEXT_CHARS)
  ciphertext?: string;

  @FailsAs()
  @ValidateIf((o: V1EnvelopeFields) => o.chat_history !== undefined)
  @Str(MAX_CIPHERTEXT_CHARS)
  chat_history?: string;

  @FailsAs() @Str(MAX_TOKEN_CHARS * 8) cipherkey!: string;
  @FailsAs() @Str(MAX_ID_CHARS, { allowEmpty: true }) iv!: string;
  @FailsAs() @IsOptional() @Str(MAX_ID_CHARS) request_id?: string;
  @FailsAs() @IsOptional() @Str(64) protocol?: string;
  @FailsAs() @IsOptional() @VersionLike() version?: number | string;
  @FailsAs() @IsOptional() @Str(MAX_TOKEN_CHARS) cancel_token?: string;
}

export const V1_ENVELOPE_KEYS = [
  'ciphertext',
  'chat_history',
  'cipherkey',
  'iv',
  'request_id',
  'protocol',
  'version',
  'cancel_token',
] as const;
