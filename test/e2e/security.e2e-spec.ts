import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { LegacyClientSim, LegacyNodeSim, V1ClientSim, V1NodeSim } from '../helpers/simulators';
import { call, createTestApp } from '../helpers/test-app';

/** Each claim of docs/security.md that a test can prove, proved on the wire. */
describe('security claims (docs/security.md)', () => {
  it('should never write keys, ciphertext, tokens, credentials or bodies to the logs', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
    const t = await createTestApp(
      { TOKENPLACE_LOG_LEVEL: 'trace', TOKEN_PLACE_RELAY_SERVER_TOKEN: 'node-secret-token' },
      undefined,
      logger,
    );
    const v1node = new V1NodeSim(t.baseUrl, { token: 'node-secret-token' });
    const v1client = new V1ClientSim(t.baseUrl);
    const legacyNode = new LegacyNodeSim(t.baseUrl, { token: 'node-secret-token' });
    const legacyClient = new LegacyClientSim(t.baseUrl);

    await v1node.register();
    const sub = await v1client.submit(v1node.key, 'a very private prompt');
    const work = await v1node.take();
    await v1node.control(work!.requestId);
    await v1node.respond(work!);
    await v1client.await(sub.requestId);
    await legacyNode.sink();
    await legacyClient.send(legacyNode.key, [{ role: 'user', content: 'another secret' }]);
    await legacyNode.serveOnce();
    await legacyClient.receive();
    await call(t.baseUrl, 'POST', '/faucet', '{"broken json with secret-body-text');
    await call(
      t.baseUrl,
      'POST',
      '/sink',
      { server_public_key: 'x' },
      { 'X-Relay-Server-Token': 'wrong-token-value' },
    );
    await t.close();
    const log = lines.join('\n');

    expect(lines.filter((l) => l.includes('request completed')).length).toBeGreaterThan(8);
    for (const secret of [
      v1node.key,
      v1client.key,
      legacyNode.key,
      legacyClient.key,
      sub.sealed.ciphertext,
      sub.sealed.cipherkey,
      sub.cancelToken,
      sub.requestId,
      v1node.credential!,
      'node-secret-token',
      'wrong-token-value',
      'secret-body-text',
      legacyClient.lastSent!.ciphertext,
    ]) {
      expect(log).not.toContain(secret);
    }
  });

  it('should return the control credential once and never echo it anywhere', async () => {
    const t = await createTestApp({ TOKENPLACE_RELAY_HEALTH_EXPOSE_KEYS: '1' });
    const node = new V1NodeSim(t.baseUrl);
    const first = await node.register();
    const again = await node.register();

    const outputs = await Promise.all(
      ['/healthz', '/relay/diagnostics', '/metrics', '/api/v1/models'].map((p) =>
        call(t.baseUrl, 'GET', p),
      ),
    );
    await t.close();

    expect(first.body.control_credential).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(again.body.control_credential).toBeUndefined();
    for (const out of outputs) {
      expect(out.text).not.toContain(node.credential!);
    }
  });

  it('should not let another party pop or cancel a request without its client key, request id and cancel proof', async () => {
    const t = await createTestApp();
    const node = new V1NodeSim(t.baseUrl);
    const alice = new V1ClientSim(t.baseUrl);
    const mallory = new V1ClientSim(t.baseUrl);
    await node.register();
    const sub = await alice.submit(node.key, 'hi');

    const popByOther = await mallory.retrieve(sub.requestId);
    const cancelWithoutProof = await mallory.cancel(sub.requestId, sub.cancelToken);
    const cancelWrongProof = await alice.cancel(sub.requestId, 'guess');
    const stillPending = await alice.retrieve(sub.requestId);
    await t.close();

    expect(popByOther.status).toBe(404);
    expect(cancelWithoutProof.status).toBe(403);
    expect(cancelWrongProof.status).toBe(403);
    expect(stillPending.status).toBe(202);
  });

  it('should rotate node tokens from a mounted file without a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-tokens-'));
    const file = join(dir, 'tokens');
    writeFileSync(file, 'old-token\n');
    const t = await createTestApp({ TOKENPLACE_RELAY_SERVER_TOKENS_FILE: file });
    const sink = (token: string) =>
      call(
        t.baseUrl,
        'POST',
        '/sink',
        { server_public_key: 'n' },
        { 'X-Relay-Server-Token': token },
      );
    const before = await sink('old-token');

    // Kubernetes replaces Secret files atomically: write a new file and rename it into place.
    writeFileSync(join(dir, 'tokens.next'), '# rotated\nnew-token\n');
    renameSync(join(dir, 'tokens.next'), file);
    let after = await sink('new-token');
    for (let i = 0; i < 100 && after.status !== 200; i += 1) {
      await new Promise((r) => setTimeout(r, 50));
      after = await sink('new-token');
    }
    const retired = await sink('old-token');
    await t.close();

    expect(before.status).toBe(200);
    expect(after.status).toBe(200);
    expect(retired.status).toBe(401);
  });

  it('should refuse every node when the token file is unreadable at boot (fail closed)', async () => {
    const t = await createTestApp({ TOKENPLACE_RELAY_SERVER_TOKENS_FILE: '/nonexistent/tokens' });

    const res = await call(
      t.baseUrl,
      'POST',
      '/sink',
      { server_public_key: 'n' },
      { 'X-Relay-Server-Token': 'anything' },
    );
    await t.close();

    expect(res.status).toBe(401);
  });

  it('should never send credentialed CORS and keep /metrics behind its Bearer token', async () => {
    const t = await createTestApp({ TOKENPLACE_METRICS_TOKEN: 'scrape-secret' });

    const preflight = await fetch(`${t.baseUrl}/api/v1/relay/requests`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' },
    });
    const nodeRoute = await fetch(`${t.baseUrl}/api/v1/relay/servers/register`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://evil.example' },
    });
    const anonymous = await call(t.baseUrl, 'GET', '/metrics');
    const scraped = await call(t.baseUrl, 'GET', '/metrics', undefined, {
      Authorization: 'Bearer scrape-secret',
    });
    await t.close();

    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-credentials')).toBeNull();
    expect(nodeRoute.headers.get('access-control-allow-origin')).toBeNull();
    expect(anonymous.status).toBe(401);
    expect(anonymous.text).toBe('unauthorized\n');
    expect(scraped.status).toBe(200);
  });
});
