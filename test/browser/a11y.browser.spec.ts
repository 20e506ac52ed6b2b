import { readFileSync } from 'node:fs';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { V1ClientSim, V1NodeSim, type V1Work } from '../helpers/simulators';
import { describeIf } from '../helpers/requirements';
import { createTestApp, type TestApp } from '../helpers/test-app';
import { RICH_ANSWER } from './answers';
import { ensureUiBundle, hasChromium, launchChromium } from './chromium';
import { answer, DESKTOP, expectCleanRun, openChat, PHONE, send, type Watch } from './page-harness';

/** axe-core from its npm package (never a CDN), evaluated in the page through the DevTools protocol. */
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'];

interface Violation {
  id: string;
  impact: string | null;
  nodes: string[];
}

async function axe(page: Page): Promise<Violation[]> {
  await page.evaluate(AXE_SOURCE);
  return page.evaluate(async (tags) => {
    const run = (
      window as unknown as {
        axe: {
          run(
            ctx: Document,
            opts: object,
          ): Promise<{
            violations: Array<{
              id: string;
              impact: string | null;
              nodes: Array<{ target: unknown[] }>;
            }>;
          }>;
        };
      }
    ).axe.run;
    const result = await run(document, { runOnly: { type: 'tag', values: tags } });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      nodes: v.nodes.map((n) => n.target.join(' ')),
    }));
  }, AXE_TAGS);
}

const STATES = ['empty', 'after a chat', 'while queued', 'during progress', 'on an error'] as const;
type State = (typeof STATES)[number];
const LAYOUTS = [
  ['light', 'desktop', DESKTOP],
  ['dark', 'desktop', DESKTOP],
  ['light', '390 px', PHONE],
  ['dark', '390 px', PHONE],
] as const;

