import type { Browser, BrowserContext, Page } from 'playwright-core';
import { V1NodeSim } from '../helpers/simulators';
import { describeIf } from '../helpers/requirements';
import { createTestApp, type TestApp } from '../helpers/test-app';
import { ensureUiBundle, hasChromium, launchChromium } from './chromium';
import { RICH_ANSWER } from './answers';
import {
  answer,
  expectCleanRun,
  openChat,
  send,
  type OpenOptions,
  type Watch,
} from './page-harness';

function log(line: string): void {
  process.stdout.write(`[browser] ${line}\n`);
}

/**
 * Hostile answers: each must show as text or as harmless markup, and nothing in it may run. Every
 * payload that would run reports itself through `window.__pwned` and a request to `/pwned`.
 */
const HOSTILE: Record<string, string> = {
  img_onerror: "Look: <img src=x onerror=\"window.__pwned='img';fetch('/pwned')\">",
  script: '<script>window.__pwned = "script"; fetch("/pwned")</script> done',
  javascript_link: '[click me](javascript:window.__pwned="link";fetch("/pwned"))',
  javascript_entity_link: '[click](jav&#x61;script:window.__pwned=1) and [x](JaVaScRiPt:alert(1))',
  javascript_autolink: '<javascript:window.__pwned=1> and <vbscript:msgbox(1)>',
  javascript_ref_link: '[ref][r]\n\n[r]: javascript:window.__pwned=1',
  data_link: '[d](data:text/html,<script>window.__pwned=1</script>)',
  svg: '<svg onload="window.__pwned=\'svg\'"><script>window.__pwned="svg2"</script></svg>',
  svg_image: '![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9ImFsZXJ0KDEpIi8+)',
  image_tracker: '![pixel](https://tracker.invalid/p.gif?who=me)',
  iframe: '<iframe src="javascript:window.__pwned=1"></iframe><object data="x"></object>',
  html_block: '<div onclick="window.__pwned=1" style="position:fixed;inset:0">cover</div>',
  inline_style: '<span style="color:red">red?</span> <form action="/x"><input name=a></form>',
  meta_refresh: '<meta http-equiv="refresh" content="0;url=javascript:window.__pwned=1">',
  fence_class: '```"><img src=x onerror=window.__pwned=1>\ncode\n```',
  fence_info: '``` onload=alert(1) class=x\ncode\n```',
  link_title: '[t](https://example.com "\\" onmouseover=\\"window.__pwned=1")',
  mathml: '<math><mtext><table><mglyph><style><img src=x onerror=window.__pwned=1>',
};

