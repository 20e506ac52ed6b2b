import MarkdownIt from 'markdown-it';

/**
 * Markdown → HTML for answers, with no DOM (it runs in the page's worker and under Node in the
 * tests). CommonMark plus GFM tables, strikethrough and bare-URL links, through markdown-it:
 *
 * - raw HTML in an answer is never HTML: `html: false` renders it as escaped text;
 * - links are kept only for `http:`, `https:` and `mailto:` (others stay as plain text);
 * - images are never loaded: they become a link to the image, labelled with its alt text;
 * - headings start at `<h3>` (the page owns h1 and h2) and never skip a level;
 * - table alignment becomes a class (the CSP forbids `style` attributes);
 * - nesting deeper than {@link MAX_NESTING} is cut (markdown-it drops the deeper tail).
 *
 * The page sanitizes the result again (DOMPurify, answer.render.ts) before it reaches the DOM.
 */
export const MAX_NESTING = 50;

/** HTML is handed over in chunks of about this many characters, cut between top-level blocks. */
export const CHUNK_CHARS = 8 * 1024;

/** The first heading level an answer may use: the page has h1 (brand) and h2 (Conversation). */
const FIRST_HEADING = 3;
const LAST_HEADING = 6;
const SAFE_LINK = /^(https?:|mailto:)/i;
const ALIGN = /^text-align:(left|center|right)$/;

type Markdown = MarkdownIt.MarkdownIt;
type Token = MarkdownIt.Token;

function build(): Markdown {
  const md = new MarkdownIt('default', {
    html: false,
    linkify: true,
    typographer: false,
    breaks: false,
    maxNesting: MAX_NESTING,
  });
  md.linkify.set({ fuzzyEmail: false });
  md.validateLink = (url: string): boolean => SAFE_LINK.test(url.trim());
  md.core.ruler.push('tokenplace_page_rules', (state) => {
    normalizeHeadings(state.tokens);
    for (const token of state.tokens) {
      if ((token.type === 'th_open' || token.type === 'td_open') && token.attrs) {
        const align = ALIGN.exec(String(token.attrGet('style') ?? ''));
        token.attrs = align ? [['class', `align-${align[1] ?? 'left'}`]] : null;
      }
    }
  });
  const escape = md.utils.escapeHtml;
  md.renderer.rules.image = (tokens, idx) => {
    const token = tokens[idx] as Token;
    const src = String(token.attrGet('src') ?? '');
    const alt = token.children
      ? md.renderer.renderInlineAsText(token.children, md.options, {})
      : '';
    return `<a href="${escape(src)}">Image: ${escape(alt || src)}</a>`;
  };
  return md;
}

/**
 * Maps the heading levels an answer uses onto h3…h6 by rank (`#` and `###` become h3 and h4), and
 * never lets a heading go more than one level below the one before it.
 */
function normalizeHeadings(tokens: Token[]): void {
  const used = [
    ...new Set(tokens.filter((t) => t.type === 'heading_open').map((t) => Number(t.tag.slice(1)))),
  ].sort((a, b) => a - b);
  let previous = FIRST_HEADING - 1;
  let open = '';
  for (const token of tokens) {
    if (token.type === 'heading_open') {
      const rank = used.indexOf(Number(token.tag.slice(1)));
      const level = Math.min(FIRST_HEADING + rank, previous + 1, LAST_HEADING);
      previous = level;
      open = `h${level}`;
      token.tag = open;
    } else if (token.type === 'heading_close') {
      token.tag = open;
    }
  }
}

let instance: Markdown | null = null;

/** Renders an answer's Markdown to HTML, in chunks cut between top-level blocks. */
export function renderMarkdown(text: string, chunkChars = CHUNK_CHARS): string[] {
  instance ??= build();
  const md = instance;
  const env = {};
  const tokens = md.parse(text, env);
  const chunks: string[] = [];
  let current = '';
  let start = 0;
  for (let i = 0; i < tokens.length; i += 1) {
    const token = tokens[i] as Token;
    if (token.level !== 0 || token.nesting === 1) {
      continue;
    }
    current += md.renderer.render(tokens.slice(start, i + 1), md.options, env);
    start = i + 1;
    if (current.length >= chunkChars) {
      chunks.push(current);
      current = '';
    }
  }
  if (current !== '') {
    chunks.push(current);
  }
  return chunks;
}
