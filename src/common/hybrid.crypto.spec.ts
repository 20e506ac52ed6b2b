import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  DecryptError,
  identityOf,
  openText,
  openTextAsync,
  sealText,
  unwrapKey,
  unwrapKeyAsync,
  wrapKey,
  type Padding,
} from './hybrid.crypto';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const me = identityOf(privateKey);
const { privateKey: otherKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
/** Every pair of the padding a key was wrapped with and the padding tried first. */
const SENT_AND_PREFERRED: Array<[Padding, Padding]> = [
  ['oaep', 'oaep'],
  ['oaep', 'pkcs1'],
  ['pkcs1', 'oaep'],
  ['pkcs1', 'pkcs1'],
];

describe('unwrapKey with a preferred padding', () => {
  it.each(SENT_AND_PREFERRED)(
    'should recover a %s-wrapped key when %s is tried first',
    (sent, prefer) => {
      const aes = randomBytes(32);
      const wrapped = wrapKey(aes, me.privateKey, sent);

      const { key, padding } = unwrapKey(me.privateKey, wrapped, prefer);

      expect(key.equals(aes)).toBe(true);
      expect(padding).toBe(sent);
    },
  );

  it.each<Padding>(['oaep', 'pkcs1'])(
    'should open a whole envelope whichever padding comes first (%s first)',
    (prefer) => {
      const sealed = sealText('{"hello":"world"}', me.privateKey, 'pkcs1');

      expect(openText(me.privateKey, sealed, prefer)).toEqual({
        text: '{"hello":"world"}',
        padding: 'pkcs1',
      });
    },
  );

  it.each<Padding>(['oaep', 'pkcs1'])(
    'should refuse a key wrapped for another key, whichever padding comes first (%s first)',
    (prefer) => {
      const wrapped = wrapKey(randomBytes(32), otherKey, 'oaep');

      expect(() => unwrapKey(me.privateKey, wrapped, prefer)).toThrow(DecryptError);
    },
  );
});

describe('unwrapKeyAsync (OAEP through WebCrypto, off the event loop)', () => {
  it.each(SENT_AND_PREFERRED)(
    'should recover a %s-wrapped key when %s is tried first',
    async (sent, prefer) => {
      const aes = randomBytes(32);
      const wrapped = wrapKey(aes, me.privateKey, sent);

      const { key, padding } = await unwrapKeyAsync(me.privateKey, wrapped, prefer);

      expect(key.equals(aes)).toBe(true);
      expect(padding).toBe(sent);
    },
  );

  it('should open an OAEP envelope to the same text as the synchronous path', async () => {
    const sealed = sealText('{"answer":"async"}', me.privateKey, 'oaep');

    await expect(openTextAsync(me.privateKey, sealed)).resolves.toEqual(
      openText(me.privateKey, sealed),
    );
  });

  it.each<Padding>(['oaep', 'pkcs1'])(
    'should refuse a key wrapped for another key (%s first)',
    async (prefer) => {
      const wrapped = wrapKey(randomBytes(32), otherKey, 'oaep');

      await expect(unwrapKeyAsync(me.privateKey, wrapped, prefer)).rejects.toThrow(DecryptError);
    },
  );
});
