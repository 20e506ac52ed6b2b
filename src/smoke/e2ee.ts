import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import {
  identityOf,
  openText,
  openWithKey as openTextWithKey,
  publicKeyFromB64,
  sealText,
  unwrapKey,
  type Padding,
  type Sealed,
} from '../common/hybrid.crypto';

/**
 * A Node peer of the token.place hybrid scheme (spec §6), for the smoke check, the test simulators
 * and the benches: an RSA-2048 identity (PEM-b64 on the wire) and JSON values sealed to a peer and
 * opened with the identity. The crypto itself is `common/hybrid.crypto`, shared with the gateway;
 * the relay's E2EE routes never call any of this.
 */
export type { Padding, Sealed };

export interface Identity {
  privateKey: KeyObject;
  /** PEM-b64: what goes in `client_public_key` / `server_public_key`. */
  publicKeyB64: string;
  publicKeyPem: string;
}

export function newIdentity(): Identity {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 65537 });
  const { publicKeyB64 } = identityOf(privateKey);
  return { privateKey, publicKeyB64, publicKeyPem: pemFromB64(publicKeyB64) };
}

export function pemFromB64(publicKeyB64: string): string {
  return Buffer.from(publicKeyB64, 'base64').toString('utf8');
}

/** Encrypts a JSON-serialisable value to a PEM-b64 public key. */
export function seal(value: unknown, recipientB64: string, padding: Padding = 'oaep'): Sealed {
  return sealText(JSON.stringify(value), publicKeyFromB64(recipientB64), padding);
}

/** Unwraps an OAEP-wrapped key (a PKCS#1 v1.5 wrap is an error here). */
export function unwrapOaep(identity: Identity, cipherkey: string): Buffer {
  const { key, padding } = unwrapKey(identity.privateKey, cipherkey);
  if (padding !== 'oaep') {
    throw new Error('the key was not wrapped with RSA-OAEP');
  }
  return key;
}

/** Decrypts a JSON value with an already unwrapped AES key. */
export function openWithKey(aesKey: Buffer, sealed: { ciphertext: string; iv: string }): unknown {
  return JSON.parse(openTextWithKey(aesKey, sealed));
}

/** Decrypts a JSON value sealed to `identity` (either padding). */
export function open(identity: Identity, sealed: Sealed): unknown {
  return JSON.parse(openText(identity.privateKey, sealed).text);
}
