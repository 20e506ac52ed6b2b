import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { Request } from 'express';
import { addressGroup, addressUnit, clientAddress } from '../common/client-address';
import type { NodeOrigin } from '../state/state.types';

/**
 * The registry's view of a client address: ownership by the caller's unit (an IPv4 address, or
 * the IPv6 /64 inside which a host picks new addresses), the admission share by its group (an IPv4
 * address, or the IPv6 /56 one household or VM gets at least).
 */
export function nodeOrigin(address: string): NodeOrigin {
  return { owner: addressUnit(address), group: addressGroup(address) };
}

/** `@CallerOrigin()`: the {@link NodeOrigin} of the request's client address. */
export const CallerOrigin = createParamDecorator((_: unknown, ctx: ExecutionContext): NodeOrigin =>
  nodeOrigin(clientAddress(ctx.switchToHttp().getRequest<Request>())),
);