describeIf(hasChromium())('answers in real Chromium: Markdown, safely', () => {
  let browser: Browser;
  let t: TestApp;
  let context: BrowserContext | undefined;
  let page: Page;
  let watch: Watch;
  let node: V1NodeSim;

  beforeAll(async () => {
    ensureUiBundle();
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
  });

  beforeEach(async () => {
    t = await createTestApp();
    node = new V1NodeSim(t.baseUrl);
    await node.register();
  });

  afterEach(async () => {
    await context?.close();
    context = undefined;
    await t.close();
  });

  /** A relay that takes answers past its default 1 MiB body limit (1 MB of text is ~1.4 MB sealed). */
  async function withLargeBodies(): Promise<void> {
    await t.close();
    t = await createTestApp({ TOKENPLACE_RELAY_MAX_BODY_BYTES: String(4 * 1024 * 1024) });
    node = new V1NodeSim(t.baseUrl);
    await node.register();
  }

  async function open(options: OpenOptions = {}): Promise<void> {
    ({ context, page, watch } = await openChat(browser, t.baseUrl, options));
    await page.locator('#node-count', { hasText: '1 compute node online' }).waitFor();
  }

  /** Sends `prompt`, has the node answer `content`, and waits until the answer is filled in. */
  async function exchange(prompt: string, content: string, n = 0): Promise<void> {
    const pending = node.take();
    await send(page, prompt);
    const res = await node.respond((await pending)!, content);
    if (res.status !== 200) {
      throw new Error(`the relay took no answer: ${res.status} ${res.text.slice(0, 200)}`);
    }
    await answer(page, n).waitFor({ timeout: 20_000 });
  }

  it('should render Markdown: headings from h3, code blocks with their own Copy, inline code, lists, a table, links', async () => {
    await open();
    await context!.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: t.baseUrl });

    await exchange('How do I sort?', RICH_ANSWER);
    const body = answer(page).locator('.msg-content');
    const shape = await body.evaluate((el) => ({
      headings: [...el.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(
        (h) => `${h.tagName}:${h.textContent}`,
      ),
      code: [...el.querySelectorAll('pre code')].map((c) => c.textContent),
      inline: [...el.querySelectorAll(':not(pre) > code')].map((c) => c.textContent),
      strong: el.querySelector('strong')?.textContent,
      em: el.querySelector('em')?.textContent,
      ol: [...el.querySelectorAll('ol > li')].length,
      nested: el.querySelectorAll('ol li ul li').length,
      table: [...el.querySelectorAll('table tr')].map((tr) =>
        [...tr.children].map((c) => `${c.tagName}.${c.className}:${c.textContent}`).join('|'),
      ),
      links: [...el.querySelectorAll('a')].map((a) => ({
        href: a.getAttribute('href'),
        target: a.getAttribute('target'),
        rel: a.getAttribute('rel'),
        text: a.textContent,
      })),
      copyLabels: [...el.querySelectorAll('.code-block .copy')].map((b) =>
        b.getAttribute('aria-label'),
      ),
      langs: [...el.querySelectorAll('.code-lang')].map((s) => s.textContent),
      h3Size: getComputedStyle(el.querySelector('h3')!).fontSize,
      bodySize: getComputedStyle(el).fontSize,
      bold: el.querySelectorAll('b').length,
    }));
    await page.locator('.code-block .copy').first().click();
    await page.locator('#status-text', { hasText: 'Code copied to the clipboard.' }).waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());

    expect(shape.headings).toEqual(['H3:Sorting in Python', 'H4:Options', 'H5:Deep heading']);
    expect(shape.code).toEqual([
      'words = ["pear", "Apple", "fig"]\nprint(sorted(words, key=str.lower))  # <b>not bold</b>\n',
      'plain block\n',
    ]);
    expect(shape.bold).toBe(0);
    expect(shape.inline).toEqual(
      expect.arrayContaining(['sorted()', 'list.sort()', 'key', 'True', 'None']),
    );
    expect([shape.strong, shape.em]).toEqual(['new', 'in place']);
    expect([shape.ol, shape.nested]).toEqual([2, 1]);
    expect(shape.table).toEqual([
      'TH.align-left:call|TH.align-center:returns|TH.align-right:stable',
      'TD.align-left:sorted(xs)|TD.align-center:a new list|TD.align-right:yes',
      'TD.align-left:xs.sort()|TD.align-center:None|TD.align-right:yes',
    ]);
    expect(shape.links).toEqual([
      {
        href: 'https://docs.python.org/3/howto/sorting.html',
        target: '_blank',
        rel: 'noopener noreferrer',
        text: 'the Python docs',
      },
      {
        href: 'https://example.com/page',
        target: '_blank',
        rel: 'noopener noreferrer',
        text: 'https://example.com/page',
      },
    ]);
    expect(shape.copyLabels).toEqual(['Copy code block 1 (python)', 'Copy code block 2']);
    expect(shape.langs).toEqual(['python', 'code']);
    expect(parseFloat(shape.h3Size)).toBeLessThanOrEqual(parseFloat(shape.bodySize) * 1.2);
    expect(copied).toBe(shape.code[0]);
    expectCleanRun(watch, t.baseUrl);
  });

  it("should keep the user's own message as plain text, Markdown and HTML alike", async () => {
    await open();
    const typed = '# not a heading\n**not bold** <b>not bold</b> [x](https://example.com)';

    await exchange(typed, 'ok');
    const user = page.locator('.msg-user .msg-content');

    expect(await user.textContent()).toBe(typed);
    expect(await user.evaluate((el) => el.children.length)).toBe(0);
    expectCleanRun(watch, t.baseUrl);
  });

  it.each([
    ['under the page CSP and Trusted Types', false],
    ['with the CSP turned off (the sanitizer alone)', true],
  ])('should run nothing from hostile answers, %s', async (_label, bypassCSP) => {
    await open({ bypassCSP });

    const shown: Record<string, string> = {};
    for (const [i, [name, content]] of Object.entries(HOSTILE).entries()) {
      await exchange(name, content, i);
      shown[name] = (await answer(page, i).locator('.msg-content').textContent()) ?? '';
    }
    const dom = await page.locator('#log').evaluate((log) => ({
      pwned: (window as unknown as { __pwned?: unknown }).__pwned ?? null,
      elements: [
        ...new Set([...log.querySelectorAll('.msg-content *')].map((e) => e.tagName.toLowerCase())),
      ].sort(),
      handlers: [...log.querySelectorAll('*')].flatMap((e) =>
        [...e.attributes].filter((a) => /^on/i.test(a.name)).map((a) => a.name),
      ),
      styled: log.querySelectorAll('[style]').length,
      hrefs: [...log.querySelectorAll('a')].map((a) => a.getAttribute('href') ?? ''),
    }));

    expect(dom.pwned).toBeNull();
    expect(watch.requests.filter((r) => r.url().includes('pwned'))).toEqual([]);
    expect(dom.handlers).toEqual([]);
    expect(dom.styled).toBe(0);
    expect(
      dom.elements.filter(
        (tag) => !['p', 'a', 'code', 'pre', 'div', 'span', 'button'].includes(tag),
      ),
    ).toEqual([]);
    expect(dom.hrefs.filter((h) => !/^https:\/\//.test(h))).toEqual([]);
    expect(shown.img_onerror).toContain('<img src=x onerror=');
    expect(shown.script).toContain('<script>window.__pwned = "script"; fetch("/pwned")</script>');
    expect(shown.svg).toContain('<svg onload=');
    expect(shown.image_tracker).toBe('Image: pixel');
    expect(shown.javascript_link).toContain('[click me](javascript:');
    expectCleanRun(watch, t.baseUrl);
  });

  it('should stay responsive while 1 MB of Markdown is formatted, and show all of it', async () => {
    await withLargeBodies();
    await open();
    const unit = `${RICH_ANSWER}\n\n`;
    const big = unit.repeat(Math.ceil(1_000_000 / unit.length));
    await page.evaluate(() => {
      const w = window as unknown as { __gaps: number[] };
      w.__gaps = [];
      let last = performance.now();
      const tick = (): void => {
        const now = performance.now();
        w.__gaps.push(now - last);
        last = now;
        setTimeout(tick, 10);
      };
      setTimeout(tick, 10);
    });
    const pending = node.take();
    await send(page, 'Write a lot');
    const started = Date.now();
    await node.respond((await pending)!, big);

    // Type while the answer is being filled in.
    await page.locator('.msg-assistant[aria-busy] .md-part').first().waitFor({ timeout: 20_000 });
    const typedAt = Date.now();
    await page.locator('#composer-input').fill('still typing');
    const typing = Date.now() - typedAt;
    const busyAfterTyping = await page.locator('.msg-assistant[aria-busy]').count();
    await answer(page).waitFor({ timeout: 60_000 });
    const elapsed = Date.now() - started;
    const result = await page.evaluate(() => {
      const gaps = (window as unknown as { __gaps: number[] }).__gaps;
      const el = document.querySelector('.msg-assistant .msg-content')!;
      return {
        maxGap: Math.max(...gaps),
        blocks: el.querySelectorAll('.code-block').length,
        tables: el.querySelectorAll('table').length,
        text: el.textContent?.length ?? 0,
        note: document.querySelector('.msg-assistant .msg-note')?.textContent ?? '',
      };
    });

    const copies = big.length / unit.length;
    expect(result.note).not.toContain('plain text');
    expect([result.blocks, result.tables]).toEqual([2 * copies, copies]);
    expect(busyAfterTyping).toBe(1);
    expect(await page.locator('#composer-input').inputValue()).toBe('still typing');
    expect(typing).toBeLessThan(1000);
    expect(result.maxGap).toBeLessThan(2000);
    expectCleanRun(watch, t.baseUrl);
    log(
      `1 MB answer (${big.length} chars): decrypted and formatted in ${elapsed} ms, longest main-thread gap ${result.maxGap.toFixed(0)} ms, typing while it filled in ${typing} ms`,
    );
  });

  it.each([
    ['blockquotes 10 000 deep', '>'.repeat(10_000) + ' deep'],
    ['lists 10 000 deep', '- '.repeat(10_000) + 'deep'],
    ['brackets 100 000 deep', '['.repeat(100_000) + 'x' + ']'.repeat(100_000)],
    ['emphasis 200 000 long', '*a '.repeat(200_000)],
  ])('should survive huge nesting: %s', async (_label, content) => {
    await open();

    await exchange('nest', content);
    const depth = await answer(page)
      .locator('.msg-content')
      .evaluate((el) => {
        let max = 0;
        const walk = (n: Element, d: number): void => {
          max = Math.max(max, d);
          for (const c of n.children) {
            walk(c, d + 1);
          }
        };
        walk(el, 0);
        return max;
      });

    expect(depth).toBeLessThanOrEqual(120);
    expect(await page.locator('#send:not([disabled])').count()).toBe(1);
    expectCleanRun(watch, t.baseUrl);
  });

  it.each([
    [
      'a worker that never answers',
      'formatting took too long',
      { status: 200, contentType: 'text/javascript', body: 'onmessage = () => {};' },
    ],
    ['a worker script that is missing', 'formatting failed', { status: 404, body: 'gone' }],
  ])('should show the answer as plain text, and say so, with %s', async (_label, reason, reply) => {
    await open();
    await context!.route('**/static/markdown-worker.js', (route) => route.fulfill(reply));
    const content = '**bold** and <b>tags</b>';

    const started = Date.now();
    await exchange('plain please', content);
    const elapsed = Date.now() - started;
    const note = await answer(page).locator('.msg-note').textContent();
    const body = answer(page).locator('.msg-content');

    expect(note).toContain(`shown as plain text (${reason})`);
    expect(await body.textContent()).toBe(content);
    expect(await body.evaluate((el) => el.children.length)).toBe(0);
    expectCleanRun(watch, t.baseUrl);
    log(`answer shown as plain text with ${_label} after ${elapsed} ms`);
  });

  it('should show answers as plain text, and say so, when the CSP refuses the page its policies', async () => {
    await open();
    // A proxy that rewrote the CSP to allow no Trusted Types policy at all.
    await page.route('**/', async (route) => {
      const response = await route.fetch();
      const csp = (response.headers()['content-security-policy'] ?? '').replace(
        /trusted-types [^;]*/,
        "trusted-types 'none'",
      );
      await route.fulfill({
        response,
        headers: { ...response.headers(), 'content-security-policy': csp },
      });
    });
    await page.reload();
    await page.locator('#send:not([disabled])').waitFor();
    await page.locator('#node-count', { hasText: '1 compute node online' }).waitFor();
    watch.cspViolations.length = 0;
    const content = '**bold** <img src=x onerror=alert(1)>';

    await exchange('plain please', content);
    const note = await answer(page).locator('.msg-note').textContent();
    const body = answer(page).locator('.msg-content');

    expect(note).toContain('shown as plain text (formatting is unavailable)');
    expect(await body.textContent()).toBe(content);
    expect(await body.evaluate((el) => el.children.length)).toBe(0);
  });
});
