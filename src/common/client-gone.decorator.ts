import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { Response } from 'express';

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
   * Aborts when the caller disconnects before the answer is sent, or when `also` aborts (the
   * relay starting to drain). The listener on `also` is removed when the exchange ends, so a
   * long-lived signal never accumulates listeners (cheaper than `AbortSignal.any`, which keeps
   * weak references alive per call).
   */
  signal(also?: AbortSignal): AbortSignal {
    if (this.controller === null) {
      const controller = new AbortController();
      this.controller = controller;
      const abort = (): void => controller.abort();
      if (this.res.closed || also?.aborted === true) {
        abort();
      } else {
        also?.addEventListener('abort', abort, { once: true });
        this.res.once('close', () => {
          also?.removeEventListener('abort', abort);
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
