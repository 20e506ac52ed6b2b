import {
  constants,
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  publicEncrypt,
  randomBytes,
  webcrypto,
  type KeyObject,
} from 'node:crypto';
import { rsaUnwrap } from './rsa-private.cjs';

/**
 * The token.place hybrid scheme (spec §6.2), shared by the gateway and the project's Node peers
 * (smoke check, demo node, simulators): AES-256-CBC payloads whose key travels as the base64 *text*
 * of the AES key, RSA-wrapped with OAEP-SHA256 or PKCS#1 v1.5. Unwrapping tries OAEP first, then
 * v1.5 (what today's nodes and JSEncrypt clients send).
 */
export type Padding = 'oaep' | 'pkcs1';

export interface Sealed {
  ciphertext: string;
  cipherkey: string;
  iv: string;
}

/** An RSA-2048 key pair and its wire identity (base64 of the SPKI PEM). */
export interface RsaKey {
  privateKey: KeyObject;
  publicKeyB64: string;
}

export class DecryptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecryptError';
  }
}

/** Strict standard base64 with padding (Python's `b64decode(validate=True)`). */
const STRICT_B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function isStrictBase64(value: string): boolean {
  return STRICT_B64.test(value);
}

const AES_KEY_BYTES = new Set([16, 24, 32]);

export function identityOf(privateKey: KeyObject): RsaKey {
  const pem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  return { privateKey, publicKeyB64: Buffer.from(pem, 'utf8').toString('base64') };
}

/** Loads a PEM-b64 public key (SPKI or PKCS#1 PEM); throws on anything else. */
export function publicKeyFromB64(b64: string): KeyObject {
  if (!isStrictBase64(b64)) {
    throw new DecryptError('public key is not base64');
  }
  const pem = Buffer.from(b64, 'base64').toString('utf8');
  if (!pem.includes('-----BEGIN')) {
    throw new DecryptError('public key is not PEM');
  }
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'rsa') {
    throw new DecryptError('public key is not RSA');
  }
  return key;
}

/** Encrypts UTF-8 text to `recipient`: fresh AES key and IV, the key's base64 text RSA-wrapped. */
export function sealText(text: string, recipient: KeyObject, padding: Padding): Sealed {
  const key = randomBytes(32);
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  const data = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
  return {
    ciphertext: data.toString('base64'),
    cipherkey: wrapKey(key, recipient, padding),
    iv: iv.toString('base64'),
  };
}

/** RSA-wraps the base64 text of an AES key. */
export function wrapKey(aesKey: Buffer, recipient: KeyObject, padding: Padding): string {
  const wrapped = publicEncrypt(
    padding === 'oaep'
      ? { key: recipient, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }
      : { key: recipient, padding: constants.RSA_PKCS1_PADDING },
    Buffer.from(aesKey.toString('base64'), 'ascii'),
  );
  return wrapped.toString('base64');
}

/** AES-256-CBC with a caller-held key and a fresh IV (one SSE chunk of a stream). */
export function sealWithKey(text: string, aesKey: Buffer): { ciphertext: string; iv: string } {
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', aesKey, iv);
  const data = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
  return { ciphertext: data.toString('base64'), iv: iv.toString('base64') };
}

/** Ids that name a key across threads (a worker thread receives a fresh KeyObject per task). */
const keyIds = new WeakMap<KeyObject, string>();
let nextKeyId = 0;

export function keyIdOf(privateKey: KeyObject): string {
  let id = keyIds.get(privateKey);
  if (id === undefined) {
    nextKeyId += 1;
    id = `k${nextKeyId}`;
    keyIds.set(privateKey, id);
  }
  return id;
}

/** The AES key an unwrapped RSA plaintext carries (its base64 text), or null if it carries none. */
function aesKeyOf(text: Buffer | null): Buffer | null {
  if (text === null) {
    return null;
  }
  const keyText = text.toString('latin1');
  if (!isStrictBase64(keyText)) {
    return null;
  }
  const key = Buffer.from(keyText, 'base64');
  return AES_KEY_BYTES.has(key.length) ? key : null;
}

function unwrapWith(privateKey: KeyObject, wrapped: Buffer, padding: Padding): Buffer | null {
  return aesKeyOf(rsaUnwrap(privateKey, keyIdOf(privateKey), wrapped, padding));
}

/**
 * Unwraps a cipherkey into the AES key it carries: OAEP-SHA256, then PKCS#1 v1.5, or `prefer`
 * first (one RSA operation instead of two when the sender's padding is known from before). A wrong
 * guess costs the second attempt, never a wrong key: v1.5 with implicit rejection (Node 24) turns
 * an OAEP wrap into random bytes, which are not the base64 text of an AES key.
 */
