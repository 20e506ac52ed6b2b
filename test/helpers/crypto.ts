import { unwrapKey } from '../../src/common/hybrid.crypto';
import type { Identity } from '../../src/peer/peer.crypto';

/**
 * Unwraps a cipherkey with OAEP-SHA256 first, then PKCS#1 v1.5 (what today's compute nodes and
 * JSEncrypt produce), as the gateway does: natively where Node allows PKCS#1 v1.5 private
 * decryption (Node 24), with node-forge where it refuses (Node 20/22). Opening a whole envelope is
 * the peer library's `openAny`.
 */
export function unwrapAny(
  identity: Identity,
  cipherkey: string,
): { key: Buffer; padding: 'oaep' | 'pkcs1' } {
  return unwrapKey(identity.privateKey, cipherkey);
}
