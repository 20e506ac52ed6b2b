import { Injectable } from '@nestjs/common';
import { isPlainObject } from '../common/envelope-body';
import { constantTimeEquals } from '../common/ids';
import { Errors } from '../common/relay-error';
import { MAX_KEY_CHARS } from '../common/validators';
import { RelayConfig } from '../config/relay-config';
import { RegistryService } from './registry.service';

/** Operator-only node removal, authenticated in constant time (upstream compared in plain). */
@Injectable()
export class OperatorService {
  constructor(
    private readonly config: RelayConfig,
    private readonly registry: RegistryService,
  ) {}

  /**
   * Operator authentication (spec §4.4.4, gateway.md §3.2): `X-Token-Place-Operator` when
   * non-empty, else `Authorization: Bearer <t>`; 503 when no token is configured, 401 otherwise.
   */
  authenticate(header: string | undefined, authorization: string | undefined): void {
    const expected = this.config.operatorToken;
    if (expected === null) {
      throw Errors.operatorNotConfigured();
    }
    const bearer = /^Bearer\s+(.+)$/i.exec(authorization ?? '')?.[1];
    const presented = (header?.trim() ? header : (bearer ?? '')).trim();
    if (
      presented === '' ||
      !constantTimeEquals(Buffer.from(presented, 'latin1'), Buffer.from(expected, 'utf8'))
    ) {
      throw Errors.operatorToken();
    }
  }

  async unregister(
    header: string | undefined,
    authorization: string | undefined,
    body: unknown,
  ): Promise<object> {
    this.authenticate(header, authorization);
    const key = isPlainObject(body) ? body.server_public_key : undefined;
    if (typeof key !== 'string' || key.trim() === '' || key.length > MAX_KEY_CHARS) {
      throw Errors.invalidPublicKey();
    }
    const removed = await this.registry.forceUnregister(key);
    return { message: 'Server unregistered', removed };
  }
}
