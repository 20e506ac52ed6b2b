import { AnswerRenderer } from './answer.render';
import type { QueueInfo } from './chat.outcome';
import type { Progress, Role } from './envelope.protocol';
import type { RelayHealth } from './relay.api';

/**
 * The page's DOM, and nothing else: every text goes in through textContent, except an answer's
 * Markdown, which only reaches the DOM through the sanitizer's Trusted Types policy
 * (answer.render.ts); every control keeps its label.
 */
function byId<T extends HTMLElement>(doc: Document, id: string, type: { new (): T }): T {
  const el = doc.getElementById(id);
  if (!(el instanceof type)) {
    throw new Error(`the page lacks #${id}`);
  }
  return el;
}

type PillState = 'ok' | 'warn' | 'bad';

/** The relay health pill: its colour and its words for each health the page reads. */
const HEALTH_PILLS: Record<RelayHealth, readonly [PillState, string]> = {
  ok: ['ok', 'Relay: OK'],
  degraded: ['warn', 'Relay: degraded'],
  draining: ['warn', 'Relay: restarting'],
  unreachable: ['bad', 'Relay: unreachable'],
};

const ROLE_LABELS: Record<Role, string> = {
  user: 'You',
  assistant: 'Assistant',
  system: 'System',
};

export interface MessageNote {
  text: string;
}

/** Registered nodes as the page sees them. */
export interface NodeCounts {
  /** API v1 nodes whose public key this page can encrypt to. */
  usable: number;
  /** API v1 nodes whose key is not a usable RSA public key. */
  unusable: number;
  /** Legacy `/sink` nodes (the page speaks API v1 only). */
  legacy: number;
  /** The relay's demo node (`--use_mock_llm`), counted in `usable`. */
  demo: number;
}

export class ChatView {
  readonly form: HTMLFormElement;
  readonly input: HTMLTextAreaElement;
  readonly send: HTMLButtonElement;
  readonly stop: HTMLButtonElement;
  readonly clear: HTMLButtonElement;
  readonly model: HTMLSelectElement;
  readonly tier: HTMLSelectElement;
  private readonly log: HTMLOListElement;
  private readonly emptyNote: HTMLElement;
  private readonly statusText: HTMLElement;
  private readonly progressRow: HTMLElement;
  private readonly progress: HTMLProgressElement;
  private readonly progressDetail: HTMLElement;
  private readonly alert: HTMLElement;
  private readonly nodeCount: HTMLElement;
  private readonly health: HTMLElement;
  private readonly release: HTMLElement;
  private lastPhase: string | null = null;
  private lastQueuePosition: number | null = null;
  private readonly renderer: AnswerRenderer;

  constructor(private readonly doc: Document) {
    this.renderer = new AnswerRenderer(doc);
    this.form = byId(doc, 'composer', HTMLFormElement);
    this.input = byId(doc, 'composer-input', HTMLTextAreaElement);
    this.send = byId(doc, 'send', HTMLButtonElement);
    this.stop = byId(doc, 'stop', HTMLButtonElement);
    this.clear = byId(doc, 'clear', HTMLButtonElement);
    this.model = byId(doc, 'model', HTMLSelectElement);
    this.tier = byId(doc, 'tier', HTMLSelectElement);
    this.log = byId(doc, 'log', HTMLOListElement);
    this.emptyNote = byId(doc, 'empty-note', HTMLElement);
    this.statusText = byId(doc, 'status-text', HTMLElement);
    this.progressRow = byId(doc, 'progress-row', HTMLElement);
    this.progress = byId(doc, 'progress', HTMLProgressElement);
    this.progressDetail = byId(doc, 'progress-detail', HTMLElement);
    this.alert = byId(doc, 'alert', HTMLElement);
    this.nodeCount = byId(doc, 'node-count', HTMLElement);
    this.health = byId(doc, 'relay-health', HTMLElement);
    this.release = byId(doc, 'release', HTMLElement);
    doc.getElementById('no-bundle')?.remove();
  }

  /** Enter sends, Shift+Enter (or an IME composition) keeps typing. */
  bindEnterToSend(): void {
    this.input.addEventListener('keydown', (event) => {
      if (
        event.key === 'Enter' &&
        !event.shiftKey &&
        !event.ctrlKey &&
        !event.altKey &&
        !event.metaKey &&
        !event.isComposing
      ) {
        event.preventDefault();
        if (!this.send.disabled) {
          this.form.requestSubmit(this.send);
        }
      }
    });
  }

  setReady(ready: boolean): void {
    this.send.disabled = !ready;
  }

