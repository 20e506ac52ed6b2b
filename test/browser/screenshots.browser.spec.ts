import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { V1NodeSim } from '../helpers/simulators';
import { describeIf } from '../helpers/requirements';
import { createTestApp, type TestApp } from '../helpers/test-app';
import { RICH_ANSWER } from './answers';
import { ARTIFACTS, ensureUiBundle, hasChromium, launchChromium } from './chromium';
import { answer, expectCleanRun, openChat, send } from './page-harness';
import {
  MANIFEST,
  pngSize,
  readManifest,
  SCREENSHOT_DIR,
  SCREENSHOTS,
  screenshotSources,
  type Manifest,
} from './screenshots';

/**
 * Takes the screenshots of docs/ui.md: the page after a chat with Markdown and code, light and
 * dark. Always into artifacts/; into docs/img/ too when the page's sources changed since the
 * recorded ones, except under CI (there test/ui/screenshots.spec.ts must see what was committed).
 */
describeIf(hasChromium())('docs screenshots from real Chromium', () => {
  let browser: Browser;
  let t: TestApp;

  beforeAll(async () => {
    ensureUiBundle();
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await launchChromium();
    t = await createTestApp();
  });

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it('should take the page after a chat with Markdown and code, light and dark', async () => {
    const shots: Record<string, Buffer> = {};
    for (const [file, colorScheme] of [
      [SCREENSHOTS[0], 'light'],
      [SCREENSHOTS[1], 'dark'],
    ] as const) {
      const node = new V1NodeSim(t.baseUrl);
      await node.register();
      const { context, page, watch } = await openChat(browser, t.baseUrl, {
        colorScheme,
        viewport: { width: 900, height: 1000 },
      });
      await page.locator('#node-count', { hasText: '1 compute node online' }).waitFor();
      await page.locator('#relay-health', { hasText: 'Relay: OK' }).waitFor();
      const pending = node.take();
      await send(page, 'How do I sort a list of words in Python, ignoring case?');
      await node.respond((await pending)!, RICH_ANSWER);
      await answer(page).waitFor();
      // The whole chat in one viewport (the composer is sticky, a full-page shot would cover the
      // answer with it), and no focus ring on the message box.
      const height = await page.evaluate(() => {
        (document.activeElement as HTMLElement | null)?.blur();
        return document.documentElement.scrollHeight;
      });
      await page.setViewportSize({ width: 900, height });
      shots[file] = await page.screenshot({ path: join(ARTIFACTS, file) });
      expectCleanRun(watch, t.baseUrl);
      await context.close();
      await node.unregister();
    }

    const sources = screenshotSources();
    const recorded = readManifest();
    const write = process.env.CI !== 'true' && recorded?.sources !== sources.hash;
    if (write) {
      mkdirSync(SCREENSHOT_DIR, { recursive: true });
      for (const [file, bytes] of Object.entries(shots)) {
        writeFileSync(join(SCREENSHOT_DIR, file), bytes);
      }
      const manifest: Manifest = {
        sources: sources.hash,
        files: sources.files,
        screenshots: Object.fromEntries(
          Object.entries(shots).map(([file, bytes]) => [file, pngSize(bytes)]),
        ),
      };
      writeFileSync(MANIFEST, `${JSON.stringify(manifest, null, 2)}\n`);
      process.stdout.write(
        `[browser] docs/img screenshots retaken (sources ${sources.hash.slice(0, 12)})\n`,
      );
    }

    for (const file of SCREENSHOTS) {
      const size = pngSize(shots[file]!);
      expect(size.width).toBe(900);
      expect(size.height).toBeGreaterThan(1000);
    }
    if (write) {
      expect(
        readFileSync(join(SCREENSHOT_DIR, SCREENSHOTS[0])).equals(shots[SCREENSHOTS[0]]!),
      ).toBe(true);
    }
  });
});
