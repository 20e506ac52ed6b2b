import DOMPurify, { type Config } from 'dompurify';
import type { RenderReply, RenderRequest } from './markdown.worker';

/**
 * Puts an answer's Markdown on the page. The worker (markdown.worker.ts) turns it into HTML off
 * the page's thread; here every chunk passes DOMPurify inside the page's one HTML Trusted Types
 * policy (so only sanitizer output can reach the DOM), goes into the answer a slice at a time
 * (the page keeps answering input while a long answer fills in), and gets its controls: a Copy
 * button per code block, links that open in a new tab without a referrer.
 *
 * Anything that goes wrong (no worker, a worker that takes longer than the budget or fails) shows
 * the answer as plain text instead, with a note saying so.
 */
export const WORKER_URL = '/static/markdown-worker.js';
/** Trusted Types policy names; the CSP's `trusted-types` lists exactly these. */
export const HTML_POLICY = 'tokenplace-answer';
export const WORKER_POLICY = 'tokenplace-worker';
/** Longest the worker may take over one answer before it is ended and the answer shown plain. */
export const RENDER_BUDGET_MS = 5000;
/** Main-thread work per slice before the page yields to input and painting. */
const SLICE_MS = 16;

const ALLOWED_TAGS = [
  'p',
  'br',
  'hr',
  'strong',
  'em',
  's',
  'code',
  'pre',
  'blockquote',
  'ul',
  'ol',
  'li',
  'table',
  'thead',
  'tbody',
  'tr',
  'th',
  'td',
  'a',
  'h3',
  'h4',
  'h5',
  'h6',
];
/** The only classes markdown.render.ts writes: a code block's language, a table cell's alignment. */
const ALLOWED_CLASS = /^(language-[\w+#.-]{1,40}|align-(left|center|right))$/;
const LINK_PROTOCOLS = ['http:', 'https:', 'mailto:'];

const SANITIZE: Config = {
  ALLOWED_TAGS,
  ALLOWED_ATTR: ['href', 'title', 'class', 'start'],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  // DOMPurify parses the (not yet clean) input in an inert document through its own internal
  // policy, `dompurify`, which the CSP allows; nothing else of ours can create HTML.
  RETURN_TRUSTED_TYPE: false,
};

let hooked = false;
function sanitize(html: string): string {
  if (!hooked) {
    hooked = true;
    DOMPurify.addHook('uponSanitizeAttribute', (_node, data) => {
      if (data.attrName === 'class' && !ALLOWED_CLASS.test(data.attrValue)) {
        data.keepAttr = false;
      }
    });
  }
  return DOMPurify.sanitize(html, SANITIZE);
}

interface TrustedPolicy {
  createHTML(input: string): unknown;
  createScriptURL(input: string): unknown;
}

interface PolicyFactory {
  createPolicy(
    name: string,
    rules: { createHTML?: (s: string) => string; createScriptURL?: (s: string) => string },
  ): TrustedPolicy;
}

/** The page's two policies: HTML only out of the sanitizer, script URLs only the worker's. */
class Policies {
  private readonly html: ((s: string) => unknown) | null;
  private readonly script: ((s: string) => unknown) | null;

  constructor(win: Window) {
    const factory = (win as Window & { trustedTypes?: PolicyFactory }).trustedTypes;
    if (factory === undefined) {
      this.html = null;
      this.script = null;
      return;
    }
    const html = factory.createPolicy(HTML_POLICY, { createHTML: sanitize });
    const script = factory.createPolicy(WORKER_POLICY, {
      createScriptURL: (url) => {
        if (url !== WORKER_URL) {
          throw new TypeError(`${WORKER_POLICY} only allows ${WORKER_URL}`);
        }
        return url;
      },
    });
    this.html = (s) => html.createHTML(s);
    this.script = (s) => script.createScriptURL(s);
  }

  /** Sanitized HTML for an `innerHTML` sink (a TrustedHTML where the browser has them). */
  sanitizedHtml(markup: string): string {
    // A TrustedHTML is what the sink wants; TypeScript's DOM types only know strings.
    return this.html === null ? sanitize(markup) : (this.html(markup) as string);
  }

  workerUrl(): string {
    return this.script === null ? WORKER_URL : (this.script(WORKER_URL) as string);
  }
}

export class RenderFailed extends Error {
  constructor(readonly why: 'timeout' | 'failed') {
    super(why === 'timeout' ? 'formatting took too long' : 'formatting failed');
    this.name = 'RenderFailed';
  }
}

export interface RenderEvents {
  /** A code block's Copy button was used: true when the clipboard took it. */
  onCodeCopied(ok: boolean): void;
}

/** How an answer ended up on the page. */
export interface Filled {
  formatted: boolean;
  /** Why it is plain text, when it is. */
  reason: string | null;
}

export class AnswerRenderer {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve(chunks: string[]): void; reject(e: Error): void }
  >();
  private policies: Policies | null = null;

  constructor(
    private readonly doc: Document,
    private readonly budgetMs = RENDER_BUDGET_MS,
  ) {}

  private get win(): Window {
    const win = this.doc.defaultView;
    if (win === null) {
      throw new Error('the document has no window');
    }
    return win;
  }

  /** Starts the worker ahead of the first answer (the page calls this at the first keystroke). */
  warm(): void {
    try {
      this.ensureWorker();
    } catch {
      // render() says why when it is needed
    }
  }

  /** Fills `body` with the answer: formatted, or plain text when formatting is not possible. */
  async fill(body: HTMLElement, text: string, events: RenderEvents): Promise<Filled> {
    let chunks: string[];
    try {
      chunks = await this.parse(text);
    } catch (error) {
      this.plain(body, text);
      return {
        formatted: false,
        reason: error instanceof RenderFailed ? error.message : 'formatting is unavailable',
      };
    }
    // A long answer goes in a block per chunk, each laid out only when it comes near the screen
    // (`content-visibility: auto` in app.css), so adding one costs the same however long it is.
    const long = chunks.length > 1;
    let sliceStart = performance.now();
    try {
      for (const chunk of chunks) {
        if (performance.now() - sliceStart > SLICE_MS) {
          await new Promise((resolve) => this.win.setTimeout(resolve, 0));
          sliceStart = performance.now();
        }
        const template = this.doc.createElement('template');
        template.innerHTML = this.policy().sanitizedHtml(chunk);
        this.decorate(template.content, body, events);
        if (long) {
          const part = this.doc.createElement('div');
          part.className = 'md-part';
          part.append(template.content);
          body.append(part);
        } else {
          body.append(template.content);
        }
      }
    } catch {
      // A page whose CSP refuses the policies (a proxy rewriting it), or a sanitizer that throws.
      this.plain(body, text);
      return { formatted: false, reason: 'formatting failed' };
    }
    return { formatted: true, reason: null };
  }

  private plain(body: HTMLElement, text: string): void {
    body.classList.add('msg-plain');
    body.replaceChildren(this.doc.createTextNode(text));
  }

  private policy(): Policies {
    this.policies ??= new Policies(this.win);
    return this.policies;
  }

  private ensureWorker(): Worker {
    if (this.worker !== null) {
      return this.worker;
    }
    const worker = new Worker(this.policy().workerUrl(), { name: 'markdown' });
    worker.onmessage = (event: MessageEvent<RenderReply>) => {
      const reply = event.data;
      const waiter = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if ('chunks' in reply) {
        waiter?.resolve(reply.chunks);
      } else {
        waiter?.reject(new RenderFailed('failed'));
      }
    };
    worker.onerror = (event) => {
      event.preventDefault();
      this.stopWorker(new RenderFailed('failed'));
    };
    this.worker = worker;
    return worker;
  }

  private stopWorker(reason: Error): void {
    this.worker?.terminate();
    this.worker = null;
    for (const waiter of this.pending.values()) {
      waiter.reject(reason);
    }
    this.pending.clear();
  }

  private parse(text: string): Promise<string[]> {
    const worker = this.ensureWorker();
    const id = this.nextId;
    this.nextId += 1;
    return new Promise<string[]>((resolve, reject) => {
      const timer = this.win.setTimeout(
        () => this.stopWorker(new RenderFailed('timeout')),
        this.budgetMs,
      );
      this.pending.set(id, {
        resolve: (chunks) => {
          this.win.clearTimeout(timer);
          resolve(chunks);
        },
        reject: (error) => {
          this.win.clearTimeout(timer);
          reject(error);
        },
      });
      const request: RenderRequest = { id, text };
      worker.postMessage(request);
    });
  }

  /** Links open in a new tab without referrer; code blocks get a Copy button; wide parts scroll. */
  private decorate(root: DocumentFragment, body: HTMLElement, events: RenderEvents): void {
    for (const node of [...root.childNodes]) {
      if (node.nodeType === Node.TEXT_NODE && (node.textContent ?? '').trim() === '') {
        node.remove();
      }
    }
    for (const a of root.querySelectorAll('a')) {
      if (safeLink(a.getAttribute('href'))) {
        a.target = '_blank';
        a.rel = 'noopener noreferrer';
      } else {
        a.replaceWith(...a.childNodes);
      }
    }
    let blocks = body.querySelectorAll('pre').length;
    for (const pre of root.querySelectorAll('pre')) {
      blocks += 1;
      const lang = /^language-(.+)$/.exec(pre.querySelector('code')?.className ?? '')?.[1] ?? '';
      const wrap = this.doc.createElement('div');
      wrap.className = 'code-block';
      const head = this.doc.createElement('div');
      head.className = 'code-head';
      const label = this.doc.createElement('span');
      label.className = 'code-lang';
      label.textContent = lang || 'code';
      head.append(label, this.copyCode(pre, blocks, lang, events));
      pre.tabIndex = 0;
      pre.replaceWith(wrap);
      wrap.append(head, pre);
    }
    for (const table of root.querySelectorAll('table')) {
      const wrap = this.doc.createElement('div');
      wrap.className = 'table-wrap';
      wrap.tabIndex = 0;
      table.replaceWith(wrap);
      wrap.append(table);
    }
  }

  private copyCode(
    pre: HTMLPreElement,
    n: number,
    lang: string,
    events: RenderEvents,
  ): HTMLButtonElement {
    const button = this.doc.createElement('button');
    button.type = 'button';
    button.className = 'copy';
    button.textContent = 'Copy';
    button.setAttribute('aria-label', `Copy code block ${n}${lang ? ` (${lang})` : ''}`);
    button.addEventListener('click', () => {
      const done = (ok: boolean): void => {
        button.textContent = ok ? 'Copied' : 'Copy failed';
        events.onCodeCopied(ok);
        this.win.setTimeout(() => {
          button.textContent = 'Copy';
        }, 2000);
      };
      const clipboard = this.win.navigator.clipboard as Clipboard | undefined;
      if (clipboard === undefined) {
        done(false);
        return;
      }
      clipboard.writeText(pre.textContent).then(
        () => done(true),
        () => done(false),
      );
    });
    return button;
  }
}

function safeLink(href: string | null): boolean {
  if (href === null) {
    return false;
  }
  try {
    return LINK_PROTOCOLS.includes(new URL(href).protocol);
  } catch {
    return false;
  }
}
