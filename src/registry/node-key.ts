import { publicKeyFromB64 } from '../common/hybrid.crypto';

/**
 * Longest compute-node key accepted: the base64 of an RSA-8192 SubjectPublicKeyInfo PEM is 1,988
 * characters (2,012 with CRLF line ends); today's nodes send RSA-2048 keys of about 600.
 */
export const MAX_NODE_KEY_CHARS = 2048;

/** RSA sizes a node key may have: token.place's nodes refuse to make keys under 2048 bits. */
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;

const SPKI_PEM = '-----BEGIN PUBLIC KEY-----';

/** Keys found usable lately (every poll checks its key again); the oldest is forgotten first. */
const USABLE = new Set<string>();
const MAX_REMEMBERED = 1024;

/**
 * Whether clients can encrypt to this API v1 node key (spec §6.1): the base64 of a PEM
 * SubjectPublicKeyInfo holding an RSA key of 2048 to 8192 bits, what token.place's nodes send and
 * what browsers (WebCrypto, JSEncrypt) and the gateway import. Parsing costs tens of microseconds
 * (~5 % of the main thread in a gateway burst, one check per poll), so the last 1,024 usable keys
 * are remembered; an unusable key is parsed each time and never remembered. The relay never looks
 * at a key beyond this.
 */
export function isUsableNodeKey(key: string): boolean {
  if (USABLE.has(key)) {
    return true;
  }
  if (!parsesAsNodeKey(key)) {
    return false;
  }
  if (USABLE.size >= MAX_REMEMBERED) {
    const oldest = USABLE.values().next();
    if (!oldest.done) {
      USABLE.delete(oldest.value);
    }
  }
  USABLE.add(key);
  return true;
}

function parsesAsNodeKey(key: string): boolean {
  if (key.length > MAX_NODE_KEY_CHARS) {
    return false;
  }
  try {
    if (!Buffer.from(key, 'base64').toString('latin1').trimStart().startsWith(SPKI_PEM)) {
      return false;
    }
    const bits = publicKeyFromB64(key).asymmetricKeyDetails?.modulusLength ?? 0;
    return bits >= MIN_RSA_BITS && bits <= MAX_RSA_BITS;
  } catch {
    return false;
  }
}
