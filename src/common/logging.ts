import type { LoggerService } from '@nestjs/common';
import pino, { type Logger } from 'pino';
import type { RelayConfig } from '../config/relay-config';

/** Injection token of the process's root pino logger. */
export const RELAY_LOGGER = Symbol('RELAY_LOGGER');

const destinations = new Set<ReturnType<typeof pino.destination>>();

function flushAll(): void {
  for (const destination of destinations) {
    try {
      destination.flushSync();
    } catch {
      // nothing buffered, or stdout already closed
    }
  }
}

/**
 * JSON lines on stdout through pino, written asynchronously (lines queued while a write is in
 * flight go out together) and flushed synchronously when the process exits, so no line is lost.
 */
export function createRootLogger(config: RelayConfig): Logger {
  const destination = pino.destination({ dest: 1, sync: false });
  if (destinations.size === 0) {
    process.once('exit', flushAll);
  }
  destinations.add(destination);
  return pino(
    {
      level: config.logLevel,
      base: { service: 'tokenplace-relay' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label: string) => ({ level: label }) },
    },
    destination,
  );
}

/**
 * Nest's boot lines: useful when debugging, noise otherwise. "Nest application successfully
 * started" comes before the port is bound, so it must not read as success: "relay listening" does.
 */
const BOOT_CHATTER = new Set([
  'InstanceLoader',
  'RoutesResolver',
  'RouterExplorer',
  'NestFactory',
  'NestApplication',
]);

/** Nest's LoggerService on top of pino: framework and service logs share the JSON format. */
export class PinoLoggerService implements LoggerService {
  constructor(private readonly logger: Logger) {}

  /** Nest's levels, each written at its pino level. */
  readonly log = this.at('info');
  readonly error = this.at('error');
  readonly warn = this.at('warn');
  readonly debug = this.at('debug');
  readonly verbose = this.at('trace');
  readonly fatal = this.at('fatal');

  private at(level: pino.Level): (message: unknown, ...rest: unknown[]) => void {
    return (message, ...rest) => this.write(level, message, rest);
  }

  private write(requested: pino.Level, message: unknown, rest: unknown[]): void {
    // Nest passes the context last; an error's stack comes before it.
    const last = rest[rest.length - 1];
    const context = typeof last === 'string' ? last : undefined;
    const level =
      requested === 'info' && context && BOOT_CHATTER.has(context) ? 'debug' : requested;
    if (!this.logger.isLevelEnabled(level)) {
      return;
    }
    const fields: Record<string, unknown> = context ? { context } : {};
    if (typeof message === 'object' && message !== null && !(message instanceof Error)) {
      this.logger[level]({ ...fields, ...(message as Record<string, unknown>) });
    } else {
      this.logger[level](fields, message instanceof Error ? message.message : String(message));
    }
  }
}
