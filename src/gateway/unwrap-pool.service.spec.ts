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

function poolWith(unwrapThreads: number, maxConcurrent = 1024): UnwrapPoolService {
  return new UnwrapPoolService({ gateway: { unwrapThreads, maxConcurrent } } as RelayConfig);
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
    expect(pool.forAnswers).toBeDefined();
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
      pool.forAnswers,
    );

    expect(key.equals(aes)).toBe(true);
    expect(padding).toBe(sent);
    expect(pool.threads).toBe(prefer === 'pkcs1' || sent === 'pkcs1' ? 1 : 0);
  });

  it('should keep two keys apart in one thread', async () => {
    const first = sealText('{"to":"mine"}', mine, 'pkcs1');
    const second = sealText('{"to":"another"}', another, 'pkcs1');

    const opened = await Promise.all([
      openTextAsync(mine, first, 'pkcs1', pool.forAnswers),
      openTextAsync(another, second, 'pkcs1', pool.forAnswers),
      openTextAsync(mine, first, 'pkcs1', pool.forAnswers),
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

      await expect(unwrapKeyAsync(mine, wrapped, prefer, pool.forAnswers)).rejects.toThrow(
        DecryptError,
      );
    },
  );

  it('should refuse bytes that are no RSA block at all', async () => {
    const garbage = randomBytes(7).toString('base64');

    await expect(unwrapKeyAsync(mine, garbage, 'pkcs1', pool.forAnswers)).rejects.toThrow(
      DecryptError,
    );
  });

  it('should finish the unwraps already queued, then stop its threads, on shutdown', async () => {
    await openTextAsync(mine, sealText('x', mine, 'pkcs1'), 'pkcs1', pool.forAnswers);
    expect(pool.threads).toBe(1);
    const queued = Array.from({ length: 4 }, (_, i) =>
      openTextAsync(mine, sealText(`q${i}`, mine, 'pkcs1'), 'pkcs1', pool.forAnswers),
    );

    await pool.onApplicationShutdown();

    await expect(Promise.all(queued)).resolves.toEqual(
      [0, 1, 2, 3].map((i) => ({ text: `q${i}`, padding: 'pkcs1' })),
    );
    expect(pool.threads).toBe(0);
  });

  it('should keep unwraps on the event loop with 0 threads', () => {
    expect(poolWith(0).forAnswers).toBeUndefined();
    expect(poolWith(0).forRequests).toBeUndefined();
  });

  it('should refuse new requests with 503 gateway_busy while the cap already waits, never answers', async () => {
    await pool.onApplicationShutdown();
    pool = poolWith(1, 2);
    const sealed = sealText('{"n":1}', mine, 'pkcs1');
    const open = (offLoop: typeof pool.forAnswers) => openTextAsync(mine, sealed, 'pkcs1', offLoop);
    await open(pool.forAnswers); // the thread is up

    const answers = Array.from({ length: 6 }, () => open(pool.forAnswers));
    const waitingThen = pool.waiting;
    const request = open(pool.forRequests);

    expect(waitingThen).toBeGreaterThanOrEqual(2);
    await expect(request).rejects.toMatchObject({
      status: 503,
      code: 'gateway_busy',
    });
    await expect(Promise.all(answers)).resolves.toHaveLength(6);
    expect(pool.waiting).toBe(0);
    await expect(open(pool.forRequests)).resolves.toEqual({ text: '{"n":1}', padding: 'pkcs1' });
  });
});
