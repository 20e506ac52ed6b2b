import { constants, createPublicKey, privateDecrypt } from 'node:crypto';
import { newIdentity, openAny, seal as nodeSeal, unwrapOaep } from '../../src/peer/peer.crypto';
import { DecryptError, TabIdentity, pemB64ToSpki, seal } from '../../src/ui/web/e2ee.crypto';

describe('page crypto (src/ui/web/e2ee.crypto.ts) against the Node peers', () => {
  let tab: TabIdentity;
  const node = newIdentity();

  beforeAll(async () => {
    tab = await TabIdentity.generate();
  });

  it('should publish its key as base64 of an SPKI PEM with 64-char lines and no trailing newline', () => {
    const pem = Buffer.from(tab.publicKeyB64, 'base64').toString('ascii');
    const lines = pem.split('\n');

    expect(lines[0]).toBe('-----BEGIN PUBLIC KEY-----');
    expect(lines.at(-1)).toBe('-----END PUBLIC KEY-----');
    expect(lines.slice(1, -2).every((l) => l.length === 64)).toBe(true);
    expect(pem.endsWith('\n')).toBe(false);
    expect(createPublicKey(pem).asymmetricKeyDetails).toMatchObject({
      modulusLength: 2048,
      publicExponent: 65537n,
    });
    expect(tab.publicKeyB64).toHaveLength(600);
  });

  it('should seal requests a Node compute node opens, wrapping the 44-char base64 key text with OAEP-SHA256', async () => {
    const value = { protocol: 'tokenplace_api_v1_relay_e2ee', text: 'héllo ✓', n: [1, 2, 3] };

    const sealed = await seal(value, node.publicKeyB64);

    const keyText = privateDecrypt(
      { key: node.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      Buffer.from(sealed.cipherkey, 'base64'),
    ).toString('ascii');
    expect(keyText).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(unwrapOaep(node, sealed.cipherkey)).toHaveLength(32);
    expect(Buffer.from(sealed.iv, 'base64')).toHaveLength(16);
    expect(Buffer.from(sealed.cipherkey, 'base64')).toHaveLength(256);
    expect(openAny(node, sealed)).toEqual({ value, padding: 'oaep' });
  });

  it.each(['oaep', 'pkcs1'] as const)(
    'should open replies a Node peer wrapped with %s',
    async (padding) => {
      const reply = {
        api_v1_response: { message: { role: 'assistant', content: 'ünïcode and "quotes"' } },
      };

      const opened = await tab.open(nodeSeal(reply, tab.publicKeyB64, padding));

      expect(opened).toEqual({ value: reply, padding });
    },
  );

  it('should read a node key that ends with a newline (Python and Node PEMs do)', () => {
    expect(node.publicKeyPem.endsWith('\n')).toBe(true);

    expect(pemB64ToSpki(node.publicKeyB64)).toEqual(
      new Uint8Array(createPublicKey(node.publicKeyPem).export({ type: 'spki', format: 'der' })),
    );
  });

  it('should refuse a reply wrapped for another key', async () => {
    const other = newIdentity();

    await expect(tab.open(nodeSeal({ a: 1 }, other.publicKeyB64, 'pkcs1'))).rejects.toThrow(
      DecryptError,
    );
    await expect(tab.open(nodeSeal({ a: 1 }, other.publicKeyB64, 'oaep'))).rejects.toThrow(
      DecryptError,
    );
  });

  it('should refuse a ciphertext that is not whole AES blocks, and non-base64 fields', async () => {
    const sealed = nodeSeal({ a: 1 }, tab.publicKeyB64, 'pkcs1');
    const cut = Buffer.from(sealed.ciphertext, 'base64').subarray(0, 12).toString('base64');

    await expect(tab.open({ ...sealed, ciphertext: cut })).rejects.toThrow(DecryptError);
    await expect(tab.open({ ...sealed, cipherkey: 'not*base64' })).rejects.toThrow(DecryptError);
    await expect(tab.open({ ...sealed, iv: Buffer.alloc(8).toString('base64') })).rejects.toThrow(
      DecryptError,
    );
  });

  it('should refuse to seal to something that is not an RSA public key', async () => {
    await expect(seal({ a: 1 }, Buffer.from('hello').toString('base64'))).rejects.toThrow(
      DecryptError,
    );
  });
});
