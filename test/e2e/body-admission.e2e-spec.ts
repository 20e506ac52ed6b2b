import { RawRequest, stalledUpload } from '../helpers/raw-http';
import { V1NodeSim } from '../helpers/simulators';
import { createTestApp, type TestApp } from '../helpers/test-app';

/**
 * Issue 18 item 1: bodies being read are bounded in total and per client address, refused with a
 * clear answer before they are buffered, and given a deadline. Stalled uploads come from other
 * loopback source addresses (127.0.0.2 and up), so the honest caller on 127.0.0.1 is a stranger
 * to them, as on the internet.
 */
const MiB = 1024 * 1024;
const SUBMIT = '/api/v1/relay/requests';

/** A whole small JSON body: read, parsed and answered by the route (400 here: not an envelope). */
async function smallPost(t: TestApp, from: string, headers: Record<string, string> = {}) {
  const body = '{"client_public_key":"x"}';
  const req = new RawRequest(
    t.baseUrl,
    {
      method: 'POST',
      path: SUBMIT,
      headers: {
        'Content-Type': 'application/json',
        'Content-Length': String(body.length),
        ...headers,
      },
    },
    from,
  );
  await req.send(body);
  const answer = await req.answer(3000);
  req.destroy();
  return answer;
}

/** Opens `count` uploads of 1 MiB from `from` that send 64 KiB and stall. */
async function stall(
  t: TestApp,
  from: string,
  count: number,
  headers: Record<string, string> = {},
): Promise<RawRequest[]> {
  const uploads: RawRequest[] = [];
  for (let i = 0; i < count; i += 1) {
    const upload = stalledUpload(t.baseUrl, SUBMIT, MiB, from, headers);
    await upload.send('{"x":"'.padEnd(64 * 1024, 'a'));
    uploads.push(upload);
  }
  // Let the relay take them up (they must be being read when the next one arrives).
  await new Promise((r) => setTimeout(r, 200));
  return uploads;
}

describe('request bodies in flight (issue 18 item 1)', () => {
  let t: TestApp | undefined;
  const open: RawRequest[] = [];

  afterEach(async () => {
    for (const upload of open.splice(0)) {
      upload.destroy();
    }
    await t?.close();
    t = undefined;
  });

  it('should read at most 4 MiB of bodies from one address at once, refuse the next with 503 + Retry-After before reading it, and still serve other addresses', async () => {
    t = await createTestApp();
    open.push(...(await stall(t, '127.0.0.2', 4)));

    const refused = stalledUpload(t.baseUrl, SUBMIT, MiB, '127.0.0.2');
    open.push(refused);
    await refused.send();
    const answer = await refused.answer(3000);
    const node = new V1NodeSim(t.baseUrl);
    await node.register();
    const other = await smallPost(t, '127.0.0.3');

    expect(answer.status).toBe(503);
    expect(answer.headers['retry-after']).toBe('1');
    expect(JSON.parse(answer.body)).toEqual({
      error: {
        message: 'Too many request bodies being read from this address; retry shortly',
        code: 'relay_overloaded',
      },
    });
    expect(answer.ms).toBeLessThan(2000);
    expect(node.credential).toEqual(expect.any(String));
    expect(other.status).toBe(400);
  });

  it('should give the address its share back once its stalled uploads are gone', async () => {
    t = await createTestApp();
    const stalled = await stall(t, '127.0.0.2', 4);
    const whileStalled = await smallPost(t, '127.0.0.2');
    for (const upload of stalled) {
      upload.destroy();
    }
    await new Promise((r) => setTimeout(r, 200));
    const after = await smallPost(t, '127.0.0.2');

    expect(whileStalled.status).toBe(503);
    expect(after.status).toBe(400);
  });

  it('should bound the bodies read at once over all addresses', async () => {
    t = await createTestApp({
      TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT: String(2 * MiB),
      TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS: String(MiB),
    });
    open.push(...(await stall(t, '127.0.0.2', 1)), ...(await stall(t, '127.0.0.3', 1)));

    const third = await smallPost(t, '127.0.0.4');

    expect(third.status).toBe(503);
    expect(third.headers['retry-after']).toBe('1');
    expect(JSON.parse(third.body)).toMatchObject({
      error: { message: 'Relay is reading too many request bodies; retry shortly' },
    });
  });

  it('should answer 408 and close the connection when a body is not in by its deadline, and free its share', async () => {
    t = await createTestApp({
      TOKENPLACE_RELAY_BODY_TIMEOUT_SECONDS: '1',
      TOKENPLACE_RELAY_MIN_UPLOAD_BYTES_PER_SECOND: String(1024 * MiB),
      TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS: String(MiB),
    });
    const [upload] = await stall(t, '127.0.0.2', 1);
    open.push(upload!);
    const whileReading = await smallPost(t, '127.0.0.2');

    const answer = await upload!.answer(5000);
    const closed = await upload!.closed(2000);
    const after = await smallPost(t, '127.0.0.2');

    expect(whileReading.status).toBe(503);
    expect(answer.status).toBe(408);
    expect(JSON.parse(answer.body)).toEqual({
      error: { message: 'Request body not received in time', code: 'request_body_timeout' },
    });
    expect(answer.ms).toBeGreaterThanOrEqual(900);
    expect(closed).toBe(true);
    expect(after.status).toBe(400);
  });

  it('should refuse a declared body over the limit with 413 at once, without waiting for it', async () => {
    t = await createTestApp();
    const big = stalledUpload(t.baseUrl, SUBMIT, 2 * MiB, '127.0.0.2');
    open.push(big);
    await big.send();
    const progress = stalledUpload(t.baseUrl, '/api/v1/relay/progress', 20000, '127.0.0.2');
    open.push(progress);
    await progress.send();

    const answer = await big.answer(3000);
    const progressAnswer = await progress.answer(3000);

    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.body)).toEqual({
      error: { message: `Request body too large (limit ${MiB} bytes)`, code: 413 },
    });
    expect(progressAnswer.status).toBe(413);
    expect(JSON.parse(progressAnswer.body)).toEqual({
      error: { message: 'Progress envelope too large', code: 413 },
    });
  });

  it('should hold each forwarded address to its own share when the proxy is trusted, and ignore forwarded headers otherwise', async () => {
    const perAddress = { TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS: String(MiB) };
    t = await createTestApp({ ...perAddress, TOKENPLACE_RELAY_TRUST_PROXY: 'loopback' });
    const as = (ip: string) => ({ 'X-Forwarded-For': ip });
    open.push(...(await stall(t, '127.0.0.2', 1, as('203.0.113.7'))));
    const sameForwarded = await smallPost(t, '127.0.0.3', as('203.0.113.7'));
    const otherForwarded = await smallPost(t, '127.0.0.2', as('203.0.113.8'));
    await t.close();

    t = await createTestApp(perAddress);
    open.push(...(await stall(t, '127.0.0.2', 1, as('203.0.113.7'))));
    const untrusted = await smallPost(t, '127.0.0.2', as('203.0.113.8'));

    expect(sameForwarded.status).toBe(503);
    expect(otherForwarded.status).toBe(400);
    expect(untrusted.status).toBe(503);
  });
});
