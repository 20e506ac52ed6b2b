import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Logger } from '@nestjs/common';
import type { Server } from 'node:http';
import { AppModule } from './app.module';
import { createRootLogger, PinoLoggerService } from './common/logging';
import { setupApp } from './app.setup';
import {
  ConfigError,
  isLoopbackHost,
  loadProcessConfig,
  type RelayConfig,
} from './config/relay-config';
import { DemoNode, newDemoNodeKey } from './demo/demo.node';
import { LifecycleService } from './lifecycle/lifecycle.service';
import { TokenService } from './registry/token.service';
import { RegistryService } from './registry/registry.service';
import { STATE_STORE, type StateStore } from './state/state-store';

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
      if (signal !== 'SIGINT' && config.stateStore === 'memory') {
        // Nothing else holds this process's work: let what was handed out be answered and
        // collected, until the grace deadline at most (docs/decisions.md, "Draining the memory store").
        const store = app.get<StateStore>(STATE_STORE);
        await lifecycle.linger(async () => {
          const stats = await store.stats(Date.now());
          return stats.inFlight === 0 && stats.storedResponses === 0;
        });
      }
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
  // Closing the terminal that runs `npm start` sends SIGHUP: drain as for SIGTERM.
  process.on('SIGHUP', shutdown);
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
  const nodeAuth = app.get(TokenService).open ? 'open' : 'token';
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

/**
 * What a relay reachable from other machines lets strangers do because of its configuration,
 * said once at boot (docs/operations.md, "Exposing the relay").
 */
function exposureWarnings(config: RelayConfig, nodeAuth: 'open' | 'token'): object[] {
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
