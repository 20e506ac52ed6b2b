import {
  createParamDecorator,
  Injectable,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import type { Response } from 'express';
import { map, type Observable } from 'rxjs';

/** A successful answer whose status or headers depend on the outcome (202 pending, no-store ...). */
export class WireResponse {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {}
}

/** Applies a {@link WireResponse}'s status and headers; plain return values pass through. */
@Injectable()
export class WireResponseInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const res = context.switchToHttp().getResponse<Response>();
    return next.handle().pipe(
      map((value: unknown) => {
        if (value instanceof WireResponse) {
          res.status(value.status);
          for (const [name, v] of Object.entries(value.headers)) {
            res.setHeader(name, v);
          }
          return value.body;
        }
        return value;
      }),
    );
  }
}

/** Applies a {@link WireResponse} to the current response and returns its body for Nest to send. */
export class WireReply {
  constructor(private readonly res: Response) {}

  /** A web `Response` (a stream) passes through: Nest writes its status, headers and body. */
  send(value: WireResponse | globalThis.Response): unknown {
    if (!(value instanceof WireResponse)) {
      return value;
    }
    this.res.status(value.status);
    for (const [name, v] of Object.entries(value.headers)) {
      this.res.setHeader(name, v);
    }
    return value.body;
  }
}

/**
 * `@Reply()`: the hot-path alternative to {@link WireResponseInterceptor} (an interceptor wraps
 * every call in RxJS; on `/responses/retrieve`, polled by every waiting browser, that was measured
 * at ~10% of the route's throughput). Nest still serialises the body.
 */
export const Reply = createParamDecorator(
  (_: unknown, ctx: ExecutionContext): WireReply =>
    new WireReply(ctx.switchToHttp().getResponse<Response>()),
);
