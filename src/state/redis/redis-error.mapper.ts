import { StoreUnavailableError } from '../store-unavailable.error';

/**
 * Replies that mean "Redis cannot serve right now" (memory full, read-only replica, loading,
 * auth, ACL, busy script, failed persistence, another data layout), as opposed to a bug.
 */
const UNAVAILABLE_REPLY =
  /^(OOM|READONLY|LOADING|MASTERDOWN|NOAUTH|WRONGPASS|NOPERM|BUSY|MISCONF|CLUSTERDOWN|TRYAGAIN|NOREPLICAS|NOSCRIPT|TPSCHEMA)\b/;

/**
 * Maps what ioredis throws to the store's error vocabulary: outages (connection lost, command
 * timeout, the replies above) become {@link StoreUnavailableError} (503 + Retry-After); any other
 * reply is a script bug and stays an ordinary error (500, logged).
 */
export function toStoreError(error: unknown): Error {
  if (error instanceof StoreUnavailableError) {
    return error;
  }
  if (error instanceof Error && error.name === 'ReplyError') {
    return UNAVAILABLE_REPLY.test(error.message)
      ? new StoreUnavailableError(`redis: ${error.message}`)
      : error;
  }
  if (error instanceof Error) {
    return new StoreUnavailableError(`redis: ${error.message}`);
  }
  return new StoreUnavailableError('redis: unknown failure');
}
