import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  DecryptError,
  openTextAsync,
  sealText,
  unwrapKeyAsync,
  wrapKey,
  type Padding,
} from '../common/hybrid.crypto';
import type { RelayConfig } from '../config/relay-config';
import { UnwrapPoolService } from './unwrap-pool.service';

const keyPair = (): ReturnType<typeof generateKeyPairSync>['privateKey'] =>
  generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const mine = keyPair();
const another = keyPair();

function poolWith(unwrapThreads: number): UnwrapPoolService {
  return new UnwrapPoolService({ gateway: { unwrapThreads } } as RelayConfig);
}

describe('UnwrapPoolService (PKCS#1 v1.5 unwraps in worker threads)', () => {
  let pool: UnwrapPoolService;

  beforeEach(() => {
    pool = poolWith(1);
  });

  afterEach(async () => {
    await pool.onApplicationShutdown();
  });

  it('should start no thread before the first unwrap', () => {
    expect(pool.offLoop).toBeDefined();
    expect(pool.threads).toBe(0);
  });

  it.each<[Padding, Padding]>([
    ['pkcs1', 'pkcs1'],
    ['pkcs1', 'oaep'],
    ['oaep', 'pkcs1'],
  ])('should recover a %s-wrapped key when %s is tried first', async (sent, prefer) => {
    const aes = randomBytes(32);

    const { key, padding } = await unwrapKeyAsync(
      mine,
      wrapKey(aes, mine, sent),
      prefer,
      pool.offLoop,
    );

    expect(key.equals(aes)).toBe(true);
    expect(padding).toBe(sent);
    expect(pool.threads).toBe(prefer === 'pkcs1' || sent === 'pkcs1' ? 1 : 0);
  });

  it('should keep two keys apart in one thread', async () => {
    const first = sealText('{"to":"mine"}', mine, 'pkcs1');
    const second = sealText('{"to":"another"}', another, 'pkcs1');

    const opened = await Promise.all([
      openTextAsync(mine, first, 'pkcs1', pool.offLoop),
      openTextAsync(another, second, 'pkcs1', pool.offLoop),
      openTextAsync(mine, first, 'pkcs1', pool.offLoop),
    ]);

    expect(opened.map((o) => o.text)).toEqual([
      '{"to":"mine"}',
      '{"to":"another"}',
      '{"to":"mine"}',
    ]);
    expect(pool.threads).toBe(1);
  });

  it.each<Padding>(['pkcs1', 'oaep'])(
    'should refuse a key wrapped for another key (%s first)',
    async (prefer) => {
      const wrapped = wrapKey(randomBytes(32), another, 'pkcs1');

      await expect(unwrapKeyAsync(mine, wrapped, prefer, pool.offLoop)).rejects.toThrow(
        DecryptError,
      );
    },
  );

  it('should refuse bytes that are no RSA block at all', async () => {
    const garbage = randomBytes(7).toString('base64');

    await expect(unwrapKeyAsync(mine, garbage, 'pkcs1', pool.offLoop)).rejects.toThrow(
      DecryptError,
    );
  });

  it('should stop its threads on shutdown', async () => {
    await openTextAsync(mine, sealText('x', mine, 'pkcs1'), 'pkcs1', pool.offLoop);
    expect(pool.threads).toBe(1);

    await pool.onApplicationShutdown();

    expect(pool.threads).toBe(0);
  });

  it('should keep unwraps on the event loop with 0 threads', () => {
    expect(poolWith(0).offLoop).toBeUndefined();
  });
});
