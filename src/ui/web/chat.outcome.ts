import type { Padding, TabIdentity } from './e2ee.crypto';
import type { ContextTier, Expected, Progress, Usage } from './envelope.protocol';
import type { CancelInput, HttpResult } from './relay.api';

/** How a chat turn ends, and the words the page shows for each failure. */
export const FAILURES = [
  'no_nodes',
  'no_matching_node',
  'no_capacity',
  'expired',
  'timeout',
  'cancelled',
  'decrypt_failed',
  'identity_mismatch',
  'node_error',
  'nodes_failed',
  'bad_node_key',
  'rate_limited',
  'relay_draining',
  'relay_unreachable',
  'relay_error',
] as const;
export type FailureCode = (typeof FAILURES)[number];

export type ChatOutcome =
  | {
      status: 'answered';
      content: string;
      finishReason: string | null;
      usage: Usage | null;
      padding: Padding;
      nodeKey: string;
      requestId: string;
      attempts: number;
    }
  | { status: 'stopped'; confirmed: boolean }
  | { status: 'failed'; code: FailureCode; message: string };

export function failureMessage(code: FailureCode, detail = ''): string {
  switch (code) {
    case 'no_nodes':
      return 'No compute nodes are connected to this relay right now. Try again when one is online.';
    case 'no_matching_node':
      return `Compute nodes are online, but none serves this model with a large enough context${detail ? ` (${detail})` : ''}. Pick another model or start a new conversation.`;
    case 'no_capacity':
      return 'Every compute node that could answer is busy. Try again in a moment.';
    case 'expired':
      return 'The request expired before a compute node answered.';
    case 'timeout':
      return 'No answer arrived in time, so the request was cancelled.';
    case 'cancelled':
      return 'The request was cancelled before an answer arrived.';
    case 'decrypt_failed':
      return 'An answer arrived but could not be decrypted in this tab, so it was discarded.';
    case 'identity_mismatch':
      return 'An answer arrived that was not addressed to this request, so it was discarded.';
    case 'node_error':
      return `The compute node could not answer${detail ? `: ${detail}` : '.'}`;
    case 'nodes_failed':
      return `The compute nodes went away before answering${detail ? ` (${detail})` : ''}. Try again.`;
    case 'bad_node_key':
      return 'The compute node the relay offered has a key this page cannot encrypt to (not an RSA public key), so nothing was sent.';
    case 'rate_limited':
      return `The relay is limiting requests from your address${detail ? `; try again in ${detail} s` : ''}.`;
    case 'relay_draining':
      return 'The relay is restarting. Try again in a moment.';
    case 'relay_unreachable':
      return 'The relay cannot be reached. Check your connection and try again.';
    case 'relay_error':
      return `The relay refused the request${detail ? ` (${detail})` : ''}.`;
    default: {
      const never: never = code;
      return never;
    }
  }
}

export function failed(code: FailureCode, detail?: string): ChatOutcome {
  return { status: 'failed', code, message: failureMessage(code, detail) };
}

/** What a request needs to be cancelled (also from a `pagehide` handler). */
export type ActiveRequest = Omit<CancelInput, 'reason'> & { nodeKey: string };

export type Stage =
  'selecting' | 'encrypting' | 'submitting' | 'waiting' | 'decrypting' | 'cancelling';

/** Where a request waits, as the relay's 202 says (`queue_position`, `estimated_wait_seconds`). */
export interface QueueInfo {
  /** Requests ahead of it on its node; 0 once the node has claimed it. */
  position: number;
  /** The relay's estimate from the node's recent service times, when it has one. */
  estimateSeconds: number | null;
}

export interface ChatEvents {
  onStage?(stage: Stage, detail: { attempt: number; tier: ContextTier }): void;
  onProgress?(progress: Progress): void;
  /** A 202 before any progress: the request's place in line. */
  onQueue?(queue: QueueInfo): void;
  /** Called with the request once admitted, and with null when it is settled. */
  onActive?(active: ActiveRequest | null): void;
}

/** How one attempt at one node ended. */
export type Attempt =
  | { kind: 'done'; outcome: ChatOutcome }
  | { kind: 'node_failed'; why: 'unknown' | 'expired' | 'cancelled' | 'bad_key' }
  | { kind: 'window_exceeded' };

/** Everything one attempt at one node carries around. */
export interface Turn {
  identity: TabIdentity;
  active: ActiveRequest;
  expected: Expected;
  attempt: number;
  signal: AbortSignal;
  events: ChatEvents;
  stage: (s: Stage) => void;
}

/** The error object of a relay answer, whichever shape it has. */
export function errorOf(res: HttpResult): {
  code: string;
  message: string;
  status: string;
  reason: string;
} {
  const e = res.body.error;
  const rec = typeof e === 'object' && e !== null ? (e as Record<string, unknown>) : {};
  const str = (v: unknown): string =>
    typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
  return {
    code: str(rec.code),
    message: typeof e === 'string' ? e : str(rec.message),
    status: str(rec.status),
    reason: str(rec.reason),
  };
}

export function httpDetail(res: HttpResult): string {
  const { message } = errorOf(res);
  return `HTTP ${res.status}${message ? `: ${message}` : ''}`;
}
