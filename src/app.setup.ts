import type { NestExpressApplication } from '@nestjs/platform-express';
import { json } from 'express';
import type { Server } from 'node:http';
import { BodyBudget, readBodyWithin } from './edge/body-admission';
import type { Logger } from 'pino';
import {
  bodyErrors,
  inSequence,
  noSniff,
  observeRequests,
  progressSizeCheck,
  publicCors,
  requestId,
  requireJson,
  uiSecurityHeaders,
} from './edge/http-middleware';
import { PinoLoggerService, RELAY_LOGGER } from './common/logging';
import { Errors } from './common/relay-error';
import type { RelayConfig } from './config/relay-config';
import { RelayMetrics } from './metrics/relay-metrics';

const JSON_TYPES = ['application/json', 'application/*+json'];
/** Progress envelopes are capped at 16 KiB (spec §4.4.10). */
const PROGRESS_LIMIT = 16384;
/** Keep-alive longer than typical load-balancer idle timeouts, so they close first. */
const KEEP_ALIVE_MS = 65_000;

/**
 * Everything that can only be set on the app instance, in one place that main.ts and the e2e
 * helper both call, so tests run the same app as production.
 */
export function setupApp(app: NestExpressApplication, config: RelayConfig): void {
  const logger = app.get<Logger>(RELAY_LOGGER);
  app.useLogger(new PinoLoggerService(logger));
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', config.trustProxy ?? false);
  // One Express layer for the per-request front door (each layer costs a router hop per request).
  app.use(
    inSequence(
      requestId,
      noSniff,
      observeRequests(app.get(RelayMetrics), logger),
      publicCors,
      uiSecurityHeaders(),
      requireJson,
    ),
  );
  // Bodies are read only within the in-flight budget and their deadline (docs/decisions.md,
  // "Bodies in flight"); the JSON parsers below never see a body that does not fit.
  const bodies = new BodyBudget(config.bodies);
  app.use(
    '/api/v1/relay/progress',
    progressSizeCheck,
    readBodyWithin(
      bodies,
      config.bodies,
      json({ limit: PROGRESS_LIMIT, strict: false, type: JSON_TYPES }),
      PROGRESS_LIMIT,
      () => Errors.progressTooLarge(),
    ),
  );
  app.use(
    readBodyWithin(
      bodies,
      config.bodies,
      json({ limit: config.maxBodyBytes, strict: false, type: JSON_TYPES }),
      config.maxBodyBytes,
    ),
  );
  app.use(bodyErrors);
  setServerTimeouts(app.getHttpServer(), config);
}

/**
 * Node's own connection deadlines. Headers must arrive within `headersTimeout`; the whole request
 * within `requestTimeout`, a backstop behind the body deadline of {@link readBodyWithin} (which
 * also covers bodies nobody reads, such as one sent with a refused request).
 */
export function setServerTimeouts(server: Server, config: RelayConfig): void {
  const b = config.bodies;
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  server.headersTimeout = KEEP_ALIVE_MS + 1000;
  const slowestBody = b.timeoutMs + Math.ceil((b.maxBodyBytes / b.minBytesPerSecond) * 1000);
  server.requestTimeout = server.headersTimeout + slowestBody;
}
