import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Ids of `idBytes` random bytes in `encoding`, drawn from a CSPRNG pool refilled `count` ids at a
 * time (one syscall per `count` ids instead of one per id).
 */
function pooledIds(idBytes: number, count: number, encoding: 'hex' | 'base64url'): () => string {
  const poolBytes = idBytes * count;
  let pool = Buffer.alloc(0);
  let offset = poolBytes;
  return () => {
    if (offset >= poolBytes) {
      pool = randomBytes(poolBytes);
      offset = 0;
    }
    const id = pool.toString(encoding, offset, offset + idBytes);
    offset += idBytes;
    return id;
  };
}

const jobIds = pooledIds(16, 256, 'base64url');
const requestIds = pooledIds(8, 512, 'hex');

/**
 * 16 random bytes, URL-safe base64 without padding (22 chars): job and stream-session ids. Drawn
 * from a CSPRNG pool refilled 4 KiB at a time (one syscall per 256 ids instead of one per id).
 */
export function newJobId(): string {
  return jobIds();
}

/**
 * 16 lowercase hex chars, the X-Request-Id the relay generates. Correlation ids, not secrets: they
 * come from a pool refilled 4 KiB at a time instead of one CSPRNG call per request.
 */
export function newRequestId(): string {
  return requestIds();
}

/** 32 random bytes, URL-safe base64 (43 chars): an API v1 control credential. */
export function newControlCredential(): string {
  return randomBytes(32).toString('base64url');
}

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

/**
 * Short, stable, non-reversible name for a public key, for logs and health output.
 * Keys are long PEM-b64 strings; logging them whole is noise and links users across systems.
 */
export function fingerprint(key: string): string {
  return `sha256:${sha256Hex(key).slice(0, 16)}`;
}

/** Constant-time equality of two byte strings (both digested first so their lengths match). */
export function constantTimeEquals(a: string | Buffer, b: string | Buffer): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}

/** True when `candidate` equals any of `expected`, comparing against every entry (no early exit). */
export function matchesAny(candidate: Buffer, expected: readonly Buffer[]): boolean {
  let matched = false;
  for (const token of expected) {
    matched = constantTimeEquals(candidate, token) || matched;
  }
  return matched;
}
