import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Server } from 'node:http';
import { BodyBudget, readJsonBodies } from './edge/body-admission';
import type { Logger } from 'pino';
import {
  bodyErrors,
  inSequence,
  noSniff,
  observeRequests,
  ownLimitCheck,
  publicCors,
  requestId,
  requireJson,
  routeFacts,
  uiSecurityHeaders,
} from './edge/http-middleware';
import { PinoLoggerService, RELAY_LOGGER } from './common/logging';
import { RouteTable } from './edge/route-table';
import type { RelayConfig } from './config/relay-config';
import { RelayMetrics } from './metrics/relay-metrics';

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
  // What each route declares (CORS, error style, body policy, metrics label, log level) comes
  // from its controller through one table (docs/decisions.md, "Route facts live on the routes").
  const table = app.get(RouteTable);
  // One Express layer for the per-request front door (each layer costs a router hop per request).
  // Bodies are read only within the in-flight budget and their deadline (docs/decisions.md,
  // "Bodies in flight"); the JSON parsers never see a body that does not fit.
  const bodies = new BodyBudget(config.bodies);
  app.use(
    inSequence(
      requestId,
      noSniff,
      routeFacts(table),
      observeRequests(app.get(RelayMetrics), logger, table),
      publicCors,
      uiSecurityHeaders(),
      requireJson,
      ownLimitCheck,
      readJsonBodies(bodies, config.bodies, config.maxBodyBytes),
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
