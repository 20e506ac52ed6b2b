import { generateKeyPairSync } from 'node:crypto';
import { ManualClock } from '../../src/common/clock';
import { createTestApp, type TestApp } from '../helpers/test-app';
import {
  apiError,
  capabilities,
  fakeKey,
  from,
  get,
  MANUAL_SWEEP,
  post,
  storeVariants,
  TRUST_LOOPBACK,
  V1,
} from './api-v1-fixtures';

/**
 * Issue 18 item 2: without a node token, one client address holds at most its share of the
 * registry (TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS, 8), so an honest node from another address
 * always gets in; keys are bounded near real sizes and an API v1 key must be a public key
 * (item 5). With a token, token holders are trusted as before.
 */
const ATTACKER = '203.0.113.7';
const HONEST = '198.51.100.9';

function register(t: TestApp, key: string, address: string, headers: Record<string, string> = {}) {
  return post(
    t,
    `${V1}/servers/register`,
    { server_public_key: key, capabilities: capabilities() },
    from(address, headers),
  );
}

/** The base64 of an EC (P-256) public key PEM: a public key, but not one clients encrypt to. */
function ecKey(): string {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return Buffer.from(publicKey.export({ type: 'spki', format: 'pem' })).toString('base64');
}

describe.each(storeVariants('registry capture'))('registry capture ($label)', (variant) => {
  let t: TestApp;

  afterEach(async () => {
    await t.close();
    await variant.cleanup();
  });

  it('should hold one address to its share of the registry and still admit an honest node from another address', async () => {
    t = await createTestApp({
      ...variant.env(),
      ...TRUST_LOOPBACK,
      ...MANUAL_SWEEP,
      TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS: undefined, // the default share, 8
    });
    const junk = Array.from({ length: 20 }, () => fakeKey('junk'));

    const flood = [];
    for (const key of junk) {
      flood.push(await register(t, key, ATTACKER));
    }
    const honestKey = fakeKey('honest');
    const honest = await register(t, honestKey, HONEST);
    const renewal = await register(t, junk[0]!, ATTACKER);
    const picks = [];
    for (let i = 0; i < 9; i += 1) {
      picks.push((await get(t, `${V1}/servers/next`)).body.server_public_key);
    }
    const health = await get(t, '/healthz');

    expect(flood.slice(0, 8).map((r) => r.status)).toEqual(Array(8).fill(200));
    const refused = flood.slice(8);
    expect(refused.map((r) => r.status)).toEqual(Array(12).fill(429));
    expect(refused[0]!.body).toEqual(
      apiError(
        'Too many compute nodes are registered from this address; retry later',
        'relay_capacity_exceeded',
      ),
    );
    expect(refused[0]!.headers.get('retry-after')).toBe('30');
    expect(honest.status).toBe(200);
    expect(renewal.status).toBe(200);
    expect(picks).toContain(honestKey);
    expect(health.body.knownServers).toBe(9);
  });

  it('should make room for an honest node when a few addresses filled the registry to their shares', async () => {
    t = await createTestApp({
      ...variant.env(),
      ...TRUST_LOOPBACK,
      ...MANUAL_SWEEP,
      TOKENPLACE_RELAY_MAX_NODES: '16',
      TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS: undefined, // the default share, 8
    });
    for (let i = 0; i < 16; i += 1) {
      const res = await register(t, fakeKey('junk'), i < 8 ? ATTACKER : '203.0.113.8');
      expect(res.status).toBe(200);
    }

    const honest = await register(t, fakeKey('honest'), HONEST);
    const attackerAgain = await register(t, fakeKey('junk'), '203.0.113.9');
    const health = await get(t, '/healthz');

    expect(honest.status).toBe(200);
    expect(attackerAgain.status).toBe(200);
    expect(health.body.knownServers).toBe(16);
  });

  it('should count an IPv6 /56 as one address', async () => {
    t = await createTestApp({
      ...variant.env(),
      ...TRUST_LOOPBACK,
      ...MANUAL_SWEEP,
      TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS: '2',
    });

    const a = await register(t, fakeKey(), '2001:db8:1:100::1');
    const b = await register(t, fakeKey(), '2001:db8:1:1ff::2');
    const c = await register(t, fakeKey(), '2001:db8:1:1a0:abcd::3');
    const otherPrefix = await register(t, fakeKey(), '2001:db8:1:200::1');

    expect([a.status, b.status, c.status, otherPrefix.status]).toEqual([200, 200, 429, 200]);
  });

  it('should give an address its share back when one of its nodes leaves or goes silent', async () => {
    const clock = new ManualClock();
    t = await createTestApp(
      {
        ...variant.env(),
        ...TRUST_LOOPBACK,
        ...MANUAL_SWEEP,
        TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS: '2',
      },
      clock,
    );
    const first = fakeKey();
    const firstReg = await register(t, first, ATTACKER);
    await register(t, fakeKey(), ATTACKER);

    const full = await register(t, fakeKey(), ATTACKER);
    const left = await post(
      t,
      `${V1}/servers/unregister`,
      { server_public_key: first, control_credential: firstReg.body.control_credential },
      from(ATTACKER),
    );
    const afterLeave = await register(t, fakeKey(), ATTACKER);
    clock.advance(30_000 + 20_000 + 1);
    await t.sweep();
    const afterSilence = [await register(t, fakeKey(), ATTACKER)];
    afterSilence.push(await register(t, fakeKey(), ATTACKER));

    expect(full.status).toBe(429);
    expect(left.body).toEqual({ message: 'Server unregistered', removed: true });
    expect(afterLeave.status).toBe(200);
    expect(afterSilence.map((r) => r.status)).toEqual([200, 200]);
  });

  it('should count legacy /sink nodes against the same share', async () => {
    t = await createTestApp({
      ...variant.env(),
      ...TRUST_LOOPBACK,
      ...MANUAL_SWEEP,
      TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS: '2',
    });

    const sinks = [];
    for (let i = 0; i < 3; i += 1) {
      sinks.push(await post(t, '/sink', { server_public_key: `legacy-${i}` }, from(ATTACKER)));
    }
    const v1 = await register(t, fakeKey(), ATTACKER);
    const elsewhere = await post(t, '/sink', { server_public_key: 'legacy-x' }, from(HONEST));

    expect(sinks.map((r) => r.status)).toEqual([200, 200, 429]);
    expect(v1.status).toBe(429);
    expect(elsewhere.status).toBe(200);
  });

  it('should trust token holders as before: no per-address share when a node token is set', async () => {
    t = await createTestApp({
      ...variant.env(),
      ...TRUST_LOOPBACK,
      ...MANUAL_SWEEP,
      TOKENPLACE_RELAY_SERVER_TOKEN: 'node-secret',
      TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS: '2',
    });

    const statuses = [];
    for (let i = 0; i < 5; i += 1) {
      const res = await register(t, fakeKey(), ATTACKER, { 'X-Relay-Server-Token': 'node-secret' });
      statuses.push(res.status);
    }

    expect(statuses).toEqual([200, 200, 200, 200, 200]);
  });

  it('should refuse an API v1 key that is not an RSA public key, or is longer than real keys', async () => {
    t = await createTestApp({ ...variant.env(), ...MANUAL_SWEEP });
    const keyOf = (text: string): string => Buffer.from(text).toString('base64');
    const bad = [
      'junk',
      'N1',
      keyOf('-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n'),
      ecKey(),
      fakeKey('too small', 1024),
      fakeKey('larger than any real key', 16384),
    ];

    const refused = [];
    for (const key of bad) {
      refused.push(
        await post(t, `${V1}/servers/register`, {
          server_public_key: key,
          capabilities: capabilities(),
        }),
      );
    }
    const rsa4096 = await post(t, `${V1}/servers/register`, {
      server_public_key: fakeKey('rsa-4096', 4096),
      capabilities: capabilities(),
    });
    const diagnostics = await get(t, '/relay/diagnostics');

    for (const res of refused) {
      expect(res.status).toBe(400);
      expect(res.body).toEqual(apiError('Invalid server public key', 400));
    }
    expect(rsa4096.status).toBe(200);
    expect(diagnostics.body.total_api_v1_registered_compute_nodes).toBe(1);
  });
});
