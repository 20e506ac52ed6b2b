import { Allow, IsBoolean, IsInt, IsOptional, Min } from 'class-validator';
import { BodyShape, Coerce, FailsAs } from '../common/envelope-body';
import { Errors } from '../common/relay-error';
import { MAX_ID_CHARS, MAX_KEY_CHARS, MAX_TOKEN_CHARS, Present, Str } from '../common/validators';
import { MAX_NODE_KEY_CHARS } from '../registry/node-key';

/** A credential field: anything but a non-empty bounded string counts as none sent. */
const credentialOrNone = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' && value !== '' && value.length <= MAX_TOKEN_CHARS ? value : undefined;

/** Legacy `max_batch_size`: integer truncation like the existing relay ("3" → 3, 2.9 → 2, true → 1). */
function toBatchSize({ value }: { value: unknown }): unknown {
  if (typeof value === 'boolean') {
    return value ? 1 : 0;
  }
  if (typeof value === 'number' && Number.isFinite(value)) {
    return Math.trunc(value);
  }
  if (typeof value === 'string' && /^\s*[+-]?\d+(\.\d+)?\s*$/.test(value)) {
    return Math.trunc(Number(value));
  }
  return value;
}

/** `POST /sink` (legacy): heartbeat plus batch dequeue. */
@BodyShape({ invalid: Errors.invalidRequest })
export class SinkDto {
  @FailsAs(Errors.invalidBatchSize)
  @IsOptional()
  @Coerce(toBatchSize)
  @IsInt()
  @Min(1)
  max_batch_size?: number;

  /** Node keys are bounded near real sizes (an RSA-8192 key); each one takes a registry slot. */
  @FailsAs(Errors.invalidPublicKey)
  @Str(MAX_NODE_KEY_CHARS)
  server_public_key!: string;
}

/** `POST /unregister` (legacy alias) and `POST /api/v1/relay/servers/unregister`. */
@BodyShape({ invalid: Errors.invalidRequest })
export class UnregisterDto {
  @FailsAs(Errors.invalidPublicKey)
  @Str(MAX_KEY_CHARS)
  server_public_key!: string;

  /** Anything but a bounded string counts as "no credential": 403 for a v1 node, ignored otherwise. */
  @Coerce(({ value }: { value: unknown }) =>
    typeof value === 'string' && value.length <= MAX_TOKEN_CHARS ? value : undefined,
  )
  @Allow()
  control_credential?: string;
}

/** `POST /api/v1/relay/servers/register` and `/servers/poll`. */
@BodyShape({ invalid: Errors.invalidRequest })
export class NodeHelloDto {
  @FailsAs(Errors.missingServerKey)
  @Str(MAX_KEY_CHARS)
  server_public_key!: string;

  /** Validated with the exact capability messages by the registry. */
  @Allow()
  capabilities?: unknown;

  /**
   * Optional proof of ownership (today's nodes send none): with it, a live node may register or
   * poll from any address; a wrong one is refused.
   */
  @Coerce(credentialOrNone)
  @Allow()
  control_credential?: string;
}

/** `POST /api/v1/relay/servers/control`. */
@BodyShape({ invalid: Errors.invalidRequest })
export class ControlDto {
  @FailsAs()
  @Str(MAX_KEY_CHARS)
  server_public_key!: string;

  @FailsAs()
  @Str(MAX_ID_CHARS)
  request_id!: string;

  @FailsAs(Errors.controlCredential)
  @Present()
  @Str(MAX_TOKEN_CHARS, { allowEmpty: true })
  control_credential!: string;

  @FailsAs()
  @IsOptional()
  @IsBoolean()
  acknowledge?: boolean;

  @FailsAs()
  @IsOptional()
  @IsBoolean()
  ack?: boolean;
}
