import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describeIf, requirement } from '../helpers/requirements';
import { ROOT, commandWorks, run, scratch, writeScratch } from './chart.helper';

/**
 * The built relay (dist/) as the image runs it, without Docker: bubblewrap gives a read-only root,
 * a tmpfs /tmp, UID/GID 1000 and a PID namespace in which node is PID 1 (ops.md §6).
 */
const MAIN = join(ROOT, 'dist', 'main.js');
const METRICS_TOKEN = 'scrape-token';
const bwrapWorks = commandWorks('bwrap', [
  '--ro-bind',
  '/',
  '/',
  '--unshare-user',
  '--uid',
  '1000',
  '--gid',
  '1000',
  'true',
]);
const ready =
  requirement(
    'bubblewrap',
    bwrapWorks,
    'TOKENPLACE_REQUIRE_CHART_TOOLS',
    'apt-get install bubblewrap (and allow user namespaces)',
  ) &&
  requirement(
    'built relay (dist/main.js)',
    existsSync(MAIN),
    'TOKENPLACE_REQUIRE_CHART_TOOLS',
    'run npm run build first',
  );

interface Sandbox {
  child: ChildProcess;
  innerPid: number;
  port: number;
  logs: Array<Record<string, unknown>>;
  waitForLog: (msg: string) => Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

async function startSandboxed(): Promise<Sandbox> {
  const dir = scratch('bwrap');
  // Reports, from inside the sandbox, who node runs as and whether the root and /tmp are writable.
  const probe = writeScratch(
    'bwrap',
    'probe.js',
    [
      "const fs = require('node:fs');",
      'const canWrite = (p) => { try { fs.writeFileSync(p, "x"); fs.unlinkSync(p); return true; } catch (e) { return e.code; } };',
      `console.log(JSON.stringify({ msg: 'sandbox', pid: process.pid, uid: process.getuid(), gid: process.getgid(), root: canWrite(${JSON.stringify(join(ROOT, '.ro-probe'))}), tmp: canWrite('/tmp/probe') }));`,
    ].join('\n'),
  );
  const infoPath = join(dir, 'info.json');
  const infoFd = openSync(infoPath, 'w');
  const child = spawn(
    'bwrap',
    [
      ...['--ro-bind', '/', '/', '--tmpfs', '/tmp', '--dev', '/dev', '--proc', '/proc'],
      // The checkout (and the probe beside it) may itself live under /tmp (CI clones there):
      // bind it back read-only over the fresh tmpfs.
      ...['--ro-bind', ROOT, ROOT, '--ro-bind', dirname(probe), dirname(probe)],
      ...[
        '--unshare-user',
        '--uid',
        '1000',
        '--gid',
        '1000',
        '--unshare-pid',
        '--as-pid-1',
        '--die-with-parent',
      ],
      ...['--info-fd', '3', '--chdir', ROOT],
      process.execPath,
      '--require',
      probe,
      MAIN,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe', infoFd],
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        RELAY_HOST: '127.0.0.1',
        RELAY_PORT: '0',
        TOKENPLACE_LOG_LEVEL: 'info',
        TOKENPLACE_METRICS_TOKEN: METRICS_TOKEN,
        TOKENPLACE_RELAY_DRAIN_SECONDS: '5',
        TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS: '15',
        TOKENPLACE_IMAGE_TAG: 'main-0123abc',
      },
    },
  );
  closeSync(infoFd);
  const logs: Array<Record<string, unknown>> = [];
  const waiters: Array<{ msg: string; resolve: (l: Record<string, unknown>) => void }> = [];
  let buffer = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        for (const w of waiters.filter((x) => x.msg === entry.msg)) {
          w.resolve(entry);
        }
      } catch {
        // not a log line
      }
    }
  });
  const stderr: string[] = [];
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const waitForLog = (msg: string): Promise<Record<string, unknown>> => {
    const seen = logs.find((l) => l.msg === msg);
    if (seen) {
      return Promise.resolve(seen);
    }
    return Promise.race([
      new Promise<Record<string, unknown>>((resolve) => waiters.push({ msg, resolve })),
      exited.then(() => {
        throw new Error(`relay exited before logging "${msg}": ${stderr.join('')}`);
      }),
    ]);
  };
  const listening = await waitForLog('relay listening');
  const info = JSON.parse(readFileSync(infoPath, 'utf8')) as { 'child-pid': number };
  return {
    child,
    innerPid: info['child-pid'],
    port: Number(listening.port),
    logs,
    waitForLog,
    exited,
  };
}

describeIf(ready)('built relay under bubblewrap: read-only root, UID 1000, node as PID 1', () => {
  let box: Sandbox;

  beforeAll(async () => {
    box = await startSandboxed();
  });

  afterAll(() => {
    if (box?.child.exitCode === null) {
      box.child.kill('SIGKILL');
    }
  });

  it('should run node as PID 1 with UID/GID 1000, unable to write the root, able to write /tmp', async () => {
    const sandbox = await box.waitForLog('sandbox');

    expect(sandbox).toMatchObject({ pid: 1, uid: 1000, gid: 1000, root: 'EROFS', tmp: true });
  });

  it('should answer the probes: /livez alive and /healthz ok', async () => {
    const base = `http://127.0.0.1:${box.port}`;

    const livez = await fetch(`${base}/livez`);
    const healthz = await fetch(`${base}/healthz`);

    expect(livez.status).toBe(200);
    expect(await livez.json()).toEqual({ status: 'alive' });
    expect(healthz.status).toBe(200);
    expect(await healthz.json()).toMatchObject({ status: 'ok', store: 'memory' });
  });

  it('should refuse /metrics without the Bearer token and serve exposition promtool accepts with it', async () => {
    const base = `http://127.0.0.1:${box.port}`;

    const anonymous = await fetch(`${base}/metrics`);
    const scraped = await fetch(`${base}/metrics`, {
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    const text = await scraped.text();

    expect(anonymous.status).toBe(401);
    expect(scraped.status).toBe(200);
    expect(text).toContain(
      'tokenplace_build_info{version="main-0123abc",revision="main-0123abc"} 1',
    );
    if (commandWorks('promtool', ['--version'])) {
      const check = run('promtool', ['check', 'metrics'], text);
      expect(check.stdout + check.stderr).toBe('');
      expect(check.status).toBe(0);
    } else {
      requirement('promtool', false, 'TOKENPLACE_REQUIRE_PROMTOOL', 'apt-get install prometheus');
    }
  });

  it('should answer 503 draining during the drain window after SIGTERM, then exit 0', async () => {
    const base = `http://127.0.0.1:${box.port}`;
    expect(spawnSync('kill', ['-TERM', String(box.innerPid)]).status).toBe(0);

    await box.waitForLog('draining');
    const during = await fetch(`${base}/healthz`);
    const livez = await fetch(`${base}/livez`);
    const code = await box.exited;

    expect(during.status).toBe(503);
    expect(during.headers.get('retry-after')).toBe('0');
    expect(await during.json()).toMatchObject({ status: 'draining', details: { shutdown: true } });
    expect(livez.status).toBe(200);
    expect(code).toBe(0);
    expect(box.logs.some((l) => l.msg === 'relay stopped' && l.signal === 'SIGTERM')).toBe(true);
  });
});
