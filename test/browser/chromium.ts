import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { requirement } from '../helpers/requirements';

/** Debian's Chromium (never a downloaded browser); CI sets CHROMIUM_PATH. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export const hasChromium = (): boolean =>
  requirement(
    'browser (Chromium)',
    existsSync(CHROMIUM_PATH),
    'TOKENPLACE_REQUIRE_BROWSER',
    `no Chromium at ${CHROMIUM_PATH}: apt-get install chromium, or set CHROMIUM_PATH`,
  );

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true });
}

const ROOT = join(__dirname, '..', '..');
export const BUNDLE = join(ROOT, 'public', 'static', 'app.js');
export const WORKER_BUNDLE = join(ROOT, 'public', 'static', 'markdown-worker.js');
export const ARTIFACTS = join(ROOT, 'artifacts');

function newestSource(dir: string): number {
  return Math.max(
    ...readdirSync(dir, { withFileTypes: true }).map((e) =>
      e.isDirectory() ? newestSource(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs,
    ),
  );
}

/**
 * The page's bundle is build output (`npm run build`). When it is missing or older than its
 * sources, build it here, so a lone `npx jest test/browser` never tests stale code.
 */
export function ensureUiBundle(): void {
  const sources = Math.max(
    newestSource(join(ROOT, 'src', 'ui', 'web')),
    statSync(join(ROOT, 'scripts', 'build-ui.mjs')).mtimeMs,
  );
  const fresh = (file: string): boolean => existsSync(file) && statSync(file).mtimeMs >= sources;
  if (fresh(BUNDLE) && fresh(WORKER_BUNDLE)) {
    return;
  }
  try {
    execFileSync(process.execPath, [join(ROOT, 'scripts', 'build-ui.mjs')], {
      cwd: ROOT,
      stdio: 'pipe',
    });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(
      `the UI bundles (public/static/app.js, markdown-worker.js) are missing and 'npm run build:ui' failed:\n${stderr}`,
    );
  }
}
