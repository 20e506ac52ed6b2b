import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { AppModule } from '../../src/app.module';
import { setupApp } from '../../src/app.setup';
import { CLOCK, type Clock } from '../../src/common/clock';
import { RelayConfig } from '../../src/config/relay-config';
import { LifecycleService } from '../../src/lifecycle/lifecycle.service';
import { SweepService } from '../../src/registry/sweep.service';
import { STATE_STORE, type StateStore } from '../../src/state/state-store';

export interface TestApp {
  app: NestExpressApplication;
  server: Server;
  baseUrl: string;
  config: RelayConfig;
  store: StateStore;
  clock: Clock;
  lifecycle: LifecycleService;
  sweep: () => Promise<void>;
  close: () => Promise<void>;
}

/**
 * Environment every test app starts from: quiet logs, no rate limits and no per-address node share
 * (every test node calls from 127.0.0.1) unless a test sets them.
 */
export const TEST_ENV: Record<string, string> = {
  TOKENPLACE_LOG_LEVEL: 'silent',
  API_RATE_LIMIT: 'off',
  API_DAILY_QUOTA: 'off',
  TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS: '1000000',
  RELAY_PORT: '0',
};

/**
 * Boots the real AppModule through the same setupApp() as main.ts, listening on an ephemeral
 * loopback port. Only configuration, the clock and (optionally) the log sink differ from production.
 */
export async function createTestApp(
  env: Record<string, string | undefined> = {},
  clock?: Clock,
  logger?: Logger,
): Promise<TestApp> {
  // A variable given as undefined is left unset (to test a default TEST_ENV overrides).
  const merged = Object.fromEntries(
    Object.entries({ ...TEST_ENV, ...env }).filter(([, v]) => v !== undefined),
  );
  const config = RelayConfig.load(merged);
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.register({ config, clock, logger }),
    {
      bodyParser: false,
      logger: false,
    },
  );
  setupApp(app, config);
  await app.listen(0, '127.0.0.1');
  const server: Server = app.getHttpServer();
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const sweeper = app.get(SweepService);
  return {
    app,
    server,
    baseUrl: `http://127.0.0.1:${port}`,
    config,
    store: app.get<StateStore>(STATE_STORE),
    clock: app.get<Clock>(CLOCK),
    lifecycle: app.get(LifecycleService),
    sweep: () => sweeper.sweepOnce(),
    close: async () => {
      server.closeAllConnections();
      await app.close();
    },
  };
}

export interface WireResult<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
  text: string;
}

/** A JSON request against a running app; returns status, parsed body and headers. */
export async function call<T = Record<string, unknown>>(
  baseUrl: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<WireResult<T>> {
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed as T, headers: res.headers, text };
}
