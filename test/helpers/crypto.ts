import forge from 'node-forge';
import { openWithKey, unwrapOaep, type Identity, type Sealed } from '../../src/smoke/e2ee';

/**
 * Unwraps a cipherkey with OAEP-SHA256 first, then PKCS#1 v1.5 (what today's compute nodes and
 * JSEncrypt produce). Node 20 refuses v1.5 private decryption, so that step uses node-forge, as the
 * browser bundle does.
 */
export function unwrapAny(
  identity: Identity,
  cipherkey: string,
): { key: Buffer; padding: 'oaep' | 'pkcs1' } {
  try {
    return { key: unwrapOaep(identity, cipherkey), padding: 'oaep' };
  } catch {
    const pem = identity.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const forgeKey = forge.pki.privateKeyFromPem(pem);
    const text = forgeKey.decrypt(forge.util.decode64(cipherkey), 'RSAES-PKCS1-V1_5');
    return { key: Buffer.from(text, 'base64'), padding: 'pkcs1' };
  }
}

export function openAny(
  identity: Identity,
  sealed: Sealed,
): { value: unknown; padding: 'oaep' | 'pkcs1' } {
  const { key, padding } = unwrapAny(identity, sealed.cipherkey);
  return { value: openWithKey(key, sealed), padding };
}
