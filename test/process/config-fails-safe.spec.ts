import { spawn } from 'node:child_process';
import { get as httpGet } from 'node:http';
import { MAIN_JS, startRelayProcess, type RelayProcess } from '../helpers/relay-process';

/** Runs the built relay until it exits (it must, at once): exit code and stderr. */
function runToExit(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN_JS], {
      env: { PATH: process.env.PATH ?? '', RELAY_PORT: '0', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('relay started instead of refusing its configuration'));
    }, 15_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** Issue 18 item 6: configuration fails safe, and the boot log says how nodes authenticate. */
describe('configuration fails safe (real process)', () => {
  let relay: RelayProcess | undefined;

  afterEach(async () => {
    if (relay && relay.child.exitCode === null) {
      relay.child.kill('SIGKILL');
      await relay.exited;
    }
    relay = undefined;
  });

  it.each([
    ['TOKENPLACE_RELAY_SERVER_TOKEN', ''],
    ['TOKEN_PLACE_RELAY_SERVER_TOKEN', '   '],
    ['TOKEN_PLACE_RELAY_SERVER_TOKENS', ' , '],
    ['TOKENPLACE_RELAY_SERVER_TOKENS', '\n'],
  ])(
    'should refuse %s set to a blank value (exit 78, naming it) instead of running open',
    async (name, value) => {
      const { code, stderr } = await runToExit({ [name]: value });

      expect(code).toBe(78);
      expect(stderr).toContain(`${name} is set but blank`);
    },
  );

  it('should say nodeAuth in the boot line: open without a token, token with one', async () => {
    relay = await startRelayProcess({});
    const open = relay.logs.find((l) => l.msg === 'relay listening');
    relay.child.kill('SIGKILL');
    await relay.exited;
    relay = await startRelayProcess({ TOKENPLACE_RELAY_SERVER_TOKEN: 'node-secret' });
    const token = relay.logs.find((l) => l.msg === 'relay listening');

    expect(open).toMatchObject({ nodeAuth: 'open' });
    expect(token).toMatchObject({ nodeAuth: 'token' });
  });

  it('should warn that node registration is open when listening beyond loopback without a token, and not with one', async () => {
    relay = await startRelayProcess({
      RELAY_HOST: '0.0.0.0',
      API_RATE_LIMIT: 'off',
      API_DAILY_QUOTA: 'off',
    });
    const openWarnings = relay.logs.filter((l) => l.level === 'warn').map((l) => l.msg);
    relay.child.kill('SIGKILL');
    await relay.exited;
    relay = await startRelayProcess({
      RELAY_HOST: '0.0.0.0',
      TOKENPLACE_RELAY_SERVER_TOKEN: 'node-secret',
    });
    const tokenWarnings = relay.logs.filter((l) => l.level === 'warn').map((l) => l.msg);

    expect(openWarnings).toEqual([
      expect.stringMatching(
        /^node registration is open on a non-loopback address: anyone who can reach it can register compute nodes, .*receive \(and answer\) the requests routed to them/,
      ),
      expect.stringMatching(
        /^public rate limits are off \(API_RATE_LIMIT and API_DAILY_QUOTA\) on a non-loopback address/,
      ),
    ]);
    expect(tokenWarnings).toEqual([]);
  });

  it('should warn once when loopback requests exempt from the public limits are addressed to a public name (a proxy without forwarded headers)', async () => {
    relay = await startRelayProcess({});
    const get = (host: string) =>
      new Promise<number>((resolve) => {
        // fetch() will not send a Host header of its own choosing; node:http does.
        httpGet(
          { host: '127.0.0.1', port: relay?.port, path: '/v1/models', headers: { host } },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        ).on('error', () => resolve(0));
      });
    const local = await get(`127.0.0.1:${relay.port}`);
    await new Promise((r) => setTimeout(r, 200));
    const beforeProxy = relay.logs.filter((l) => l.level === 'warn').length;
    const proxied = [await get('staging.token.place'), await get('staging.token.place')];
    await new Promise((r) => setTimeout(r, 300));
    const warnings = relay.logs.filter((l) => l.level === 'warn');

    expect([local, ...proxied]).toEqual([200, 200, 200]);
    expect(beforeProxy).toBe(0);
    expect(warnings).toEqual([
      expect.objectContaining({
        name: 'staging.token.place',
        msg: expect.stringMatching(
          /^public rate limits are off for requests from this machine, but one from loopback was addressed to another name and carried no X-Forwarded-For/,
        ),
      }),
    ]);
  });
});
