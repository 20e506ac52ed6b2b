import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { Request } from 'express';
import * as ipaddr from 'ipaddr.js';
import { clientAddress } from '../common/client-address';
import type { NodeOrigin } from '../state/state.types';

/**
 * The registry's view of a client address. IPv4 (and IPv4-mapped IPv6) is one address for both
 * purposes. An IPv6 host picks new addresses inside its /64 (privacy extensions), so ownership is
 * the /64; one household or VM gets at least a /56, so the admission share counts the /56.
 */
export function nodeOrigin(address: string): NodeOrigin {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    // A method call: the library's functions read their siblings through `this`.
    parsed = ipaddr.process(address);
  } catch {
    // Not an IP (a Unix socket, or the 'unknown' fallback): one shared origin.
    return { owner: address, group: address };
  }
  if (parsed.kind() === 'ipv4') {
    const v4 = parsed.toString();
    return { owner: v4, group: v4 };
  }
  const parts = (parsed as ipaddr.IPv6).parts;
  const hex = (n: number | undefined): string => (n ?? 0).toString(16);
  const head = [parts[0], parts[1], parts[2]].map(hex).join(':');
  return {
    owner: `${head}:${hex(parts[3])}::/64`,
    group: `${head}:${hex((parts[3] ?? 0) & 0xff00)}::/56`,
  };
}

/** `@CallerOrigin()`: the {@link NodeOrigin} of the request's client address. */
export const CallerOrigin = createParamDecorator((_: unknown, ctx: ExecutionContext): NodeOrigin =>
  nodeOrigin(clientAddress(ctx.switchToHttp().getRequest<Request>())),
);