export function unwrapKey(
  privateKey: KeyObject,
  cipherkey: string,
  prefer: Padding = 'oaep',
): { key: Buffer; padding: Padding } {
  const wrapped = Buffer.from(cipherkey, 'base64');
  const other: Padding = prefer === 'oaep' ? 'pkcs1' : 'oaep';
  for (const padding of [prefer, other]) {
    const key = unwrapWith(privateKey, wrapped, padding);
    if (key !== null) {
      return { key, padding };
    }
  }
  throw new DecryptError('the key could not be unwrapped');
}

/** WebCrypto copies of private keys for OAEP, made once per key (the gateway's key decrypts many). */
const oaepKeys = new WeakMap<KeyObject, Promise<webcrypto.CryptoKey>>();

function oaepKeyOf(privateKey: KeyObject): Promise<webcrypto.CryptoKey> {
  let key = oaepKeys.get(privateKey);
  if (key === undefined) {
    key = webcrypto.subtle.importKey(
      'pkcs8',
      privateKey.export({ type: 'pkcs8', format: 'der' }),
      { name: 'RSA-OAEP', hash: 'SHA-256' },
      false,
      ['decrypt'],
    );
    oaepKeys.set(privateKey, key);
  }
  return key;
}

/**
 * Runs one RSA private-key unwrap somewhere other than the event loop (the gateway's worker
 * threads): the RSA plaintext, or null when `wrapped` does not unwrap with `padding`.
 */
export type OffLoopUnwrap = (
  privateKey: KeyObject,
  wrapped: Buffer,
  padding: Padding,
) => Promise<Buffer | null>;

/**
 * {@link unwrapKey} off the event loop (an RSA-2048 private operation is ~0.7 ms of CPU, and
 * PKCS#1 v1.5 on Node 20/22 ~30–40 ms in node-forge): OAEP by WebCrypto on the libuv pool;
 * PKCS#1 v1.5, which WebCrypto cannot do, by `offLoop` when given, else on the event loop as in
 * {@link unwrapKey}. `prefer` orders the two as there.
 */
export async function unwrapKeyAsync(
  privateKey: KeyObject,
  cipherkey: string,
  prefer: Padding = 'oaep',
  offLoop?: OffLoopUnwrap,
): Promise<{ key: Buffer; padding: Padding }> {
  const wrapped = Buffer.from(cipherkey, 'base64');
  const oaep = async (): Promise<Buffer | null> => {
    try {
      const text = await webcrypto.subtle.decrypt(
        { name: 'RSA-OAEP' },
        await oaepKeyOf(privateKey),
        wrapped,
      );
      return aesKeyOf(Buffer.from(text));
    } catch {
      return null;
    }
  };
  const pkcs1 = async (): Promise<Buffer | null> =>
    offLoop === undefined
      ? unwrapWith(privateKey, wrapped, 'pkcs1')
      : aesKeyOf(await offLoop(privateKey, wrapped, 'pkcs1'));
  const order: Padding[] = prefer === 'oaep' ? ['oaep', 'pkcs1'] : ['pkcs1', 'oaep'];
  for (const padding of order) {
    const key = padding === 'oaep' ? await oaep() : await pkcs1();
    if (key !== null) {
      return { key, padding };
    }
  }
  throw new DecryptError('the key could not be unwrapped');
}

/** {@link openText} with the unwrap off the event loop ({@link unwrapKeyAsync}). */
export async function openTextAsync(
  privateKey: KeyObject,
  sealed: Sealed,
  prefer: Padding = 'oaep',
  offLoop?: OffLoopUnwrap,
): Promise<{ text: string; padding: Padding }> {
  const { key, padding } = await unwrapKeyAsync(privateKey, sealed.cipherkey, prefer, offLoop);
  return { text: openWithKey(key, sealed), padding };
}

/** AES-CBC decryption with an unwrapped key; the text must be UTF-8. */
export function openWithKey(key: Buffer, sealed: { ciphertext: string; iv: string }): string {
  try {
    const iv = Buffer.from(sealed.iv, 'base64');
    const decipher = createDecipheriv(`aes-${key.length * 8}-cbc`, key, iv);
    const data = Buffer.concat([
      decipher.update(Buffer.from(sealed.ciphertext, 'base64')),
      decipher.final(),
    ]);
    return new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw new DecryptError('the payload could not be decrypted');
  }
}

/** Decrypts a hybrid envelope to text (`prefer`: see {@link unwrapKey}); reports the sender's padding. */
export function openText(
  privateKey: KeyObject,
  sealed: Sealed,
  prefer: Padding = 'oaep',
): { text: string; padding: Padding } {
  const { key, padding } = unwrapKey(privateKey, sealed.cipherkey, prefer);
  return { text: openWithKey(key, sealed), padding };
}
