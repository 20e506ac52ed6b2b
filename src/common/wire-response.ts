import {
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
