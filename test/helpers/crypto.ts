import { unwrapKey } from '../../src/common/hybrid.crypto';
import { openWithKey, type Identity, type Sealed } from '../../src/smoke/e2ee';

/**
 * Unwraps a cipherkey with OAEP-SHA256 first, then PKCS#1 v1.5 (what today's compute nodes and
 * JSEncrypt produce), as the gateway does: natively where Node allows PKCS#1 v1.5 private
 * decryption (Node 24), with node-forge where it refuses (Node 20/22).
 */
export function unwrapAny(
  identity: Identity,
  cipherkey: string,
): { key: Buffer; padding: 'oaep' | 'pkcs1' } {
  return unwrapKey(identity.privateKey, cipherkey);
}

export function openAny(
  identity: Identity,
  sealed: Sealed,
): { value: unknown; padding: 'oaep' | 'pkcs1' } {
  const { key, padding } = unwrapAny(identity, sealed.cipherkey);
  return { value: openWithKey(key, sealed), padding };
}