  /** Keeps keyboard focus on a usable control: Send hands it to Stop, Stop back to the box. */
  setBusy(busy: boolean): void {
    const focused = this.doc.activeElement;
    this.send.disabled = busy;
    this.stop.disabled = !busy;
    this.clear.disabled = busy;
    this.model.disabled = busy;
    this.tier.disabled = busy;
    if (busy && focused === this.send) {
      this.stop.focus();
    }
    if (!busy) {
      this.hideProgress();
      if (focused === this.stop || focused === this.send || focused === this.clear) {
        this.input.focus();
      }
    }
  }

  takeInput(): string {
    const text = this.input.value;
    this.input.value = '';
    return text;
  }

  restoreInput(text: string): void {
    if (this.input.value.trim() === '') {
      this.input.value = text;
    }
  }

  setStatus(text: string): void {
    if (this.statusText.textContent !== text) {
      this.statusText.textContent = text;
    }
  }

  showAlert(text: string | null): void {
    this.alert.textContent = text ?? '';
    this.alert.hidden = text === null;
  }

  /** The user's own words: plain text, never Markdown. */
  appendMessage(role: Role, content: string, note?: string): HTMLLIElement {
    const li = this.messageItem(role);
    const body = this.doc.createElement('p');
    body.className = 'msg-content msg-plain';
    body.textContent = content;
    li.append(body);
    if (note) {
      this.addNote(li, note);
    }
    this.log.append(li);
    li.scrollIntoView?.({ block: 'end' });
    return li;
  }

  /** Starts the Markdown worker while the first answer is still on its way. */
  prepareAnswers(): void {
    this.renderer.warm();
  }

  /**
   * An answer, its Markdown formatted (or plain text when formatting is not possible, said in the
   * note). Its place in the log is taken at once; it is marked busy until it is filled, so screen
   * readers announce it whole.
   */
  async appendAnswer(content: string, note: string): Promise<HTMLLIElement> {
    const li = this.messageItem('assistant');
    li.querySelector('.msg-head')?.append(this.copyButton(content));
    const body = this.doc.createElement('div');
    body.className = 'msg-content msg-markdown';
    li.append(body);
    li.setAttribute('aria-busy', 'true');
    this.log.append(li);
    const filled = await this.renderer.fill(body, content, {
      onCodeCopied: (ok) =>
        this.setStatus(
          ok
            ? 'Code copied to the clipboard.'
            : 'Copying failed: select the code and copy it by hand.',
        ),
    });
    this.addNote(li, filled.formatted ? note : `${note} · shown as plain text (${filled.reason})`);
    li.removeAttribute('aria-busy');
    li.scrollIntoView?.({ block: 'start' });
    return li;
  }

  private messageItem(role: Role): HTMLLIElement {
    const li = this.doc.createElement('li');
    li.className = `msg msg-${role}`;
    const head = this.doc.createElement('div');
    head.className = 'msg-head';
    const who = this.doc.createElement('span');
    who.className = 'msg-role';
    who.textContent = ROLE_LABELS[role];
    head.append(who);
    li.append(head);
    this.emptyNote.hidden = true;
    return li;
  }

  markUnanswered(li: HTMLLIElement, note: string): void {
    li.classList.add('msg-failed');
    this.addNote(li, note);
  }

  clearLog(): void {
    this.log.replaceChildren();
    this.emptyNote.hidden = false;
    this.showAlert(null);
  }

  /** Phases in the live region (announced once per phase), counts beside a determinate bar. */
  showProgress(p: Progress): void {
    const phaseText: Record<Progress['phase'], string> = {
      preparing: 'The compute node is preparing…',
      prefill: 'The compute node is reading the conversation…',
      generating: 'The compute node is writing the answer…',
    };
    if (this.lastPhase !== p.phase) {
      this.lastPhase = p.phase;
      this.setStatus(phaseText[p.phase]);
    }
    this.progressRow.hidden = false;
    this.progressRow.dataset.phase = p.phase;
    const seconds = (p.elapsedMs / 1000).toFixed(1);
    if (p.phase === 'prefill' && p.totalPromptTokens > 0) {
      this.progress.max = p.totalPromptTokens;
      this.progress.value = p.processedPromptTokens;
      const cached = p.cachedPromptTokens > 0 ? `, ${p.cachedPromptTokens} cached` : '';
      this.progressDetail.textContent = `Prompt: ${p.processedPromptTokens} of ${p.totalPromptTokens} tokens${cached} · ${seconds} s`;
    } else {
      this.progress.removeAttribute('value');
      this.progressDetail.textContent =
        p.phase === 'generating'
          ? `Generated ${p.generatedTokens} tokens · ${seconds} s`
          : `Preparing · ${seconds} s`;
    }
  }

