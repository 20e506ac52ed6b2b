import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { RelayConfig } from '../config/relay-config';
import { Errors } from './relay-error';

/** Answers 410 on the legacy routes when `TOKENPLACE_ENABLE_LEGACY_RELAY_ROUTES` is off (before auth). */
@Injectable()
export class LegacyGateGuard implements CanActivate {
  constructor(private readonly config: RelayConfig) {}

  canActivate(context: ExecutionContext): boolean {
    if (this.config.legacyRoutesEnabled) {
      return true;
    }
    const req = context.switchToHttp().getRequest<Request>();
    const route = (req.route as { path?: string } | undefined)?.path ?? req.path;
    throw Errors.legacyDisabled(route);
  }
}
