import { Logger } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Server } from 'node:http';
import type { RelayConfig } from '../config/relay-config';
import { LifecycleService } from '../lifecycle/lifecycle.service';
import { STATE_STORE, type StateStore } from '../state/state-store';

/**
 * SIGTERM, SIGINT and SIGHUP (closing the terminal that runs `npm start`) drain the relay: readiness
 * turns 503 and every held long-poll answers at once, the drain window lets the load balancer
 * notice, a memory store lingers until the work it handed out is answered and collected, then the
 * app closes (the demo node first, see DemoNodeService) and the process exits 0. A second signal
 * skips the window; the grace deadline closes whatever is left. Installed before the port is bound:
 * a signal right after "relay listening" must never meet Node's default.
 */
export function drainOnSignals(
  app: NestExpressApplication,
  server: Server,
  config: RelayConfig,
): void {
  const log = new Logger('Main');
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
  process.on('SIGHUP', shutdown);
}
