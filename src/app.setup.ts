import type { NestExpressApplication } from '@nestjs/platform-express';
import { json } from 'express';
import type { Logger } from 'pino';
import {
  bodyErrors,
  inSequence,
  observeRequests,
  progressSizeCheck,
  publicCors,
  requestId,
  requireJson,
  uiSecurityHeaders,
} from './common/http-middleware';
import { PinoLoggerService, RELAY_LOGGER } from './common/logging';
import type { RelayConfig } from './config/relay-config';
import { RelayMetrics } from './metrics/relay-metrics';

const JSON_TYPES = ['application/json', 'application/*+json'];
/** Progress envelopes are capped at 16 KiB (spec §4.4.10). */
const PROGRESS_LIMIT = 16384;

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
      observeRequests(app.get(RelayMetrics), logger),
      publicCors,
      uiSecurityHeaders(),
      requireJson,
    ),
  );
  app.use(
    '/api/v1/relay/progress',
    progressSizeCheck,
    json({ limit: PROGRESS_LIMIT, strict: false, type: JSON_TYPES }),
  );
  app.use(json({ limit: config.maxBodyBytes, strict: false, type: JSON_TYPES }));
  app.use(bodyErrors);
}
