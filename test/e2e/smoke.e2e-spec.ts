import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { main, parseArgs, runSmoke, type SmokeReport } from '../../src/cli/smoke';
import { createTestApp, type TestApp } from '../helpers/test-app';

const TOKEN = 'smoke-node-token';
const DIST = join(__dirname, '..', '..', 'dist');
/** The CLI's own entry, and the image's documented path to it (Dockerfile, chart, runbook). */
const COMPILED = [join(DIST, 'cli', 'smoke.js'), join(DIST, 'smoke', 'smoke.js')];

function summary(report: SmokeReport): string[] {
  return report.steps.map((s) => `${s.status} ${s.protocol} ${s.name}`);
}

describe('synthetic end-to-end check (src/cli/smoke.ts)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp({ TOKENPLACE_RELAY_SERVER_TOKEN: TOKEN });
  });

  afterAll(async () => {
    await t.close();
  });

  it('should pass every step of both protocols with the node token and leave no node behind', async () => {
    const lines: string[] = [];

    const report = await runSmoke(parseArgs([t.baseUrl, '--token', TOKEN], {}), (l) =>
      lines.push(l),
    );
    const health = await fetch(`${t.baseUrl}/healthz`).then(
      (r) => r.json() as Promise<{ knownServers: number }>,
    );

    expect(report.ok).toBe(true);
    expect(summary(report)).toEqual([
      'ok relay liveness GET /livez',
      'ok relay readiness GET /healthz',
      'ok legacy register echo node POST /sink',
      'ok legacy client sends POST /faucet',
      'ok legacy node takes work POST /sink and answers POST /source',
      'ok legacy client retrieves and decrypts POST /retrieve',
      'ok legacy unregister echo node POST /unregister',
      'ok api-v1 register echo node POST /api/v1/relay/servers/register',
      'ok api-v1 client submits POST /api/v1/relay/requests',
      'ok api-v1 node polls POST /servers/poll and answers POST /responses',
      'ok api-v1 client retrieves and decrypts POST /responses/retrieve',
      'ok api-v1 unregister echo node POST /servers/unregister',
    ]);
    expect(lines).toHaveLength(13);
    expect(lines[12]).toMatch(/^smoke: PASS .* \(12 steps, 0 skipped\) in \d+ ms$/);
    expect(lines.slice(0, 12).every((l) => / \d+ ms {2}/.test(l))).toBe(true);
    expect(health.knownServers).toBe(0);
  });

  it('should take the node token from TOKEN_PLACE_RELAY_SERVER_TOKENS and exit 0', async () => {
    const lines: string[] = [];

    const code = await main(
      [t.baseUrl],
      { TOKEN_PLACE_RELAY_SERVER_TOKENS: `${TOKEN},other` },
      (l) => lines.push(l),
    );

    expect(code).toBe(0);
    expect(lines[0]).toContain('node token set');
  });

  it('should fail with exit 1 and name the token problem when the node token is wrong', async () => {
    const lines: string[] = [];

    const code = await main([t.baseUrl, '--token', 'wrong'], {}, (l) => lines.push(l));

    expect(code).toBe(1);
    expect(lines.filter((l) => l.startsWith('FAIL'))).toEqual([
      expect.stringMatching(
        /^FAIL legacy register echo node POST \/sink .*answered 401 \(compute-node token missing or wrong/,
      ),
      expect.stringMatching(/^FAIL api-v1 register echo node .*answered 401/),
    ]);
    expect(lines.at(-1)).toMatch(/^smoke: FAIL /);
  });

  it('should exit 2 with the usage when the URL is missing or not http(s)', async () => {
    const lines: string[] = [];

    const missing = await main([], {}, (l) => lines.push(l));
    const ftp = await main(['ftp://example.test'], {}, (l) => lines.push(l));

    expect([missing, ftp]).toEqual([2, 2]);
    expect(lines.join('\n')).toContain('usage: smoke <relay-url>');
  });

  it('should fail the readiness step when the relay is draining', async () => {
    const draining = await createTestApp({ TOKENPLACE_RELAY_SERVER_TOKEN: TOKEN });
    draining.lifecycle.startDraining('test');

    const report = await runSmoke(parseArgs([draining.baseUrl, '--token', TOKEN], {}));
    await draining.close();

    expect(report.ok).toBe(false);
    expect(summary(report)).toEqual([
      'ok relay liveness GET /livez',
      'fail relay readiness GET /healthz',
    ]);
    expect(report.steps[1]?.detail).toMatch(/answered 503.*draining/);
  });

  it('should report the legacy protocol as skipped, and still pass, when legacy routes answer 410', async () => {
    const modern = await createTestApp({
      TOKENPLACE_RELAY_SERVER_TOKEN: TOKEN,
      TOKENPLACE_ENABLE_LEGACY_RELAY_ROUTES: '0',
    });

    const report = await runSmoke(parseArgs([modern.baseUrl, '--token', TOKEN], {}));
    await modern.close();

    expect(report.ok).toBe(true);
    expect(report.steps.find((s) => s.protocol === 'legacy')).toMatchObject({
      status: 'skip',
      detail: expect.stringContaining('legacy routes are disabled on this relay (410)'),
    });
    expect(report.steps.filter((s) => s.protocol === 'api-v1').map((s) => s.status)).toEqual([
      'ok',
      'ok',
      'ok',
      'ok',
      'ok',
    ]);
  });

  (COMPILED.every((file) => existsSync(file)) ? it.each(COMPILED) : it.skip.each(COMPILED))(
    'should run as the compiled CLI (node %s <url>)',
    async (compiled) => {
      const run = promisify(execFile);

      const { stdout } = await run(process.execPath, [compiled, t.baseUrl], {
        env: { PATH: process.env.PATH ?? '', TOKENPLACE_RELAY_SERVER_TOKEN: TOKEN },
      });
      const failed = await run(process.execPath, [compiled, t.baseUrl, '--token', 'nope']).then(
        () => 0,
        (error: { code?: number }) => error.code,
      );

      expect(stdout).toMatch(/smoke: PASS /);
      expect(failed).toBe(1);
    },
  );
});
