import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Logger } from '@nestjs/common';
import type { Server } from 'node:http';
import { AppModule } from './app.module';
import { createRootLogger, PinoLoggerService } from './common/logging';
import { setupApp } from './app.setup';
import { ConfigError, loadProcessConfig, type RelayConfig } from './config/relay-config';
import { LifecycleService } from './health/lifecycle.service';

/** Keep-alive longer than typical load-balancer idle timeouts, so they close first. */
const KEEP_ALIVE_MS = 65_000;

async function bootstrap(): Promise<void> {
  let config: RelayConfig;
  try {
    config = loadProcessConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(
        `${JSON.stringify({ level: 'fatal', msg: error.message, problems: error.problems })}\n`,
      );
      process.exit(78);
    }
    throw error;
  }

  const logger = createRootLogger(config);
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.register({ config, logger }),
    {
      bodyParser: false,
      logger: new PinoLoggerService(logger),
    },
  );
  setupApp(app, config);
  await app.listen(config.port, config.host);
  const server: Server = app.getHttpServer();
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  server.headersTimeout = KEEP_ALIVE_MS + 1000;

  const log = new Logger('Main');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  log.log({
    msg: 'relay listening',
    host: config.host,
    port,
    store: config.stateStore,
    legacyRoutes: config.legacyRoutesEnabled,
  });
  log.log({ msg: 'memory caps', ...config.memory });
  for (const warning of config.warnings) {
    log.warn({ msg: 'memory sizing', warning });
  }

  const lifecycle = app.get(LifecycleService);
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.log({ msg: 'second signal: skipping the drain window', signal });
      lifecycle.skipDrainWindow();
      return;
    }
    stopping = true;
    const deadline = setTimeout(() => {
      log.warn({
        msg: 'grace period over: closing remaining connections',
        graceMs: config.shutdownGraceMs,
      });
      server.closeAllConnections();
      setTimeout(() => process.exit(0), 200).unref();
    }, config.shutdownGraceMs);
    deadline.unref();
    lifecycle.startDraining(signal);
    void (async () => {
      await lifecycle.waitDrainWindow(signal === 'SIGINT' ? 0 : config.drainMs);
      server.closeIdleConnections();
      await app.close();
      log.log({ msg: 'relay stopped', signal });
      process.exit(0);
    })().catch((error: unknown) => {
      log.error({ msg: 'shutdown failed', reason: (error as Error).message });
      process.exit(1);
    });
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

void bootstrap();
