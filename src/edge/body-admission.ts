import type { NextFunction, Request, Response } from 'express';
import type { BodyLimits } from '../config/relay-config';
import { addressUnit, clientAddress } from '../common/client-address';
import type { ErrorStyle } from './error-style';
import { preRoutingStyle } from './http-middleware';
import { Errors, RelayError } from '../common/relay-error';
import { sendRelayError } from './relay-exception.filter';

type Middleware = (req: Request, res: Response, next: NextFunction) => void;

/** Why a body was not admitted. */
export type BodyRefusal = 'total' | 'address';

/**
 * The bytes of request bodies being read right now, in total and per client address. A body is
 * charged before its first byte is read and released when it has been read (or given up), so the
 * relay never holds more than the bounds whatever the callers send, or fail to send.
 */
export class BodyBudget {
  private total = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(private readonly limits: BodyLimits) {}

  /** Charges `bytes` to `unit`, or says which bound it would cross. */
  reserve(unit: string, bytes: number): BodyRefusal | null {
    const held = this.byAddress.get(unit) ?? 0;
    if (held + bytes > this.limits.maxInFlightBytesPerAddress) {
      return 'address';
    }
    if (this.total + bytes > this.limits.maxInFlightBytes) {
      return 'total';
    }
    this.byAddress.set(unit, held + bytes);
    this.total += bytes;
    return null;
  }

  release(unit: string, bytes: number): void {
    const held = (this.byAddress.get(unit) ?? 0) - bytes;
    if (held > 0) {
      this.byAddress.set(unit, held);
    } else {
      this.byAddress.delete(unit);
    }
    this.total = Math.max(0, this.total - bytes);
  }

  /** Bytes being read over all callers. */
  get inFlightBytes(): number {
    return this.total;
  }

  /** Addresses with a body being read (each holds an entry; bounded by the total / min charge). */
  get addresses(): number {
    return this.byAddress.size;
  }
}

const JSON_TYPES = ['application/json', 'application/*+json'];

/** The declared length, or null when the body's size is unknown before it is read. */
function declaredLength(req: Request): number | null {
  const encoding = req.headers['content-encoding'];
  if (req.headers['transfer-encoding'] !== undefined) {
    return null;
  }
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
    return null; // a compressed body is limited (and so charged) by its inflated size
  }
  const length = Number(req.headers['content-length'] ?? 0);
  return Number.isSafeInteger(length) && length >= 0 ? length : null;
}

function hasBody(req: Request): boolean {
  return (
    req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0
  );
}

/**
 * Wraps a body parser so that a body is read only when it fits the budget, and only for as long
 * as its deadline: what does not fit gets 503 + Retry-After (or 413 for a declared size over the
 * limit) before a byte of it is buffered; a body still arriving at its deadline gets 408 and its
 * connection is closed, which frees everything it held.
 */
export function readBodyWithin(
  budget: BodyBudget,
  limits: BodyLimits,
  parser: Middleware,
  limit: number,
  refusedTooLarge: (req: Request) => RelayError = () => Errors.bodyTooLarge(limit),
): Middleware {
  return (req, res, next) => {
    // Only bodies the JSON parser would read are charged; others are never buffered (Node
    // discards what nobody reads once the answer is sent).
    const parsed = (req as Request & { _body?: boolean })._body === true;
    if (parsed || !hasBody(req) || !req.is(JSON_TYPES)) {
      parser(req, res, next);
      return;
    }
    const style = preRoutingStyle(req.path);
    const declared = declaredLength(req);
    if (declared !== null && declared > limit) {
      refuse(res, refusedTooLarge(req), style);
      return;
    }
    const bytes = Math.max(limits.minChargeBytes, declared ?? limit);
    const unit = addressUnit(clientAddress(req));
    const refusal = budget.reserve(unit, bytes);
    if (refusal !== null) {
      refuse(res, bodiesBusy(refusal), style);
      return;
    }
    let settled = false;
    let timedOut = false;
    const settle = (): void => {
      if (!settled) {
        settled = true;
        clearTimeout(deadline);
        req.off('close', settle);
        budget.release(unit, bytes);
      }
    };
    const deadline = setTimeout(
      () => {
        timedOut = true;
        settle();
        if (!res.headersSent) {
          res.setHeader('Connection', 'close');
          sendRelayError(res, Errors.bodyTimeout(), style);
        }
        // Closing the connection ends the read and frees what it buffered.
        res.once('finish', () => req.socket.destroy());
      },
      limits.timeoutMs + Math.ceil((bytes / limits.minBytesPerSecond) * 1000),
    );
    req.once('close', settle);
    parser(req, res, (err?: unknown) => {
      settle();
      if (!timedOut) {
        next(err);
      }
    });
  };
}

/**
 * Answers before the body is read and closes the connection after the answer: reading the unread
 * body only to discard it would cost the relay the very bytes it refused.
 */
function refuse(res: Response, error: RelayError, style: ErrorStyle): void {
  res.setHeader('Connection', 'close');
  sendRelayError(res, error, style);
}

function bodiesBusy(refusal: BodyRefusal): RelayError {
  return refusal === 'address'
    ? Errors.capacity('Too many request bodies being read from this address; retry shortly', 1, 503)
    : Errors.capacity('Relay is reading too many request bodies; retry shortly', 1, 503);
}
