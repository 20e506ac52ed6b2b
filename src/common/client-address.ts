import type { Request } from 'express';

/**
 * The caller's address for rate limiting: Express resolves `req.ip` through the configured
 * `trust proxy` hops, so behind Traefik each user gets their own bucket, and without trusted proxies
 * a forged X-Forwarded-For changes nothing.
 */
export function clientAddress(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}
