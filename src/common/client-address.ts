import { isIPv6 } from 'node:net';
import type { Request } from 'express';

/**
 * The caller's address for rate limiting: Express resolves `req.ip` through the configured
 * `trust proxy` hops, so behind Traefik each user gets their own bucket, and without trusted proxies
 * a forged X-Forwarded-For changes nothing.
 */
export function clientAddress(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}

/**
 * The unit one caller is held to in per-address bounds: an IPv4 address (IPv4-mapped IPv6 too),
 * or an IPv6 /64, because one host is routinely given a whole /64 and could otherwise spread
 * itself over as many "addresses" as it likes.
 */
export function addressUnit(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) {
    return mapped[1] as string;
  }
  if (!isIPv6(address)) {
    return address;
  }
  const [head = '', tail = ''] = address.split('::', 2);
  const front = head === '' ? [] : head.split(':');
  const back = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::')
    ? [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back]
    : front;
  return `${groups
    .slice(0, 4)
    .map((g) => (Number.parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}
