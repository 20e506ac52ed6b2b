import { BlockList, isIP } from 'node:net';
import { IsString, MinLength } from 'class-validator';
import { Env } from './env.decorator';
import { IntEnv, PatternEnv } from './env-kinds';

/** Where the relay listens and how it is reached (boot/listen.ts, app.setup.ts). */
export class ListenerEnv {
  @Env('RELAY_HOST', 'Bind address (the container image sets 0.0.0.0); `--host` overrides it')
  @IsString()
  @MinLength(1)
  host = '127.0.0.1';

  @IntEnv('RELAY_PORT', 'Listener port; `--port` overrides it', 0, 65535)
  port = 5010;

  @PatternEnv(
    ['TOKENPLACE_RELAY_PUBLIC_URL', 'TOKEN_PLACE_RELAY_PUBLIC_URL', 'RELAY_PUBLIC_URL'],
    'Advertised base URL, echoed in /healthz as publicUrl and publicBaseUrl',
    /^(https?:\/\/[^\s/]+[^\s]*)?$/,
    'must be an http(s) URL',
  )
  publicUrl = '';

  @PatternEnv(
    'TOKENPLACE_RELAY_TRUST_PROXY',
    'Trusted reverse proxies: a hop count, or a comma list of IPs/CIDRs or loopback/linklocal/uniquelocal; empty trusts none',
    /^(\d{1,2}|((loopback|linklocal|uniquelocal|[0-9a-fA-F.:]+(\/\d{1,3})?)\s*(,\s*|$))+)?$/,
    'must be a hop count or a comma list of IPs, CIDRs, loopback, linklocal, uniquelocal',
  )
  trustProxy = '';
}

export interface ListenerSettings {
  readonly host: string;
  readonly port: number;
  readonly publicUrl: string | null;
  readonly trustProxy: number | string[] | null;
}

export function listenerSettings(s: ListenerEnv): ListenerSettings {
  return {
    host: s.host,
    port: s.port,
    publicUrl: s.publicUrl ? s.publicUrl.replace(/\/+$/, '') : null,
    trustProxy: parseTrustProxy(s.trustProxy),
  };
}

function parseTrustProxy(value: string): number | string[] | null {
  if (value === '') {
    return null;
  }
  if (/^\d+$/.test(value)) {
    return Number(value);
  }
  return value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** True for an address that only this machine can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') {
    return true;
  }
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}
