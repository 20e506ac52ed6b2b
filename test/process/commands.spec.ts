import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const SCRIPTS = (
  JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  }
).scripts;

function node(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, args, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The bench entry points a newcomer may call (helpers they never call directly are left out). */
const BENCH = readdirSync(join(ROOT, 'bench')).filter(
  (f) =>
    f.endsWith('.mjs') &&
    ![
      'lib.mjs',
      'bare-app.mjs',
      'gateway-floor-app.mjs',
      'hostile-lib.mjs',
      'hostile-nodes.mjs',
    ].includes(f),
);

describe('commands a newcomer types', () => {
  it.each(BENCH)('should print a usage line for bench/%s --help and exit 0', (script) => {
    const res = node([join('bench', script), '--help']);

    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/^usage: /);
    expect(res.stderr).toBe('');
  });

  it('should answer an unknown bench option with the problem and the usage line, exit 2', () => {
    const res = node(['bench/run.mjs', '--no-such-option']);

    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/Unknown option '--no-such-option'/);
    expect(res.stderr).toMatch(/usage: npm run bench/);
  });

  it('should run tests with `npm run test:unit` (unit specs and the in-memory store contract)', () => {
    const args = SCRIPTS['test:unit']?.split(' ').slice(1) ?? [];
    const run = spawnSync(
      process.execPath,
      [join(ROOT, 'node_modules', 'jest', 'bin', 'jest.js'), '--json', ...args],
      { cwd: ROOT, encoding: 'utf8', timeout: 120_000 },
    );
    const report = JSON.parse(run.stdout) as { success: boolean; numPassedTests: number };

    expect(SCRIPTS['test:unit']).toMatch(/^jest /);
    expect(report.success).toBe(true);
    expect(report.numPassedTests).toBeGreaterThan(100);
  });

  it('should build before `npm run smoke` and `npm start`, so an unbuilt clone gets a usage line, not MODULE_NOT_FOUND', () => {
    const usage = node(['dist/smoke/smoke.js']);

    expect(SCRIPTS.presmoke).toBe('npm run build --silent');
    expect(SCRIPTS.prestart).toBe('npm run build');
    expect(usage.status).toBe(2);
    expect(usage.stdout + usage.stderr).toMatch(/usage: smoke <relay-url>/);
  });
});
