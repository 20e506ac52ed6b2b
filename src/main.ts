import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Logger } from '@nestjs/common';
import type { Server } from 'node:http';
import { AppModule } from './app.module';
import { createRootLogger, PinoLoggerService } from './common/logging';
import { setupApp } from './app.setup';
import { ConfigError, loadProcessConfig, type RelayConfig } from './config/relay-config';
import { DemoNode, newDemoNodeKey } from './demo/demo.node';
import { LifecycleService } from './health/lifecycle.service';
import { TokenService } from './registry/token.service';
import { RegistryService } from './registry/registry.service';

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
  for (const warning of config.warnings) {
    logger.warn({ variable: warning.variable, suggestion: warning.suggestion }, warning.message);
  }
  logger.info({ context: 'Main', ...config.memory }, 'memory caps');
  for (const warning of config.memoryWarnings) {
    logger.warn({ context: 'Main', warning }, 'memory sizing');
  }
  // The demo node's key is made while the app boots, so it registers moments after the listener.
  const demoKey = config.gateway.mockNode ? newDemoNodeKey() : null;
  demoKey?.catch(() => undefined); // a failure surfaces in start(), not as an unhandled rejection
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.register({ config, logger }),
    {
      bodyParser: false,
      logger: new PinoLoggerService(logger),
    },
  );
  setupApp(app, config);
  await app.init();
  const server: Server = app.getHttpServer();
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  server.headersTimeout = KEEP_ALIVE_MS + 1000;
  // Signal handlers before the port is bound and before "relay listening" is logged: a signal
  // that arrives right after the log line (a supervisor, a test) must never meet Node's default.
  const log = new Logger('Main');
  const lifecycle = app.get(LifecycleService);
  // Not ready until the demo node has registered: a chat at the first 200 must find it.
  const demoRegistered = demoKey ? lifecycle.holdReadiness('demo compute node') : null;
  let demo: DemoNode | null = null;
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
    const demoStopped = demo?.stop() ?? Promise.resolve();
    void (async () => {
      await demoStopped;
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

  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  log.log({
    msg: 'relay listening',
    host: config.host,
    port,
    store: config.stateStore,
    legacyRoutes: config.legacyRoutesEnabled,
    publicRateLimits: config.publicLimitsLocalExempt
      ? 'off for this machine (loopback only; requests through a proxy stay limited)'
      : config.publicRateLimits.map((l) => l.text).join(', ') || 'off',
    gateway: config.gateway.enabled,
    demoNode: config.gateway.mockNode,
  });

  // The demo compute node is an HTTP client of this very listener, so it starts once it listens.
  if (demoKey !== null && !stopping) {
    const loopback = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
    const hostPart = loopback.includes(':') ? `[${loopback}]` : loopback;
    const node = new DemoNode({
      baseUrl: `http://${hostPart}:${port}`,
      token: app.get(TokenService).anyToken(),
      key: demoKey,
    });
    try {
      app.get(RegistryService).markFallback((await demoKey).publicKeyB64);
      await node.start();
      demoRegistered?.();
      demo = node;
      if (stopping) {
        await node.stop(); // a signal arrived while it was registering
      }
    } catch (error) {
      log.error({ msg: 'demo compute node failed to start', reason: (error as Error).message });
    }
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

void bootstrap();
