import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Logger } from '@nestjs/common';
import type { Server } from 'node:http';
import { AppModule } from './app.module';
import { setupApp } from './app.setup';
import { exposureWarnings, listenOrExit } from './boot/listen';
import { drainOnSignals } from './boot/shutdown';
import { createRootLogger, PinoLoggerService } from './common/logging';
import { ConfigError, loadProcessConfig, type RelayConfig } from './config/relay-config';
import { TokenService } from './registry/token.service';

/** Boots the relay: configuration, the app, signal handling, the listener, the boot line. */
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
  for (const warning of config.warnings) {
    logger.warn({ variable: warning.variable, suggestion: warning.suggestion }, warning.message);
  }
  logger.info({ context: 'Main', ...config.memory }, 'memory caps');
  for (const warning of config.memoryWarnings) {
    logger.warn({ context: 'Main', warning }, 'memory sizing');
  }
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.register({ config, logger }),
    { bodyParser: false, logger: new PinoLoggerService(logger) },
  );
  setupApp(app, config);
  await app.init();
  const server: Server = app.getHttpServer();
  drainOnSignals(app, server, config);
  await listenOrExit(server, config, logger);

  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const nodeAuth = app.get(TokenService).open ? 'open' : 'token';
  const log = new Logger('Main');
  log.log({
    msg: 'relay listening',
    host: config.host,
    port,
    nodeAuth,
    store: config.stateStore,
    legacyRoutes: config.legacyRoutesEnabled,
    publicRateLimits: config.publicLimitsLocalExempt
      ? 'off for this machine (loopback only; requests through a proxy stay limited)'
      : config.publicRateLimits.map((l) => l.text).join(', ') || 'off',
    gateway: config.gateway.enabled,
    demoNode: config.gateway.mockNode,
  });
  for (const warning of exposureWarnings(config, nodeAuth)) {
    log.warn(warning);
  }
}

void bootstrap();
