import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { MAIN_JS, startRelayProcess, type RelayProcess } from '../helpers/relay-process';

/** Runs the built relay to its exit; resolves with the exit code, stdout lines and stderr. */
function runToExit(
  env: Record<string, string>,
): Promise<{ code: number | null; lines: Array<Record<string, unknown>>; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN_JS], {
      env: { PATH: process.env.PATH ?? '', TOKENPLACE_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('relay did not exit'));
    }, 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      const lines = stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      resolve({ code, lines, stderr });
    });
  });
}

describe('boot (real process)', () => {
  let relay: RelayProcess | undefined;
  let blocker: Server | undefined;

  afterEach(async () => {
    relay?.child.kill('SIGKILL');
    relay = undefined;
    await new Promise<void>((resolve) => (blocker ? blocker.close(() => resolve()) : resolve()));
    blocker = undefined;
  });

  it('should warn about a misspelt setting, naming the closest variable, and start anyway', async () => {
    relay = await startRelayProcess({ TOKENPLACE_RELAY_STAT_STORE: 'redis' });

    const warnings = relay.logs.filter((l) => l.level === 'warn');
    const listening = relay.logs.find((l) => l.msg === 'relay listening');

    expect(warnings).toEqual([
      expect.objectContaining({
        variable: 'TOKENPLACE_RELAY_STAT_STORE',
        suggestion: 'TOKENPLACE_RELAY_STATE_STORE',
        msg: 'TOKENPLACE_RELAY_STAT_STORE is not a setting of this relay and is ignored; did you mean TOKENPLACE_RELAY_STATE_STORE?',
      }),
    ]);
    expect(listening).toMatchObject({ store: 'memory' });
  });

  it('should say in one line that the port is in use and exit 98, never claiming it started', async () => {
    blocker = createServer();
    const port = await new Promise<number>((resolve) => {
      blocker!.listen(0, '127.0.0.1', () => resolve((blocker!.address() as { port: number }).port));
    });

    const { code, lines, stderr } = await runToExit({
      RELAY_HOST: '127.0.0.1',
      RELAY_PORT: String(port),
    });

    expect(code).toBe(98);
    expect(stderr).toBe('');
    expect(lines.map((l) => l.msg)).not.toContain('relay listening');
    expect(lines.filter((l) => l.level !== 'info')).toEqual([
      expect.objectContaining({
        level: 'fatal',
        code: 'EADDRINUSE',
        port,
        msg: `port ${port} on 127.0.0.1 is already in use (another relay running?); stop it or choose another port with RELAY_PORT or --port`,
      }),
    ]);
  });

  it('should not log success before it listens: before "relay listening" only the memory caps', async () => {
    relay = await startRelayProcess({});

    const info = relay.logs.filter((l) => l.level === 'info').map((l) => l.msg);

    expect(info.slice(0, info.indexOf('relay listening') + 1)).toEqual([
      'memory caps',
      'relay listening',
    ]);
    expect(relay.logs.some((l) => String(l.msg).includes('successfully started'))).toBe(false);
  });
});
