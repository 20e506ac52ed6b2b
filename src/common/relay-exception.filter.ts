import {
  ArgumentsHost,
  Catch,
  ExceptionFilter,
  HttpException,
  Logger,
  type ExecutionContext,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import { StoreUnavailableError } from '../state/store-unavailable.error';
import { ERROR_STYLE, type ErrorStyle } from './error-style.decorator';
import { Errors, RelayError } from './relay-error';

/** Writes a {@link RelayError} in the route's style. */
export function sendRelayError(res: Response, error: RelayError, style: ErrorStyle): void {
  for (const [name, value] of Object.entries(error.headers)) {
    res.setHeader(name, value);
  }
  const asText = style === 'text' && (error.status === 400 || error.status === 404);
  const body = asText
    ? { error: error.message }
    : { error: { message: error.message, code: error.code, ...error.extra } };
  res.status(error.status).json(body);
}

/** Maps anything thrown to the relay's wire errors. */
export function toRelayError(exception: unknown): RelayError | null {
  if (exception instanceof RelayError) {
    return exception;
  }
  if (exception instanceof StoreUnavailableError) {
    return Errors.storeUnavailable();
  }
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    if (status === 404) {
      return Errors.notFoundRoute();
    }
    if (status === 405) {
      return Errors.methodNotAllowed();
    }
    if (status === 413) {
      return new RelayError(413, 'Request body too large');
    }
    return new RelayError(status, exception.message);
  }
  return null;
}

/** The one error path: domain errors, store outages and framework exceptions become wire errors. */
@Catch()
export class RelayExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('RelayExceptionFilter');

  constructor(private readonly reflector: Reflector) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const res = http.getResponse<Response>();
    const req = http.getRequest<Request>();
    if (res.headersSent) {
      return;
    }
    const ctx = host as ExecutionContext;
    const handler = typeof ctx.getHandler === 'function' ? ctx.getHandler() : undefined;
    const style =
      (handler &&
        this.reflector.getAllAndOverride<ErrorStyle>(ERROR_STYLE, [handler, ctx.getClass()])) ||
      'object';
    let error = toRelayError(exception);
    if (error === null) {
      this.logger.error({
        msg: 'unhandled error',
        method: req.method,
        route: (req.route as { path?: string } | undefined)?.path ?? 'unmatched',
        err:
          exception instanceof Error
            ? { name: exception.name, message: exception.message, stack: exception.stack }
            : String(exception),
      });
      error = new RelayError(500, 'Internal relay error', 500);
    }
    if (error.status === 503 && exception instanceof StoreUnavailableError) {
      this.logger.warn({
        msg: 'state store unavailable',
        method: req.method,
        reason: exception.message,
      });
    }
    sendRelayError(res, error, style);
  }
}
