import type { Request } from 'express';
import * as ipaddr from 'ipaddr.js';

/**
 * The caller's address for rate limiting: Express resolves `req.ip` through the configured
 * `trust proxy` hops, so behind Traefik each user gets their own bucket, and without trusted proxies
 * a forged X-Forwarded-For changes nothing.
 */
export function clientAddress(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}

/** An IP address as ipaddr.js reads it (IPv4-mapped IPv6 as IPv4), or null for anything else. */
function parse(address: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  try {
    // A method call: the library's functions read their siblings through `this`.
    return ipaddr.process(address);
  } catch {
    return null; // a Unix socket, or the 'unknown' fallback
  }
}

/** The first `bits` (a multiple of 8) of an IPv6 address, written as a prefix. */
function prefix(address: ipaddr.IPv6, bits: 56 | 64): string {
  const parts = address.parts.slice(0, 4);
  if (bits === 56) {
    parts[3] = (parts[3] ?? 0) & 0xff00;
  }
  return `${parts.map((p) => p.toString(16)).join(':')}::/${bits}`;
}

/**
 * The unit one caller is held to in per-address bounds: an IPv4 address (IPv4-mapped IPv6 too),
 * or an IPv6 /64, because one host is routinely given a whole /64 (and picks new addresses inside
 * it) and could otherwise spread itself over as many "addresses" as it likes.
 */
export function addressUnit(address: string): string {
  const parsed = parse(address);
  if (parsed === null) {
    return address;
  }
  return parsed.kind() === 'ipv4' ? parsed.toString() : prefix(parsed as ipaddr.IPv6, 64);
}

/**
 * A wider unit for what one household or VM may hold in total: an IPv4 address, or an IPv6 /56
 * (the smallest block home and cloud networks commonly delegate).
 */
export function addressGroup(address: string): string {
  const parsed = parse(address);
  if (parsed === null) {
    return address;
  }
  return parsed.kind() === 'ipv4' ? parsed.toString() : prefix(parsed as ipaddr.IPv6, 56);
}
