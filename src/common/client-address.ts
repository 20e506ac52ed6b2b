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

/** An address's unit and group, as {@link addressUnit} and {@link addressGroup} give them. */
interface Units {
  unit: string;
  group: string;
}

/**
 * Most addresses whose units are remembered. A request asks for its address's unit or group two
 * to four times (rate limits, held places, the registry), each a parse; a busy relay sees few
 * addresses many times. A stranger cycling through addresses only empties the memo: it is cleared
 * when full, so it never holds more than this.
 */
export const UNITS_MEMO_MAX = 4096;
const memo = new Map<string, Units>();

function unitsOf(address: string): Units {
  let units = memo.get(address);
  if (units === undefined) {
    const parsed = parse(address);
    if (parsed === null) {
      units = { unit: address, group: address };
    } else if (parsed.kind() === 'ipv4') {
      const v4 = parsed.toString();
      units = { unit: v4, group: v4 };
    } else {
      units = {
        unit: prefix(parsed as ipaddr.IPv6, 64),
        group: prefix(parsed as ipaddr.IPv6, 56),
      };
    }
    if (memo.size >= UNITS_MEMO_MAX) {
      memo.clear();
    }
    memo.set(address, units);
  }
  return units;
}

/** How many addresses the memo holds now (tests: it stays within {@link UNITS_MEMO_MAX}). */
export function unitsMemoSize(): number {
  return memo.size;
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
  return unitsOf(address).unit;
}

/**
 * A wider unit for what one household or VM may hold in total: an IPv4 address, or an IPv6 /56
 * (the smallest block home and cloud networks commonly delegate).
 */
export function addressGroup(address: string): string {
  return unitsOf(address).group;
}
