import { generateKeyPairSync } from 'node:crypto';
import { isUsableNodeKey, MAX_NODE_KEY_CHARS } from './node-key';

const b64 = (text: string | Buffer): string => Buffer.from(text).toString('base64');

function pair(type: 'rsa' | 'ec', bits = 2048) {
  return type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: bits })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

describe(isUsableNodeKey.name, () => {
  const rsa = pair('rsa');
  const spki = b64(rsa.publicKey.export({ type: 'spki', format: 'pem' }));

  it("should accept the base64 of an RSA SubjectPublicKeyInfo PEM, as today's nodes send it", () => {
    expect(spki.length).toBeLessThan(700);
    expect(isUsableNodeKey(spki)).toBe(true);
    expect(
      isUsableNodeKey(
        b64(String(rsa.publicKey.export({ type: 'spki', format: 'pem' })).replace(/\n/g, '\r\n')),
      ),
    ).toBe(true);
  });

  it('should refuse what clients cannot encrypt to, or what is not a public key', () => {
    const refused = [
      'junk',
      '',
      spki.slice(0, -8),
      `${spki} `,
      b64('-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n'),
      b64(pair('ec').publicKey.export({ type: 'spki', format: 'pem' })),
      b64(pair('rsa', 1024).publicKey.export({ type: 'spki', format: 'pem' })),
      b64(rsa.publicKey.export({ type: 'pkcs1', format: 'pem' })),
      b64(rsa.privateKey.export({ type: 'pkcs8', format: 'pem' })),
      `${spki}${'A'.repeat(MAX_NODE_KEY_CHARS)}`,
    ];

    for (const key of refused) {
      expect(isUsableNodeKey(key)).toBe(false);
    }
  });
});