describeIf(hasChromium())(
  'accessibility in real Chromium (axe-core, WCAG 2.1 AA + best practices)',
  () => {
    let browser: Browser;
    let t: TestApp;
    let context: BrowserContext | undefined;
    let page: Page;
    let watch: Watch;

    beforeAll(async () => {
      ensureUiBundle();
      browser = await launchChromium();
    });

    afterAll(async () => {
      await browser?.close();
    });

    beforeEach(async () => {
      t = await createTestApp();
    });

    afterEach(async () => {
      await context?.close();
      context = undefined;
      await t.close();
    });

    /** Brings the page to `state`; returns the node's pending work when one is left open. */
    async function reach(state: State, node: V1NodeSim): Promise<V1Work | null> {
      switch (state) {
        case 'empty':
          await page.locator('#relay-health', { hasText: 'Relay: OK' }).waitFor();
          return null;
        case 'after a chat': {
          const pending = node.take();
          await send(page, 'How do I sort a list in Python?');
          await node.respond((await pending)!, RICH_ANSWER);
          await answer(page).waitFor();
          return null;
        }
        case 'while queued': {
          const pending = node.take();
          await new V1ClientSim(t.baseUrl).submit(node.key, 'earlier');
          await node.respond((await pending)!);
          await new V1ClientSim(t.baseUrl).submit(node.key, 'ahead');
          await send(page, 'Where am I in line?');
          await page.locator('#progress-detail', { hasText: '1 ahead of you' }).waitFor();
          return null;
        }
        case 'during progress': {
          const pending = node.take();
          await send(page, 'Tell me a story');
          const work = (await pending)!;
          await node.progress(work, {
            schema_version: 1,
            sequence: 1,
            phase: 'prefill',
            total_prompt_tokens: 200,
            processed_prompt_tokens: 50,
            cached_prompt_tokens: 16,
            generated_tokens: 0,
            elapsed_ms: 300,
          });
          await page.locator('#progress-detail', { hasText: 'Prompt: 50 of 200' }).waitFor();
          return work;
        }
        case 'on an error':
          await node.unregister();
          await page.locator('#node-count', { hasText: 'No compute nodes online' }).waitFor();
          await send(page, 'Anyone there?');
          await page.locator('#alert[role="alert"]').waitFor();
          return null;
        default: {
          const never: never = state;
          return never;
        }
      }
    }

    it.each(
      LAYOUTS.flatMap(([scheme, name, viewport]) =>
        STATES.map((s) => [s, scheme, name, viewport] as const),
      ),
    )('should have no violations %s, %s, %s', async (state, colorScheme, _name, viewport) => {
      const node = new V1NodeSim(t.baseUrl);
      await node.register();
      ({ context, page, watch } = await openChat(browser, t.baseUrl, { colorScheme, viewport }));
      await page.locator('#node-count', { hasText: '1 compute node online' }).waitFor();

      const open = await reach(state, node);
      const violations = await axe(page);
      if (open !== null) {
        await node.respond(open);
      }

      expect(violations).toEqual([]);
      expectCleanRun(watch, t.baseUrl);
    });

    /** Presses Tab (or Shift+Tab) until `match` holds for the focused element; at most 80 presses. */
    async function tabTo(describe: string, match: string, backwards = false): Promise<void> {
      for (let i = 0; i < 80; i += 1) {
        const hit = await page.evaluate((selector) => {
          const el = document.activeElement;
          return el !== null && el.matches(selector);
        }, match);
        if (hit) {
          return;
        }
        await page.keyboard.press(backwards ? 'Shift+Tab' : 'Tab');
      }
      throw new Error(`the keyboard never reached ${describe} (${match})`);
    }

    it('should be usable with the keyboard alone: model choice, send, stop, send again, copy an answer and a code block', async () => {
      const node = new V1NodeSim(t.baseUrl, {
        capabilities: {
          ...new V1NodeSim(t.baseUrl).capabilities(),
          supported_model_ids: ['qwen3-8b-instruct', 'llama-3.1-8b-instruct'],
        },
      });
      await node.register();
      ({ context, page, watch } = await openChat(browser, t.baseUrl));
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: t.baseUrl });
      await page.locator('#model option').nth(1).waitFor({ state: 'attached' });
      const models = await page.locator('#model option').allTextContents();

      await tabTo('the model choice', '#model');
      await page.keyboard.press('ArrowDown');
      const chosen = await page.locator('#model').inputValue();
      await tabTo('the message box', '#composer-input', true);
      await page.keyboard.type('Please stop me');
      let pending = node.take();
      await page.keyboard.press('Enter');
      const first = (await pending)!;
      await tabTo('Stop', '#stop');
      await page.keyboard.press('Enter');
      await page.locator('#status-text', { hasText: 'Stopped.' }).waitFor();
      const afterStop = await page.evaluate(() => document.activeElement?.id);
      const restored = await page.locator('#composer-input').inputValue();
      pending = node.take();
      await page.keyboard.press('Enter');
      const second = (await pending)!;
      await node.respond(second, RICH_ANSWER);
      await answer(page).waitFor();
      await tabTo('the answer’s Copy', '[aria-label="Copy this answer"]');
      await page.keyboard.press('Enter');
      await page.locator('#status-text', { hasText: 'Answer copied' }).waitFor();
      const copiedAnswer = await page.evaluate(() => navigator.clipboard.readText());
      await tabTo('the code block’s Copy', '[aria-label="Copy code block 1 (python)"]');
      await page.keyboard.press('Space');
      await page.locator('#status-text', { hasText: 'Code copied' }).waitFor();
      const copiedCode = await page.evaluate(() => navigator.clipboard.readText());
      const live = await page.evaluate(() => {
        const li = document.querySelector('.msg-assistant')!;
        const region = li.closest('[aria-live]');
        return {
          role: region?.getAttribute('role'),
          live: region?.getAttribute('aria-live'),
          busy: li.getAttribute('aria-busy'),
        };
      });

      expect(models).toEqual(['qwen3-8b-instruct', 'llama-3.1-8b-instruct']);
      expect(chosen).toBe('llama-3.1-8b-instruct');
      expect((first.inner.api_v1_request as { model: string }).model).toBe(chosen);
      expect((await node.control(first.requestId)).body.status).toBe('cancelled');
      expect([afterStop, restored]).toEqual(['composer-input', 'Please stop me']);
      expect((second.inner.api_v1_request as { model: string }).model).toBe(chosen);
      expect(copiedAnswer).toBe(RICH_ANSWER);
      expect(copiedCode).toContain('print(sorted(words, key=str.lower))');
      expect(live).toEqual({ role: 'log', live: 'polite', busy: null });
      expectCleanRun(watch, t.baseUrl);
    });
  },
);
