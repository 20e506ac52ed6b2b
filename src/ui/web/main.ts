import { ChatFlow, type ActiveRequest, type Stage } from './chat.flow';
import { ChatView, type NodeCounts } from './chat.view';
import { TabIdentity, keyFingerprint } from './e2ee.crypto';
import {
  FALLBACK_MODEL,
  type ChatMessage,
  type ContextTier,
  type TierChoice,
} from './envelope.protocol';
import { RelayApi } from './relay.api';

/** Wires the page: one key pair per tab, relay status pollers, and one chat turn at a time. */
const DIAGNOSTICS_EVERY_MS = 1000;
/** A relay on this machine (a developer's `npm start`): the page may say how to get a node. */
const LOCAL_RELAY = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;
const HEALTH_EVERY_MS = 5000;

function stageText(stage: Stage, attempt: number, tier: ContextTier): string {
  const again = attempt > 1 ? ` (attempt ${attempt})` : '';
  switch (stage) {
    case 'selecting':
      return `Choosing a compute node for a ${tier} context${again}…`;
    case 'encrypting':
      return 'Encrypting your message for the compute node…';
    case 'submitting':
      return 'Sending the encrypted request…';
    case 'waiting':
      return `Waiting for the compute node${again}…`;
    case 'decrypting':
      return 'Decrypting the answer…';
    case 'cancelling':
      return 'Cancelling the request…';
    default: {
      const never: never = stage;
      return never;
    }
  }
}

function repeat(task: () => Promise<void>, everyMs: number): void {
  const run = (): void => {
    const visible = document.visibilityState !== 'hidden';
    const next = (): void => void window.setTimeout(run, everyMs);
    if (!visible) {
      next();
      return;
    }
    task().then(next, next);
  };
  run();
}

async function start(): Promise<void> {
  const view = new ChatView(document);
  const api = new RelayApi('');
  const flow = new ChatFlow(api);
  const history: ChatMessage[] = [];
  let liveNodes: number | null = null;
  let busy: AbortController | null = null;
  let active: ActiveRequest | null = null;

  view.bindEnterToSend();
  // The Markdown worker loads while the first message is typed, not on every visit.
  view.input.addEventListener('input', () => view.prepareAnswers(), { once: true });
  view.setModels([FALLBACK_MODEL]);

  const refreshModels = async (): Promise<void> => {
    try {
      const ids = await api.models();
      view.setModels(ids.length > 0 ? ids : [FALLBACK_MODEL]);
    } catch {
      // keep the current list
    }
  };
  repeat(async () => {
    let counts: NodeCounts | null = null;
    try {
      const nodes = await api.nodes();
      const unusable = nodes.unusable;
      counts = {
        usable: nodes.v1 - unusable + nodes.demo,
        unusable,
        legacy: nodes.legacy,
        demo: nodes.demo,
      };
    } catch {
      counts = null;
    }
    if (counts !== null && counts.usable !== liveNodes) {
      void refreshModels();
    }
    liveNodes = counts?.usable ?? liveNodes;
    view.setNodes(counts);
  }, DIAGNOSTICS_EVERY_MS);
  repeat(async () => view.setHealth(await api.health()), HEALTH_EVERY_MS);
  void api.releaseLabel().then((label) => label && view.setRelease(label));

  view.setStatus('Creating this tab’s encryption key…');
  let identity: TabIdentity;
  try {
    identity = await TabIdentity.generate();
  } catch (error) {
    view.setStatus('Encryption is unavailable.');
    view.showAlert(
      `This browser cannot create an encryption key here (${(error as Error).message}). Open the page over https or on localhost.`,
    );
    return;
  }
  view.setReady(true);
  view.setStatus('Ready. Messages are encrypted in this tab.');

  window.addEventListener('pagehide', () => {
    if (active !== null) {
      const { clientPublicKey, requestId, cancelToken } = active;
      void api.cancel({ clientPublicKey, requestId, cancelToken, reason: 'requester_cancelled' });
    }
  });

  view.stop.addEventListener('click', () => busy?.abort());

  view.clear.addEventListener('click', () => {
    history.length = 0;
    view.clearLog();
    view.setStatus('Conversation cleared.');
    view.input.focus();
  });

  view.form.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = view.input.value.trim();
    if (text === '' || busy !== null) {
      return;
    }
    view.takeInput();
    void turn(text);
  });

  const turn = async (text: string): Promise<void> => {
    const message: ChatMessage = { role: 'user', content: text };
    const entry = view.appendMessage('user', text);
    view.prepareAnswers();
    const controller = new AbortController();
    busy = controller;
    view.showAlert(null);
    view.setBusy(true);
    let outcome;
    try {
      outcome = await flow.send(
        {
          identity,
          model: view.model.value || FALLBACK_MODEL,
          tierChoice: view.tier.value as TierChoice,
          messages: [...history, message],
          liveNodes: liveNodes ?? 1,
        },
        controller.signal,
        {
          onStage: (stage, { attempt, tier }) => view.setStatus(stageText(stage, attempt, tier)),
          onProgress: (progress) => view.showProgress(progress),
          onQueue: (queue) => view.showQueue(queue),
          onActive: (request) => {
            active = request;
          },
        },
      );
    } catch (error) {
      outcome = {
        status: 'failed' as const,
        message: `Unexpected error: ${(error as Error).message}`,
      };
    } finally {
      busy = null;
      active = null;
      view.setBusy(false);
    }
    switch (outcome.status) {
      case 'answered': {
        history.push(message, { role: 'assistant', content: outcome.content });
        const wrap = outcome.padding === 'pkcs1' ? 'PKCS#1 v1.5' : 'RSA-OAEP';
        const tokens = outcome.usage?.total_tokens;
        await view.appendAnswer(
          outcome.content,
          `Decrypted in this tab · node ${await keyFingerprint(outcome.nodeKey)} · key wrap ${wrap}${tokens !== undefined ? ` · ${tokens} tokens` : ''}`,
        );
        view.setStatus('Answer received and decrypted.');
        break;
      }
      case 'stopped':
        view.markUnanswered(entry, 'Stopped before an answer; not part of the conversation.');
        view.restoreInput(text);
        view.setStatus(
          outcome.confirmed
            ? 'Stopped. The relay confirmed the request is cancelled.'
            : 'Stopped. The relay did not confirm the cancellation.',
        );
        break;
      case 'failed':
        view.markUnanswered(entry, 'Not answered; not part of the conversation.');
        view.restoreInput(text);
        view.showAlert(
          outcome.code === 'no_nodes' && LOCAL_RELAY.test(location.hostname)
            ? `${outcome.message} Running this relay yourself? Start it with \`npm start -- --use_mock_llm\` for a demo compute node, or point a token.place compute node at it (see the README).`
            : outcome.message,
        );
        view.setStatus('The message was not answered.');
        break;
      default: {
        const never: never = outcome;
        return never;
      }
    }
  };
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', () => void start());
} else {
  void start();
}
