import { Injectable, Logger } from '@nestjs/common';

/**
 * The life of the process after boot: `draining` flips the moment SIGTERM/SIGINT arrives, and
 * `drainSignal` aborts so every long-poll answers at once. Readiness, long-polls and admission
 * read it; nothing else does.
 */
@Injectable()
export class LifecycleService {
  private readonly logger = new Logger(LifecycleService.name);
  private readonly controller = new AbortController();
  private skipWindow: (() => void) | null = null;
  private drainingSince: number | null = null;

  get draining(): boolean {
    return this.drainingSince !== null;
  }

  get drainSignal(): AbortSignal {
    return this.controller.signal;
  }

  /** Flips readiness and wakes every waiter. Idempotent. */
  startDraining(reason: string): void {
    if (this.drainingSince !== null) {
      return;
    }
    this.drainingSince = Date.now();
    this.logger.log({ msg: 'draining', reason });
    this.controller.abort();
  }

  /** Waits out the drain window; a second signal (or SIGINT) ends it early. */
  waitDrainWindow(ms: number): Promise<void> {
    if (ms <= 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.skipWindow = () => {
        this.skipWindow = null;
        done();
      };
    });
  }

  /** Ends the drain window now (second signal). */
  skipDrainWindow(): void {
    this.skipWindow?.();
  }
}
