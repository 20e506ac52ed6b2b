import pino from 'pino';
import { call, createTestApp } from '../helpers/test-app';

async function logLines(level: string, paths: string[]): Promise<Array<Record<string, unknown>>> {
  const lines: string[] = [];
  const logger = pino({ level }, { write: (line: string) => void lines.push(line) });
  const t = await createTestApp({ TOKENPLACE_LOG_LEVEL: level }, undefined, logger);
  try {
    for (const path of paths) {
      await call(t.baseUrl, 'GET', path);
    }
  } finally {
    await t.close();
  }
  return lines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === 'request completed');
}

describe('what a newcomer sees in the logs', () => {
  it("should not log the page's once-a-second /relay/diagnostics poll at info", async () => {
    const lines = await logLines('info', [
      '/relay/diagnostics',
      '/relay/diagnostics',
      '/api/v1/meta',
    ]);

    expect(lines.map((l) => l.route)).toEqual(['/api/v1/meta']);
  });

  it('should log /relay/diagnostics at debug', async () => {
    const lines = await logLines('debug', ['/relay/diagnostics']);

    expect(lines).toEqual([
      expect.objectContaining({ level: 20, route: '/relay/diagnostics', status: 200 }),
    ]);
  });
});

/** What the 61st call to a limited route gets under `env` (60/hour is the default limit). */
async function sixtyFirst(
  env: Record<string, string | undefined>,
  headers: Record<string, string> = {},
): Promise<number> {
  const t = await createTestApp({ API_RATE_LIMIT: undefined, API_DAILY_QUOTA: undefined, ...env });
  try {
    let status = 0;
    for (let i = 0; i < 61; i += 1) {
      status = (await call(t.baseUrl, 'GET', '/api/v1/models', undefined, headers)).status;
    }
    return status;
  } finally {
    await t.close();
  }
}

describe('public rate limits in local development and in deployments', () => {
  it('should not limit this machine when the relay listens on loopback only (npm start)', async () => {
    expect(await sixtyFirst({ RELAY_HOST: '127.0.0.1' })).toBe(200);
    expect(await sixtyFirst({ RELAY_HOST: '::1' })).toBe(200);
  });

  it('should still limit requests a proxy on this machine forwarded', async () => {
    expect(
      await sixtyFirst({ RELAY_HOST: '127.0.0.1' }, { 'X-Forwarded-For': '203.0.113.7' }),
    ).toBe(429);
    expect(await sixtyFirst({ RELAY_HOST: '127.0.0.1' }, { Forwarded: 'for=203.0.113.7' })).toBe(
      429,
    );
  });

  it('should limit a relay that listens on every interface, whatever TOKEN_PLACE_ENV says', async () => {
    expect(await sixtyFirst({ RELAY_HOST: '0.0.0.0', TOKEN_PLACE_ENV: 'development' })).toBe(429);
  });

  it('should limit on loopback when a limit is set explicitly or a trusted proxy is configured', async () => {
    expect(await sixtyFirst({ RELAY_HOST: '127.0.0.1', API_RATE_LIMIT: '60/hour' })).toBe(429);
    expect(
      await sixtyFirst({ RELAY_HOST: '127.0.0.1', TOKENPLACE_RELAY_TRUST_PROXY: 'loopback' }),
    ).toBe(429);
  });
});
