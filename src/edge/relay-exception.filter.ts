import {
  ArgumentsHost,
  Catch,
  ExceptionFilter,
  HttpException,
  Injectable,
  Logger,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Request, Response } from 'express';
import { StoreUnavailableError } from '../state/store-unavailable.error';
import type { ErrorStyle } from './error-style';
import { Errors, OpenAiError, RelayError } from '../common/relay-error';

/** `type` of an OpenAI error that does not name one, by status (gateway.md §2.1 vocabulary). */
function openAiType(status: number): string {
  if (status === 401 || status === 403) {
    return 'authentication_error';
  }
  if (status === 429) {
    return 'rate_limit_error';
  }
  if (status === 503) {
    return 'service_unavailable_error';
  }
  if (status === 504) {
    return 'timeout_error';
  }
  return status < 500 ? 'invalid_request_error' : 'server_error';
}

/** `{"error":{"message","type"[,"param"][,"code"]}}`; numeric codes are not OpenAI codes. */
export function openAiBody(error: RelayError): { error: Record<string, unknown> } {
  const extraType = error.extra.type;
  const type =
    error instanceof OpenAiError
      ? error.type
      : typeof extraType === 'string'
        ? extraType
        : openAiType(error.status);
  const body: Record<string, unknown> = { message: error.message, type };
  const param = error instanceof OpenAiError ? error.param : error.extra.param;
  if (param !== undefined) {
    body.param = param;
  }
  if (typeof error.code === 'string') {
    body.code = error.code;
  }
  return { error: body };
}

/** Longest error message the relay writes. */
const MAX_MESSAGE_CHARS = 1024;

/** Writes a {@link RelayError} in the route's style. */
export function sendRelayError(res: Response, error: RelayError, style: ErrorStyle): void {
  for (const [name, value] of Object.entries(error.headers)) {
    res.setHeader(name, value);
  }
  if (error.message.length > MAX_MESSAGE_CHARS) {
    // A backstop: messages that repeat input cut it themselves (echo()); none may grow unbounded.
    error.message = `${error.message.slice(0, MAX_MESSAGE_CHARS)}...`;
  }
  const asText = style === 'text' && (error.status === 400 || error.status === 404);
  const body =
    style === 'openai'
      ? openAiBody(error)
      : asText
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

/**
 * The one error path: domain errors, store outages and framework exceptions become wire errors in
 * the `{"error":{"message","code",...}}` shape. Routes that speak the legacy text shape bind
 * {@link LegacyTextExceptionFilter} instead (route metadata, see `@TextErrors()`).
 */
@Catch()
@Injectable()
export class RelayExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('RelayExceptionFilter');
  protected readonly style: ErrorStyle = 'object';

  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const res = http.getResponse<Response>();
    const req = http.getRequest<Request>();
    if (res.headersSent) {
      return;
    }
    const style = this.style;
    let error = toRelayError(exception);
    if (error?.status === 404 && exception instanceof HttpException) {
      const allowed = this.allowedMethods(req.path);
      if (allowed.length > 0 && !allowed.includes(req.method)) {
        res.setHeader('Allow', allowed.join(', '));
        error = Errors.methodNotAllowed();
      }
    }
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

  /** Methods routed for `path`: a known path with the wrong method is 405, not 404. */
  private allowedMethods(path: string): string[] {
    const instance = this.adapterHost.httpAdapter?.getInstance<{
      router?: { stack?: Array<{ route?: { path?: unknown; methods?: Record<string, boolean> } }> };
    }>();
    const methods = new Set<string>();
    for (const layer of instance?.router?.stack ?? []) {
      if (layer.route?.path === path) {
        for (const [method, on] of Object.entries(layer.route.methods ?? {})) {
          if (on) {
            methods.add(method.toUpperCase());
          }
        }
      }
    }
    return [...methods].sort();
  }
}

/** The legacy `{"error":"<message>"}` shape for 400/404 (spec §3.5–3.8, §3.10). */
@Catch()
@Injectable()
export class LegacyTextExceptionFilter extends RelayExceptionFilter {
  protected override readonly style: ErrorStyle = 'text';
}

/** The OpenAI envelope of the gateway routes (gateway.md §2.1), bound by `@OpenAiErrors()`. */
@Catch()
@Injectable()
export class OpenAiExceptionFilter extends RelayExceptionFilter {
  protected override readonly style: ErrorStyle = 'openai';
}
