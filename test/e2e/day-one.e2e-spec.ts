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
