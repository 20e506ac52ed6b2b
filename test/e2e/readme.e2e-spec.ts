import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { envTable } from '../../src/config/env-table';
import { createTestApp, type TestApp } from '../helpers/test-app';

interface Step {
  command: string;
  expected: string | null;
}

/** The curl walkthrough: every command of its bash blocks, with the `# answer` line after it. */
function walkthrough(readme: string): Step[] {
  const section = readme.slice(
    readme.indexOf('## A full round trip with curl'),
    readme.indexOf('**A real token.place compute node'),
  );
  const steps: Step[] = [];
  for (const block of section.matchAll(/```bash\n([\s\S]*?)```/g)) {
    const lines = (block[1] as string).split('\n');
    for (let i = 0; i < lines.length; i += 1) {
      let line = lines[i] as string;
      if (line.startsWith('#') || line.trim() === '') {
        continue;
      }
      while (line.endsWith('\\')) {
        i += 1;
        line = `${line.slice(0, -1)}${(lines[i] as string).trim()}`;
      }
      const next = lines[i + 1];
      steps.push({ command: line, expected: next?.startsWith('# ') ? next.slice(2) : null });
    }
  }
  return steps;
}

/**
 * Whether an answer matches the README's comment: the same JSON, where a `…` value stands for any
 * value and a trailing `,…}` for more keys; a status code after the JSON must match too.
 */
function matches(expected: string, actual: string): boolean {
  const status = / (\d{3})$/.exec(expected);
  const actualStatus = / (\d{3})$/.exec(actual.trim());
  if (status && actualStatus?.[1] !== status[1]) {
    return false;
  }
  const strip = (text: string, m: RegExpExecArray | null): string =>
    m ? text.trim().slice(0, -m[0].length) : text.trim();
  let shown = strip(expected, status);
  const open = shown.endsWith(',…}');
  if (open) {
    shown = `${shown.slice(0, -3)}}`;
  }
  const want = JSON.parse(shown.replace(/:…/g, ':"…"')) as Record<string, unknown>;
  const got = JSON.parse(strip(actual, actualStatus)) as Record<string, unknown>;
  const same = (w: unknown, g: unknown): boolean =>
    w === '…' ||
    (typeof w === 'object' && w !== null && typeof g === 'object' && g !== null
      ? Object.keys(w).length === Object.keys(g).length &&
        Object.entries(w).every(([k, v]) => same(v, (g as Record<string, unknown>)[k]))
      : w === g);
  if (!open) {
    return same(want, got);
  }
  return Object.entries(want).every(([k, v]) => same(v, got[k]));
}

describe('README', () => {
  const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');

  it('should open with the two commands', () => {
    const firstBlock = readme.slice(
      readme.indexOf('```'),
      readme.indexOf('```', readme.indexOf('```') + 3),
    );

    expect(firstBlock).toContain('npm ci && npm start');
    expect(firstBlock).toContain('npm test');
  });

  it('should document every environment variable exactly as the schema declares it', () => {
    const section = readme.slice(
      readme.indexOf('<!-- env-table:start -->') + '<!-- env-table:start -->'.length,
      readme.indexOf('<!-- env-table:end -->'),
    );

    expect(section.trim()).toBe(envTable());
  });

  describe('the curl walkthrough, run as written', () => {
    let t: TestApp;

    beforeAll(async () => {
      t = await createTestApp();
    });

    afterAll(async () => {
      await t.close();
    });

    it('should get every answer the README shows', async () => {
      const steps = walkthrough(readme);
      const script = steps
        .map((s) =>
          s.command.startsWith('R=') ? `R=${t.baseUrl}` : `${s.command}; echo; echo '<<end>>'`,
        )
        .join('\n');

      // Asynchronously: the relay answering these curls runs in this very process.
      const run = await promisify(execFile)('bash', ['-c', script], { timeout: 30_000 });
      const answers = run.stdout.split('<<end>>\n').map((a) => a.trim());
      const checked = steps.filter((s) => !s.command.startsWith('R='));
      const mismatches = checked
        .map((s, i) => ({ command: s.command, expected: s.expected, actual: answers[i] ?? '' }))
        .filter((x) => x.expected !== null && !matches(x.expected, x.actual));

      expect(checked.length).toBe(15);
      expect(mismatches).toEqual([]);
    });
  });
});
