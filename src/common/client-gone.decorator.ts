import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { Response } from 'express';
import type { DrainNotifier } from '../lifecycle/lifecycle.service';

/**
 * Tells a long-poll whether its caller is still there. The AbortSignal (and its `close`
 * listener) is only created when a request actually waits, so routes answered at once pay nothing.
 */
export class CallerWatch {
  private controller: AbortController | null = null;

  constructor(private readonly res: Response) {}

  /** True once the caller has disconnected (or the answer is already sent). */
  get gone(): boolean {
    return this.res.closed || this.controller?.signal.aborted === true;
  }

  /** Runs `fn` once the answer has been completely written out to the caller. */
  afterDelivered(fn: () => void): void {
    this.res.once('finish', fn);
  }

  /**
   * Aborts when the caller disconnects before the answer is sent, or when the relay starts to
   * drain. The drain subscription ends with the exchange, so nothing accumulates per request.
   */
  signal(drain?: DrainNotifier): AbortSignal {
    if (this.controller === null) {
      const controller = new AbortController();
      this.controller = controller;
      const abort = (): void => controller.abort();
      if (this.res.closed) {
        abort();
      } else {
        const unsubscribe = drain?.onDrain(abort);
        this.res.once('close', () => {
          unsubscribe?.();
          if (!this.res.writableFinished) {
            abort();
          }
        });
      }
    }
    return this.controller.signal;
  }
}

/** Injects a {@link CallerWatch} for the current response (long-poll routes). */
export const ClientGone = createParamDecorator(
  (_: unknown, ctx: ExecutionContext): CallerWatch =>
    new CallerWatch(ctx.switchToHttp().getResponse<Response>()),
);
