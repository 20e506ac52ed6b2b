import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { DemoNode, MOCK_REPLIES, newDemoNodeKey } from '../../src/demo/demo.node';
import { RegistryService } from '../../src/registry/registry.service';
import { HeadNodeSim, simulatedAnswer, V1ClientSim, V1NodeSim } from '../helpers/simulators';
import { describeIf } from '../helpers/requirements';
import { call, createTestApp, type TestApp } from '../helpers/test-app';
import { ARTIFACTS, ensureUiBundle, hasChromium, launchChromium } from './chromium';
import {
  expectCleanRun as expectClean,
  openChat,
  type OpenOptions,
  type Watch,
} from './page-harness';

function log(line: string): void {
  process.stdout.write(`[browser] ${line}\n`);
}

describeIf(hasChromium())('browser chat in real Chromium', () => {
  let browser: Browser;
  let t: TestApp;
  let context: BrowserContext;
  let page: Page;
  let watch: Watch;

  beforeAll(async () => {
    ensureUiBundle();
    mkdirSync(ARTIFACTS, { recursive: true });
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
    await t.close();
  });

  async function open(options: OpenOptions = {}) {
    ({ context, page, watch } = await openChat(browser, t.baseUrl, options));
  }

  function expectCleanRun(): void {
    expectClean(watch, t.baseUrl);
  }

  async function nodeCount(text: string): Promise<void> {
    await page.locator('#node-count', { hasText: text }).waitFor();
  }

  it.each(['oaep', 'pkcs1'] as const)(
    'should send a message and show the answer a %s-wrapping node sent, decrypted',
    async (replyPadding) => {
      const node = new V1NodeSim(t.baseUrl, { replyPadding });
      await node.register();
      await open();
      await nodeCount('1 compute node online');
      const pending = node.take();

      await page.locator('#composer-input').fill('Hello, token.place');
      const sentAt = Date.now();
      await page.locator('#composer-input').press('Enter');
      const work = await pending;
      await node.respond(work!);
      const answer = page.locator('.msg-assistant:not([aria-busy]) .msg-content');
      await answer.waitFor();
      const elapsed = Date.now() - sentAt;

      expect(await answer.textContent()).toBe(
        simulatedAnswer([{ role: 'user', content: 'Hello, token.place' }]),
      );
      expect(await page.locator('.msg-user .msg-content').textContent()).toBe('Hello, token.place');
      expect(await page.locator('.msg-assistant .msg-note').textContent()).toBe(
        `Decrypted in this tab · node ${createHash('sha256').update(node.key).digest('hex').slice(0, 12)} · key wrap ${replyPadding === 'pkcs1' ? 'PKCS#1 v1.5' : 'RSA-OAEP'} · 8 tokens`,
      );
      expect(await page.locator('#status-text').textContent()).toBe(
        'Answer received and decrypted.',
      );
      expect(await page.locator('#composer-input').inputValue()).toBe('');
      expect(work!.raw.client_public_key).toMatch(/^[A-Za-z0-9+/]+=*$/);
      expectCleanRun();
      log(`send → decrypted answer on screen (${replyPadding} reply): ${elapsed} ms`);
    },
  );

  it('should chat with the in-process demo compute node (--use_mock_llm)', async () => {
    // As main.ts does for `--use_mock_llm`: the demo node's key is marked before it registers.
    const key = newDemoNodeKey();
    t.app.get(RegistryService).markFallback((await key).publicKeyB64);
    const demo = new DemoNode({ baseUrl: t.baseUrl, token: null, key });
    await demo.start();
    await open();
    await nodeCount('1 compute node online (the demo node: mock answers)');

    await page.locator('#composer-input').fill('What is the capital of France?');
    await page.locator('#composer-input').press('Enter');
    const answer = page.locator('.msg-assistant:not([aria-busy]) .msg-content');
    await answer.waitFor();
    const text = await answer.textContent();
    const note = await page.locator('.msg-assistant .msg-note').textContent();
    await demo.stop();

    expect(MOCK_REPLIES).toContain(text);
    expect(note).toContain('Decrypted in this tab');
    expect(demo.answered).toBe(1);
    expectCleanRun();
  });

  it('should hold a conversation, keep Shift+Enter as a newline, copy an answer and clear', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();
    await open();
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: t.baseUrl });
    await nodeCount('1 compute node online');
    const input = page.locator('#composer-input');

    let pending = node.take();
    await input.fill('first line');
    await input.press('Shift+Enter');
    await input.pressSequentially('second line');
    await input.press('Enter');
    let work = await pending;
    await node.respond(work!);
    await page.locator('.msg-assistant:not([aria-busy])').first().waitFor();
    pending = node.take();
    await input.fill('And a follow-up?');
    await page.locator('#send').click();
    const focusWhileBusy = await page.evaluate(() => document.activeElement?.id);
    work = await pending;
    await node.respond(work!);
    await page.locator('.msg-assistant:not([aria-busy])').nth(1).waitFor();
    const focusAfter = await page.evaluate(() => document.activeElement?.id);
    await page.setViewportSize({ width: 1100, height: 900 });
    await page.screenshot({ path: join(ARTIFACTS, 'ui-chat.png') });
    await page.locator('.msg-assistant .copy').nth(1).click();
    await page.locator('#status-text', { hasText: 'Answer copied' }).waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());

    expect(await page.locator('.msg-user .msg-content').first().textContent()).toBe(
      'first line\nsecond line',
    );
    expect((work!.inner.api_v1_request as { messages: unknown }).messages).toEqual([
      { role: 'user', content: 'first line\nsecond line' },
      {
        role: 'assistant',
        content: simulatedAnswer([{ role: 'user', content: 'first line\nsecond line' }]),
      },
      { role: 'user', content: 'And a follow-up?' },
    ]);
    expect(copied).toBe(simulatedAnswer([{ role: 'user', content: 'And a follow-up?' }]));
    expect([focusWhileBusy, focusAfter]).toEqual(['stop', 'composer-input']);

    await page.locator('#clear').click();

    expect(await page.locator('#log li').count()).toBe(0);
    expect(await page.locator('#empty-note').isVisible()).toBe(true);
    expectCleanRun();
  });

  it("should hold a 3-message conversation with today's node silent for its whole lease after each answer", async () => {
    await t.close();
    t = await createTestApp({
      TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '2',
      TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '2',
      TOKENPLACE_RELAY_NODE_LAPSE_GRACE_SECONDS: '3',
      TOKENPLACE_RELAY_V1_WORK_PING_HINT: 'false',
    });
    const stop = new AbortController();
    const node = new HeadNodeSim(t.baseUrl);
    void node.run(stop.signal).catch(() => undefined);
    await node.registered;
    await open();
    await nodeCount('1 compute node online');
    const input = page.locator('#composer-input');
    const prompts = ['First question', 'Second question', 'Third question'];
    const latencies: number[] = [];

    try {
      for (const [i, prompt] of prompts.entries()) {
        await page.locator('#send:not([disabled])').waitFor();
        const sentAt = Date.now();
        await input.fill(prompt);
        await input.press('Enter');
        await page
          .locator('.msg-assistant .msg-content')
          .nth(i)
          .filter({ hasText: simulatedAnswer([{ role: 'user', content: prompt }]) })
          .waitFor({ timeout: 20_000 });
        latencies.push(Date.now() - sentAt);
      }
    } finally {
      stop.abort();
    }

    expect(
      await page.locator('.msg-assistant:not([aria-busy]) .msg-content').allTextContents(),
    ).toEqual(prompts.map((p) => simulatedAnswer([{ role: 'user', content: p }])));
    expect(node.answered).toHaveLength(3);
    expect(
      node.events.filter((e) => e.route === '/servers/register').length,
    ).toBeGreaterThanOrEqual(3);
    expect(await page.locator('.msg-failed').count()).toBe(0);
    expectCleanRun();
    log(`3-message conversation with a node silent for its lease: ${latencies.join(' / ')} ms`);
  });

  it('should show encrypted progress: phases, and a determinate bar during prefill', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();
    await open();
    await nodeCount('1 compute node online');
    const pending = node.take();
    await page.locator('#composer-input').fill('Tell me a story');
    await page.locator('#composer-input').press('Enter');
    const work = (await pending)!;
    const progress = {
      schema_version: 1,
      cached_prompt_tokens: 16,
      generated_tokens: 0,
    };

    await node.progress(work, {
      ...progress,
      sequence: 1,
      phase: 'prefill',
      total_prompt_tokens: 200,
      processed_prompt_tokens: 50,
      elapsed_ms: 300,
    });
    await page
      .locator('#progress-detail', { hasText: 'Prompt: 50 of 200 tokens, 16 cached' })
      .waitFor();
    const bar = await page
      .locator('#progress')
      .evaluate((p: HTMLProgressElement) => ({ value: p.value, max: p.max, position: p.position }));
    const prefillStatus = await page.locator('#status-text').textContent();
    await page.screenshot({ path: join(ARTIFACTS, 'ui-progress.png') });
    await node.progress(work, {
      ...progress,
      sequence: 2,
      phase: 'generating',
      total_prompt_tokens: 200,
      processed_prompt_tokens: 200,
      generated_tokens: 12,
      elapsed_ms: 900,
    });
    await page.locator('#progress-detail', { hasText: 'Generated 12 tokens' }).waitFor();
    const generatingStatus = await page.locator('#status-text').textContent();
    const indeterminate = await page
      .locator('#progress')
      .evaluate((p: HTMLProgressElement) => p.position);
    await node.respond(work);
    await page.locator('.msg-assistant:not([aria-busy])').waitFor();

    expect(bar).toEqual({ value: 50, max: 200, position: 0.25 });
    expect(prefillStatus).toBe('The compute node is reading the conversation…');
    expect(generatingStatus).toBe('The compute node is writing the answer…');
    expect(indeterminate).toBe(-1);
    expect(await page.locator('#progress-row').isHidden()).toBe(true);
    expectCleanRun();
  });

  it('should say where the message waits in line and about how long, then show progress once the node starts', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();
    const [earlier, first, second] = [0, 1, 2].map(() => new V1ClientSim(t.baseUrl));
    // The node has answered once (it has a service time), and two requests are ahead in line.
    let pending = node.take();
    await earlier!.submit(node.key, 'an earlier question');
    await node.respond((await pending)!);
    await first!.submit(node.key, 'first in line');
    await second!.submit(node.key, 'second in line');
    await open();
    await nodeCount('1 compute node online');

    await page.locator('#composer-input').fill('Where am I in line?');
    await page.locator('#composer-input').press('Enter');
    const detail = page.locator('#progress-detail');
    await detail.filter({ hasText: '2 ahead of you' }).waitFor();
    const twoAhead = await detail.textContent();
    const twoAheadStatus = await page.locator('#status-text').textContent();
    await page.screenshot({ path: join(ARTIFACTS, 'ui-queued.png') });
    await node.take();
    await detail.filter({ hasText: '1 ahead of you' }).waitFor();
    const oneAhead = await detail.textContent();
    await node.take();
    pending = node.take();
    const work = (await pending)!;
    await node.progress(work, {
      schema_version: 1,
      sequence: 1,
      phase: 'generating',
      total_prompt_tokens: 20,
      processed_prompt_tokens: 20,
      cached_prompt_tokens: 0,
      generated_tokens: 3,
      elapsed_ms: 100,
    });
    await detail.filter({ hasText: 'Generated 3 tokens' }).waitFor();
    const started = await page.locator('#status-text').textContent();
    await node.respond(work);
    await page.locator('.msg-assistant:not([aria-busy])').waitFor();

    expect(twoAhead).toMatch(/^2 ahead of you · about \d+ s$/);
    expect(twoAheadStatus).toBe('Waiting in line at the compute node: 2 ahead of you.');
    expect(oneAhead).toMatch(/^1 ahead of you · about \d+ s$/);
    expect(started).toBe('The compute node is writing the answer…');
    expect(await page.locator('#progress-row').isHidden()).toBe(true);
    expectCleanRun();
    log(`queued: "${twoAhead}", then "${oneAhead}"`);
  });

  it('should cancel with proof when Stop is pressed, and the node should see it cancelled', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();
    await open();
    await nodeCount('1 compute node online');
    const pending = node.take();
    await page.locator('#composer-input').fill('Actually, stop');
    await page.locator('#composer-input').press('Enter');
    const work = (await pending)!;

    await page.locator('#stop:not([disabled])').click();
    await page.locator('#status-text', { hasText: 'Stopped.' }).waitFor();
    const control = await node.control(work.requestId);

    expect(await page.locator('#status-text').textContent()).toBe(
      'Stopped. The relay confirmed the request is cancelled.',
    );
    expect(control.body.status).toBe('cancelled');
    expect(await page.locator('.msg-user.msg-failed').count()).toBe(1);
    expect(await page.locator('#composer-input').inputValue()).toBe('Actually, stop');
    expect(await page.locator('#stop').isDisabled()).toBe(true);
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('composer-input');
    expectCleanRun();
  });

  it('should cancel the request when the tab goes away', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();
    await open();
    await nodeCount('1 compute node online');
    const pending = node.take();
    await page.locator('#composer-input').fill('Leaving now');
    await page.locator('#composer-input').press('Enter');
    const work = (await pending)!;
    await page.locator('#status-text', { hasText: 'Waiting for the compute node' }).waitFor();

    await page.goto('about:blank');
    // A held retrieve for the page's request returns the moment the cancellation lands.
    const ended = await call(
      t.baseUrl,
      'POST',
      '/api/v1/relay/responses/retrieve',
      { client_public_key: work.clientKey, request_id: work.requestId },
      { Prefer: 'wait=8' },
    );
    const control = await node.control(work.requestId);

    expect(ended.status).toBe(410);
    expect(ended.body).toMatchObject({
      error: { status: 'cancelled', reason: 'requester_cancelled' },
    });
    expect(control.body.status).toBe('cancelled');
  });

  it('should say that no compute node is online, and why a message was not answered', async () => {
    await open();
    await nodeCount('No compute nodes online');

    await page.locator('#composer-input').fill('Anyone there?');
    await page.locator('#composer-input').press('Enter');
    const alert = page.locator('#alert[role="alert"]');
    await alert.waitFor();

    expect(await alert.textContent()).toContain(
      'No compute nodes are connected to this relay right now',
    );
    expect(await alert.textContent()).toContain('npm start -- --use_mock_llm');
    expect(await page.locator('#relay-health').textContent()).toBe('Relay: OK');
    expect(await page.locator('#composer-input').inputValue()).toBe('Anyone there?');
    expectCleanRun();
  });

  it('should say what it cannot talk to: a node whose key the relay found unusable, a legacy node', async () => {
    const refused = await call(t.baseUrl, 'POST', '/api/v1/relay/servers/register', {
      server_public_key: 'N1',
      capabilities: { supported_model_ids: ['qwen3-8b-instruct'] },
    });
    // A record made before registration checked keys, once the gateway found it unusable.
    await t.store.upsertNode({
      nodeId: 'N1',
      dialect: 'v1',
      capabilities: {
        api_version: 'v1',
        supported_model_ids: ['qwen3-8b-instruct'],
        active_context_tier: '8k-fast',
        maximum_total_context_tokens: 8192,
        default_output_token_reservation: 1024,
        maximum_output_tokens: 8192,
        max_concurrency: 1,
        backend_class: 'unknown',
      },
      pollingUntil: t.clock.now() + 600_000,
      now: t.clock.now(),
    });
    await t.store.markKeyUnusable('N1', t.clock.now());
    await open();
    await nodeCount('No compute node this page can use: 1 node with a key this page cannot use');
    await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'NODE' });
    await nodeCount(
      'No compute node this page can use: 1 node with a key this page cannot use, 1 legacy /sink node (this page speaks API v1 only)',
    );

    await page.locator('#composer-input').fill('Hello?');
    await page.locator('#composer-input').press('Enter');
    const alert = page.locator('#alert[role="alert"]');
    await alert.waitFor();
    const real = new V1NodeSim(t.baseUrl);
    await real.register();
    await nodeCount('1 compute node online; also 1 node with a key this page cannot use');

    expect(refused.status).toBe(400);
    expect(await alert.textContent()).toContain('No compute nodes are connected');
    expectCleanRun();
  });

  it('should fit a phone screen and follow a dark colour scheme', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();
    await open({ colorScheme: 'dark', viewport: { width: 375, height: 720 } });
    await nodeCount('1 compute node online');
    const pending = node.take();
    await page
      .locator('#composer-input')
      .fill('A long message that has to wrap on a narrow phone screen without scrolling sideways.');
    await page.locator('#composer-input').press('Enter');
    await node.respond((await pending)!);
    await page.locator('.msg-assistant:not([aria-busy])').waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'ui-chat-phone-dark.png'), fullPage: true });

    const layout = await page.evaluate(() => ({
      overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
      background: getComputedStyle(document.body).backgroundColor,
    }));

    expect(layout.overflow).toBeLessThanOrEqual(0);
    expect(layout.background).toBe('rgb(20, 21, 24)');
    expectCleanRun();
  });

  it('should label every control and reach the message box first from the skip link', async () => {
    await open();

    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll('textarea, select, input, button')]
        .filter((el) => {
          const labelled = (el as HTMLInputElement).labels?.length || el.getAttribute('aria-label');
          return !labelled && (el.textContent ?? '').trim() === '';
        })
        .map((el) => el.id),
    );
    await page.keyboard.press('Tab');
    const first = await page.evaluate(() => document.activeElement?.textContent);
    await page.keyboard.press('Enter');
    const afterSkip = await page.evaluate(() => document.activeElement?.id);
    await page.keyboard.press('Tab');
    const afterBox = await page.evaluate(() => document.activeElement?.id);

    expect(unlabelled).toEqual([]);
    expect(first).toBe('Skip to the message box');
    expect(afterSkip).toBe('composer-input');
    expect(afterBox).toBe('send');
    expect(await page.locator('[role="log"]').count()).toBe(1);
    expect(await page.locator('[role="status"][aria-live="polite"]').count()).toBe(1);
    expectCleanRun();
  });

  it('should report the bytes of a first load', async () => {
    await open();
    await page.locator('#relay-health', { hasText: 'Relay: OK' }).waitFor();

    const sizes = await Promise.all(
      watch.requests.map(async (r) => {
        const s = await r.sizes();
        const response = await r.response();
        return {
          path: new URL(r.url()).pathname,
          bytes: s.responseBodySize + s.responseHeadersSize,
          encoding: (await response?.headerValue('content-encoding')) ?? 'identity',
        };
      }),
    );
    const statics = sizes.filter((s) => s.path === '/' || s.path.startsWith('/static/'));
    const total = (list: typeof sizes): number => list.reduce((n, s) => n + s.bytes, 0);

    expect(statics.map((s) => s.path).sort()).toEqual(['/', '/static/app.css', '/static/app.js']);
    expect(statics.find((s) => s.path === '/static/app.js')?.encoding).toMatch(/^(br|gzip)$/);
    log(
      `first load: page + assets ${total(statics)} bytes on the wire (${statics.map((s) => `${s.path} ${s.bytes} ${s.encoding}`).join(', ')})`,
    );
    log(`first load: all ${sizes.length} requests incl. first API calls ${total(sizes)} bytes`);
    expectCleanRun();
  });
});
