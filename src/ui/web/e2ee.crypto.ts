import forge from 'node-forge';

/**
 * The token.place hybrid scheme (spec §6) as the browser page runs it, on WebCrypto only (the same
 * module runs under Node 20 for the unit tests): an RSA-2048 key pair per tab, kept in memory;
 * requests are AES-256-CBC with the 44-char base64 text of the AES key wrapped by RSA-OAEP-SHA256;
 * replies are unwrapped with OAEP first, then PKCS#1 v1.5 (what today's compute nodes send), the
 * one step WebCrypto cannot do, done by node-forge.
 */
export type Padding = 'oaep' | 'pkcs1';

export interface Sealed {
  ciphertext: string;
  cipherkey: string;
  iv: string;
}

export class DecryptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecryptError';
  }
}

const RSA_OAEP = { name: 'RSA-OAEP', hash: 'SHA-256' } as const;
const AES_KEY_BYTES = new Set([16, 24, 32]);

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s) {
    throw new Error('WebCrypto is unavailable: open the page over https or on localhost');
  }
  return s;
}

export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

export function randomHex(n: number): string {
  return [...randomBytes(n)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Bytes as a binary string (one char per byte), the form btoa and node-forge use. */
function toBinary(bytes: Uint8Array): string {
  let out = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    out += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return out;
}

function fromBinary(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i += 1) {
    bytes[i] = text.charCodeAt(i) & 0xff;
  }
  return bytes;
}

export function toBase64(bytes: Uint8Array): string {
  return btoa(toBinary(bytes));
}

/** Standard-alphabet base64 only; anything else is a DecryptError. */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text.replace(/\s+/g, ''))) {
    throw new DecryptError('not standard base64');
  }
  try {
    return fromBinary(atob(text.replace(/\s+/g, '')));
  } catch {
    throw new DecryptError('not standard base64');
  }
}

const utf8 = new TextEncoder();

function ascii(text: string): Uint8Array<ArrayBuffer> {
  return fromBinary(text);
}

/** SPKI DER as PEM with 64-char lines and no trailing newline (what the existing page sends). */
export function spkiToPem(der: Uint8Array): string {
  const body = toBase64(der).match(/.{1,64}/g) ?? [];
  return ['-----BEGIN PUBLIC KEY-----', ...body, '-----END PUBLIC KEY-----'].join('\n');
}

/** PEM-b64 (the wire identity of §6.1) back to SPKI DER. */
export function pemB64ToSpki(publicKeyB64: string): Uint8Array<ArrayBuffer> {
  const pem = toBinary(fromBase64(publicKeyB64.trim()));
  const match = /-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----/.exec(pem);
  if (!match?.[1]) {
    throw new DecryptError('not a PEM public key');
  }
  return fromBase64(match[1]);
}

/** The tab's RSA-2048 key pair; nothing of it is ever stored or sent except the public key. */
export class TabIdentity {
  private constructor(
    /** PEM-b64: the `client_public_key` of every request. */
    readonly publicKeyB64: string,
    private readonly privateKey: CryptoKey,
    private readonly forgeKey: forge.pki.rsa.PrivateKey,
  ) {}

