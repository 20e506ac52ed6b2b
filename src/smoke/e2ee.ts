import {
  constants,
  createCipheriv,
  createDecipheriv,
  generateKeyPairSync,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import type { Padding, Sealed } from '../gateway/hybrid.crypto';

/**
 * The token.place hybrid scheme (spec §6) for Node peers: RSA-2048 identities on the wire as
 * base64 of the SPKI PEM, AES-256-CBC for the payload, and the *base64 text* of the AES key wrapped
 * with RSA-OAEP-SHA256 (or PKCS#1 v1.5 when a peer needs it). Used by the smoke check and the test
 * simulators; the relay itself never calls any of this.
 */
export type { Padding, Sealed };

export interface Identity {
  privateKey: KeyObject;
  /** PEM-b64: what goes in `client_public_key` / `server_public_key`. */
  publicKeyB64: string;
  publicKeyPem: string;
}

export function newIdentity(): Identity {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicExponent: 65537,
  });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  return {
    privateKey,
    publicKeyPem: pem,
    publicKeyB64: Buffer.from(pem, 'utf8').toString('base64'),
  };
}

export function pemFromB64(publicKeyB64: string): string {
  return Buffer.from(publicKeyB64, 'base64').toString('utf8');
}

/** Encrypts a JSON-serialisable value to a PEM-b64 public key. */
export function seal(value: unknown, recipientB64: string, padding: Padding = 'oaep'): Sealed {
  const key = randomBytes(32);
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  const data = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  const wrapped = publicEncrypt(
    padding === 'oaep'
      ? {
          key: pemFromB64(recipientB64),
          padding: constants.RSA_PKCS1_OAEP_PADDING,
          oaepHash: 'sha256',
        }
      : { key: pemFromB64(recipientB64), padding: constants.RSA_PKCS1_PADDING },
    Buffer.from(key.toString('base64'), 'ascii'),
  );
  return {
    ciphertext: data.toString('base64'),
    cipherkey: wrapped.toString('base64'),
    iv: iv.toString('base64'),
  };
}

/** Unwraps an OAEP-wrapped key. (Node 20 refuses PKCS#1 v1.5 decryption; tests use node-forge.) */
export function unwrapOaep(identity: Identity, cipherkey: string): Buffer {
  const text = privateDecrypt(
    { key: identity.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    Buffer.from(cipherkey, 'base64'),
  );
  return Buffer.from(text.toString('ascii'), 'base64');
}

/** Decrypts with an already unwrapped AES key. */
export function openWithKey(aesKey: Buffer, sealed: { ciphertext: string; iv: string }): unknown {
  const decipher = createDecipheriv(
    `aes-${aesKey.length * 8}-cbc`,
    aesKey,
    Buffer.from(sealed.iv, 'base64'),
  );
  const text = Buffer.concat([
    decipher.update(Buffer.from(sealed.ciphertext, 'base64')),
    decipher.final(),
  ]).toString('utf8');
  return JSON.parse(text);
}

export function open(identity: Identity, sealed: Sealed): unknown {
  return openWithKey(unwrapOaep(identity, sealed.cipherkey), sealed);
}