  /**
   * "2 ahead of you · about 20 s" while the request waits in its node's queue; the status line
   * (announced) changes only when the place does. Progress from the node replaces it.
   */
  showQueue(q: QueueInfo): void {
    if (this.lastPhase !== null && this.lastPhase !== 'queued') {
      return;
    }
    const ahead = q.position > 0 ? `${q.position} ahead of you` : 'Nobody ahead of you';
    if (q.position === 0 && q.estimateSeconds === null) {
      if (this.lastPhase === 'queued') {
        this.setStatus('Waiting for the compute node…');
      }
      this.hideProgress();
      return;
    }
    if (this.lastPhase !== 'queued' || this.lastQueuePosition !== q.position) {
      this.setStatus(
        q.position > 0
          ? `Waiting in line at the compute node: ${ahead}.`
          : 'Waiting for the compute node…',
      );
    }
    this.lastPhase = 'queued';
    this.lastQueuePosition = q.position;
    this.progressRow.hidden = false;
    this.progressRow.dataset.phase = 'queued';
    this.progress.removeAttribute('value');
    this.progressDetail.textContent =
      q.estimateSeconds === null ? ahead : `${ahead} · about ${aboutTime(q.estimateSeconds)}`;
  }

  hideProgress(): void {
    this.lastQueuePosition = null;
    this.lastPhase = null;
    this.progressRow.hidden = true;
    this.progressDetail.textContent = '';
  }

  /**
   * What the page can talk to: API v1 nodes whose key it can encrypt to. Nodes it cannot use (a
   * key that is not an RSA public key, legacy `/sink` nodes) are named, not counted as online.
   */
  setNodes(nodes: NodeCounts | null): void {
    if (nodes === null) {
      this.pill(this.nodeCount, 'warn', 'Compute nodes: unknown');
      return;
    }
    const { usable, unusable, legacy, demo } = nodes;
    const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
    const others = [
      unusable > 0 ? `${plural(unusable, 'node')} with a key this page cannot use` : '',
      legacy > 0 ? `${plural(legacy, 'legacy /sink node')} (this page speaks API v1 only)` : '',
    ].filter(Boolean);
    if (usable > 0) {
      const extra = others.length > 0 ? `; also ${others.join(', ')}` : '';
      const mock =
        demo === 0
          ? ''
          : demo === usable
            ? ' (the demo node: mock answers)'
            : ` (${plural(demo, 'demo node')} among them, used when no other can answer)`;
      this.pill(this.nodeCount, 'ok', `${plural(usable, 'compute node')} online${mock}${extra}`);
    } else if (others.length > 0) {
      this.pill(this.nodeCount, 'warn', `No compute node this page can use: ${others.join(', ')}`);
    } else {
      this.pill(this.nodeCount, 'bad', 'No compute nodes online');
    }
  }

  setHealth(health: RelayHealth): void {
    const [state, text] = HEALTH_PILLS[health];
    this.pill(this.health, state, text);
  }

  setRelease(label: string): void {
    this.release.textContent = `token.place relay · ${label}`;
  }

  /** Replaces the model list, keeping the current choice when it is still offered. */
  setModels(ids: readonly string[]): void {
    const current = this.model.value;
    const options = ids.map((id) => {
      const option = this.doc.createElement('option');
      option.value = id;
      option.textContent = id;
      return option;
    });
    this.model.replaceChildren(...options);
    if (ids.includes(current)) {
      this.model.value = current;
    }
  }

  private pill(el: HTMLElement, state: PillState, text: string): void {
    el.dataset.state = state;
    if (el.textContent !== text) {
      el.textContent = text;
    }
  }

  private addNote(li: HTMLLIElement, text: string): void {
    const note = this.doc.createElement('p');
    note.className = 'msg-note';
    note.textContent = text;
    li.append(note);
  }

  private copyButton(content: string): HTMLButtonElement {
    const button = this.doc.createElement('button');
    button.type = 'button';
    button.className = 'copy';
    button.textContent = 'Copy';
    button.setAttribute('aria-label', 'Copy this answer');
    button.addEventListener('click', () => {
      const clipboard = this.doc.defaultView?.navigator.clipboard;
      const done = (ok: boolean): void => {
        button.textContent = ok ? 'Copied' : 'Copy failed';
        this.setStatus(
          ok
            ? 'Answer copied to the clipboard.'
            : 'Copying failed: select the text and copy it by hand.',
        );
        this.doc.defaultView?.setTimeout(() => {
          button.textContent = 'Copy';
        }, 2000);
      };
      if (!clipboard) {
        done(false);
        return;
      }
      clipboard.writeText(content).then(
        () => done(true),
        () => done(false),
      );
    });
    return button;
  }
}

/** "20 s", "3 min", "2 h": rounded, as a person would say it. */
export function aboutTime(seconds: number): string {
  if (seconds < 90) {
    return `${Math.max(1, Math.round(seconds))} s`;
  }
  if (seconds < 90 * 60) {
    return `${Math.round(seconds / 60)} min`;
  }
  return `${Math.round(seconds / 3600)} h`;
}
