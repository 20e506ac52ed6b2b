import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { Response } from 'express';
import type { Drainable, DrainNotifier, HeldPlace } from '../lifecycle/lifecycle.service';
import { addressUnit, clientAddress } from './client-address';
import type { WaitListener, WaitSignal } from './wait-signal';

/**
 * Tells a long-poll whether its caller is still there, and is the stop signal of its waits. It
 * watches the caller only once a request actually waits (one `close` listener and one entry in
 * the drain set), so routes answered at once pay nothing; it is its own signal, with one slot for
 * the wait in progress, because an AbortController, its signal and their listeners cost several
 * hundred bytes per held request (docs/performance-held-connections.md).
 */
export class CallerWatch implements WaitSignal, Drainable {
  listener: WaitListener | null = null;
  private stopped = false;
  private watching = false;
  /** Set while this caller holds a place in the held-wait budget. */
  private place: HeldPlace | undefined;

  constructor(private readonly res: Response) {}

  /** True once the caller has disconnected (or the answer is already sent), or the wait was stopped. */
  get gone(): boolean {
    return this.res.closed || this.stopped;
  }

  /** True once the caller left before its answer was sent, or the relay started draining. */
  get aborted(): boolean {
    return this.stopped;
  }

  /** Runs `fn` once the answer has been completely written out to the caller. */
  afterDelivered(fn: () => void): void {
    this.res.once('finish', fn);
  }

  /**
   * Stops the wait when the caller disconnects before the answer is sent, or when the relay starts
   * to drain. The drain subscription ends with the exchange, so nothing accumulates per request.
   */
  signal(drain?: DrainNotifier): WaitSignal {
    this.watch(drain);
    return this;
  }

  /**
   * Takes this caller's place among the requests held open (once; it is kept until the exchange
   * ends) and watches it as {@link signal} does. False, and nothing watched, when the relay holds
   * as many as its held-wait budget allows, or this caller's address its share (`kind`: a node's
   * poll or a client's wait; `byAddress` false: no address share applies): the caller is then
   * answered without being held. `quiet`: a refusal is not counted yet (the caller first looks
   * for work it can answer with, and tries again before it refuses).
   */
  hold(drain: DrainNotifier, kind: HeldPlace['kind'], byAddress = true, quiet = false): boolean {
    return this.watch(drain, kind, byAddress, quiet);
  }

  private watch(
    drain: DrainNotifier | undefined,
    kind?: HeldPlace['kind'],
    byAddress = true,
    quiet = false,
  ): boolean {
    if (this.watching) {
      return true;
    }
    if (this.res.closed) {
      this.watching = true;
      this.stop();
      return true;
    }
    if (kind !== undefined && drain !== undefined) {
      const unit = byAddress ? addressUnit(clientAddress(this.res.req)) : null;
      const place: HeldPlace = { kind, unit };
      if (!drain.tryHold(this, place, quiet)) {
        return false;
      }
      this.place = place;
    } else {
      drain?.hold(this);
    }
    this.watching = true;
    this.res.on('close', () => {
      drain?.release(this, this.place);
      if (!this.res.writableFinished) {
        this.stop();
      }
    });
    return true;
  }

  drained(): void {
    this.stop();
  }

  private stop(): void {
    if (this.stopped) {
      return;
    }
    this.stopped = true;
    const listener = this.listener;
    this.listener = null;
    listener?.stop();
  }
}

/** Injects a {@link CallerWatch} for the current response (long-poll routes). */
export const ClientGone = createParamDecorator(
  (_: unknown, ctx: ExecutionContext): CallerWatch =>
    new CallerWatch(ctx.switchToHttp().getResponse<Response>()),
);
