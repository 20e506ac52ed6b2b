import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  DecryptError,
  identityOf,
  openText,
  sealText,
  unwrapKey,
  wrapKey,
  type Padding,
} from './hybrid.crypto';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const me = identityOf(privateKey);
const { privateKey: otherKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

describe('unwrapKey with a preferred padding', () => {
  it.each<[Padding, Padding]>([
    ['oaep', 'oaep'],
    ['oaep', 'pkcs1'],
    ['pkcs1', 'oaep'],
    ['pkcs1', 'pkcs1'],
  ])('should recover a %s-wrapped key when %s is tried first', (sent, prefer) => {
    const aes = randomBytes(32);
    const wrapped = wrapKey(aes, me.privateKey, sent);

    const { key, padding } = unwrapKey(me.privateKey, wrapped, prefer);

    expect(key.equals(aes)).toBe(true);
    expect(padding).toBe(sent);
  });

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
