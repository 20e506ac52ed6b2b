import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { Errors } from '../common/relay-error';
import { TokenService } from './token.service';

/** `X-Relay-Server-Token` on compute-node routes (401 envelope of spec §2.1). */
@Injectable()
export class NodeTokenGuard implements CanActivate {
  constructor(private readonly tokens: TokenService) {}

  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<Request>();
    if (!this.tokens.accepts(req.headers['x-relay-server-token'])) {
      throw Errors.serverToken();
    }
    return true;
  }
}
