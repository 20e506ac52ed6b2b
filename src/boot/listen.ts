import type { Logger } from 'pino';
import type { Server } from 'node:http';
import { isLoopbackHost, type RelayConfig } from '../config/relay-config';

/** Listens; on a listen error logs why in words an operator can act on, and exits (98 when in use). */
export async function listenOrExit(
  server: Server,
  config: RelayConfig,
  logger: Logger,
): Promise<void> {
  try {
    await listen(server, config.port, config.host);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === 'EADDRINUSE'
        ? `port ${config.port} on ${config.host} is already in use (another relay running?); stop it or choose another port with RELAY_PORT or --port`
        : code === 'EADDRNOTAVAIL'
          ? `${config.host} is not an address of this machine; set RELAY_HOST or --host`
          : code === 'EACCES'
            ? `no permission to listen on port ${config.port}; use a port above 1023`
            : `cannot listen on ${config.host}:${config.port}: ${(error as Error).message}`;
    logger.fatal({ code, host: config.host, port: config.port }, reason);
    logger.flush();
    process.exit(code === 'EADDRINUSE' ? 98 : 1);
  }
}

/** Listens, or rejects with the listen error (no Nest log line, no uncaught exception). */
function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (error: Error): void => reject(error);
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      resolve();
    });
  });
}

/**
 * What a relay reachable from other machines lets strangers do because of its configuration,
 * said once at boot (docs/operations.md, "Exposing the relay").
 */
export function exposureWarnings(config: RelayConfig, nodeAuth: 'open' | 'token'): object[] {
  if (isLoopbackHost(config.host)) {
    return [];
  }
  const warnings: object[] = [];
  if (nodeAuth === 'open') {
    warnings.push({
      msg: 'node registration is open on a non-loopback address: anyone who can reach it can register compute nodes, be offered to clients by /servers/next and the gateway, and receive (and answer) the requests routed to them; set TOKENPLACE_RELAY_SERVER_TOKEN or TOKENPLACE_RELAY_SERVER_TOKENS_FILE to require a token',
      nodeAuth,
      host: config.host,
    });
  }
  if (config.publicRateLimits.length === 0) {
    warnings.push({
      msg: 'public rate limits are off (API_RATE_LIMIT and API_DAILY_QUOTA) on a non-loopback address: any caller may submit, cancel and list models without limit',
      host: config.host,
    });
  }
  return warnings;
}
