import { renderMarkdown } from './markdown.render';

/**
 * The page's Markdown worker (bundled as /static/markdown-worker.js): parsing runs here, off the
 * page's thread, so an answer that is slow to parse never freezes the page, and the page can end
 * the worker when it takes too long.
 */
export interface RenderRequest {
  id: number;
  text: string;
}

export type RenderReply = { id: number; chunks: string[] } | { id: number; error: string };

interface WorkerScope {
  onmessage: ((event: MessageEvent<RenderRequest>) => void) | null;
  postMessage(message: RenderReply): void;
}

const scope = globalThis as unknown as WorkerScope;

scope.onmessage = (event) => {
  const { id, text } = event.data;
  try {
    scope.postMessage({ id, chunks: renderMarkdown(text) });
  } catch (error) {
    scope.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
};
