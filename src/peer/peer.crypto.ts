import { generateKeyPair, generateKeyPairSync, type KeyObject } from 'node:crypto';
import {
  identityOf,
  openText,
  openTextAsync,
  openWithKey as openTextWithKey,
  publicKeyFromB64,
  sealText,
  unwrapKey,
  type Padding,
  type RsaKey,
  type Sealed,
} from '../common/hybrid.crypto';

/**
 * A Node peer's side of the token.place hybrid scheme (spec §6): an RSA-2048 identity (PEM-b64 on
 * the wire) and JSON values sealed to a peer and opened with the identity. The scheme itself is
 * `common/hybrid.crypto`, the one implementation, which the gateway uses as well; the relay's E2EE
 * routes never call any of this.
 */
export type { Padding, RsaKey, Sealed };

export interface Identity extends RsaKey {
  publicKeyPem: string;
}

const RSA_2048 = { modulusLength: 2048, publicExponent: 65537 } as const;

function identityFrom(privateKey: KeyObject): Identity {
  const { publicKeyB64 } = identityOf(privateKey);
  return { privateKey, publicKeyB64, publicKeyPem: pemFromB64(publicKeyB64) };
}

/** A fresh RSA-2048 identity, made on the calling thread (~50–200 ms). */
export function newIdentity(): Identity {
  return identityFrom(generateKeyPairSync('rsa', RSA_2048).privateKey);
}

/** A fresh RSA-2048 identity, made off the event loop (a peer inside a serving process). */
export function newIdentityAsync(): Promise<Identity> {
  return new Promise((resolve, reject) => {
    generateKeyPair('rsa', RSA_2048, (error, _publicKey, privateKey) =>
      error ? reject(error) : resolve(identityFrom(privateKey)),
    );
  });
}

export function pemFromB64(publicKeyB64: string): string {
  return Buffer.from(publicKeyB64, 'base64').toString('utf8');
}

/**
 * Encrypts a JSON-serialisable value to a PEM-b64 public key, or to one already parsed (a peer
 * answering the same client many times parses its key once: a PEM parse is ~0.7 ms).
 */
export function seal(
  value: unknown,
  recipient: string | KeyObject,
  padding: Padding = 'oaep',
): Sealed {
  const key = typeof recipient === 'string' ? publicKeyFromB64(recipient) : recipient;
  return sealText(JSON.stringify(value), key, padding);
}

/** Unwraps an OAEP-wrapped key (a PKCS#1 v1.5 wrap is an error here). */
export function unwrapOaep(identity: RsaKey, cipherkey: string): Buffer {
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
export function open(identity: RsaKey, sealed: Sealed): unknown {
  return openAny(identity, sealed).value;
}

/**
 * Decrypts a JSON value sealed to `identity` and reports the sender's padding: OAEP-SHA256 first,
 * then PKCS#1 v1.5 (what today's compute nodes and JSEncrypt produce), as the gateway does.
 */
export function openAny(identity: RsaKey, sealed: Sealed): { value: unknown; padding: Padding } {
  const { text, padding } = openText(identity.privateKey, sealed);
  return { value: JSON.parse(text), padding };
}

/** {@link openAny} with the OAEP unwrap off the event loop (a peer inside a serving process). */
export async function openAnyAsync(
  identity: RsaKey,
  sealed: Sealed,
): Promise<{ value: unknown; padding: Padding }> {
  const { text, padding } = await openTextAsync(identity.privateKey, sealed);
  return { value: JSON.parse(text), padding };
}
