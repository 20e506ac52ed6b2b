import type { Browser, BrowserContext, Page, Request } from 'playwright-core';

/** What a page did on the wire and in its console while a test ran. */
export interface Watch {
  requests: Request[];
  cspViolations: string[];
  pageErrors: string[];
}

export interface OpenOptions {
  colorScheme?: 'light' | 'dark';
  viewport?: { width: number; height: number };
  /** Turns the page's CSP (and with it Trusted Types) off, to test the sanitizer on its own. */
  bypassCSP?: boolean;
}

export interface OpenPage {
  context: BrowserContext;
  page: Page;
  watch: Watch;
}

const CSP_MESSAGE =
  /Content Security Policy|Content-Security-Policy|Trusted ?Type|TrustedHTML|TrustedScript/i;

export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1100, height: 900 };

/** Opens the chat page in a fresh context and waits until it can send. */
export async function openChat(
  browser: Browser,
  baseUrl: string,
  options: OpenOptions = {},
): Promise<OpenPage> {
  const context = await browser.newContext({
    colorScheme: options.colorScheme ?? 'light',
    viewport: options.viewport,
    bypassCSP: options.bypassCSP ?? false,
  });
  const page = await context.newPage();
  const watch: Watch = { requests: [], cspViolations: [], pageErrors: [] };
  page.on('request', (r) => watch.requests.push(r));
  page.on('console', (m) => {
    if (CSP_MESSAGE.test(m.text())) {
      watch.cspViolations.push(m.text());
    }
  });
  page.on('pageerror', (e) => watch.pageErrors.push(e.message));
  await page.goto(`${baseUrl}/`);
  await page.locator('#send:not([disabled])').waitFor();
  return { context, page, watch };
}

/** Only the relay's own origin, and the page ran clean under its CSP. */
export function expectCleanRun(watch: Watch, baseUrl: string): void {
  const foreign = watch.requests
    .map((r) => r.url())
    .filter((u) => /^https?:/.test(u) && new URL(u).origin !== baseUrl);
  expect(foreign).toEqual([]);
  expect(watch.requests.filter((r) => !/^https?:/.test(r.url())).map((r) => r.url())).toEqual([]);
  expect(watch.cspViolations).toEqual([]);
  expect(watch.pageErrors).toEqual([]);
}

/** The n-th answer once it is filled in (an answer is `aria-busy` while it is being formatted). */
export function answer(page: Page, n = 0) {
  return page.locator('.msg-assistant:not([aria-busy])').nth(n);
}

/** Types a message and sends it with Enter. */
export async function send(page: Page, text: string): Promise<void> {
  await page.locator('#composer-input').fill(text);
  await page.locator('#composer-input').press('Enter');
}