  static async generate(): Promise<TabIdentity> {
    const pair = await subtle().generateKey(
      { ...RSA_OAEP, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
      true,
      ['encrypt', 'decrypt'],
    );
    const spki = new Uint8Array(await subtle().exportKey('spki', pair.publicKey));
    const pkcs8 = new Uint8Array(await subtle().exportKey('pkcs8', pair.privateKey));
    const forgeKey = forge.pki.privateKeyFromAsn1(
      forge.asn1.fromDer(forge.util.createBuffer(toBinary(pkcs8))),
    );
    const privateKey = await subtle().importKey('pkcs8', pkcs8, RSA_OAEP, false, ['decrypt']);
    pkcs8.fill(0);
    return new TabIdentity(btoa(spkiToPem(spki)), privateKey, forgeKey);
  }

  /** Unwraps a `cipherkey` to AES key bytes: OAEP-SHA256 first, then PKCS#1 v1.5 (spec §6.2). */
  async unwrap(cipherkey: string): Promise<{ key: Uint8Array<ArrayBuffer>; padding: Padding }> {
    const wrapped = fromBase64(cipherkey);
    let text: string | null = null;
    let padding: Padding = 'oaep';
    try {
      text = toBinary(new Uint8Array(await subtle().decrypt(RSA_OAEP, this.privateKey, wrapped)));
    } catch {
      padding = 'pkcs1';
      try {
        text = this.forgeKey.decrypt(toBinary(wrapped), 'RSAES-PKCS1-V1_5');
      } catch {
        text = null;
      }
    }
    if (text === null) {
      throw new DecryptError('the key was not wrapped for this tab');
    }
    const key = fromBase64(text);
    if (!AES_KEY_BYTES.has(key.length)) {
      throw new DecryptError('the unwrapped AES key has a wrong length');
    }
    return { key, padding };
  }

  /** Decrypts a sealed reply to its JSON value (a string when the plaintext is not JSON). */
  async open(sealed: Sealed): Promise<{ value: unknown; padding: Padding }> {
    if (
      typeof sealed.ciphertext !== 'string' ||
      typeof sealed.cipherkey !== 'string' ||
      typeof sealed.iv !== 'string'
    ) {
      throw new DecryptError('the envelope lacks ciphertext, cipherkey or iv');
    }
    const { key, padding } = await this.unwrap(sealed.cipherkey);
    const iv = fromBase64(sealed.iv);
    if (iv.length !== 16) {
      throw new DecryptError('the iv is not 16 bytes');
    }
    let plain: ArrayBuffer;
    try {
      const aes = await subtle().importKey('raw', key, 'AES-CBC', false, ['decrypt']);
      plain = await subtle().decrypt({ name: 'AES-CBC', iv }, aes, fromBase64(sealed.ciphertext));
    } catch {
      throw new DecryptError('the ciphertext does not decrypt with the unwrapped key');
    } finally {
      key.fill(0);
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(plain);
    } catch {
      throw new DecryptError('the plaintext is not UTF-8');
    }
    try {
      return { value: JSON.parse(text) as unknown, padding };
    } catch {
      return { value: text, padding };
    }
  }
}

/** A short, human-comparable name for a PEM-b64 key: the first 12 hex digits of its SHA-256. */
export async function keyFingerprint(publicKeyB64: string): Promise<string> {
  const digest = new Uint8Array(await subtle().digest('SHA-256', utf8.encode(publicKeyB64.trim())));
  return [...digest.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Imports a node's PEM-b64 key for RSA-OAEP-SHA256 wrapping. */
export async function importRecipient(publicKeyB64: string): Promise<CryptoKey> {
  try {
    return await subtle().importKey('spki', pemB64ToSpki(publicKeyB64), RSA_OAEP, false, [
      'encrypt',
    ]);
  } catch (error) {
    if (error instanceof DecryptError) {
      throw error;
    }
    throw new DecryptError('the compute node key is not an RSA public key');
  }
}

/** Encrypts a JSON value to a node: AES-256-CBC, key text wrapped with RSA-OAEP-SHA256. */
export async function seal(value: unknown, recipientB64: string): Promise<Sealed> {
  const recipient = await importRecipient(recipientB64);
  const key = randomBytes(32);
  const iv = randomBytes(16);
  const aes = await subtle().importKey('raw', key, 'AES-CBC', false, ['encrypt']);
  const data = await subtle().encrypt(
    { name: 'AES-CBC', iv },
    aes,
    utf8.encode(JSON.stringify(value)),
  );
  const wrapped = await subtle().encrypt(RSA_OAEP, recipient, ascii(toBase64(key)));
  key.fill(0);
  return {
    ciphertext: toBase64(new Uint8Array(data)),
    cipherkey: toBase64(new Uint8Array(wrapped)),
    iv: toBase64(iv),
  };
}
