import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

/**
 * The screenshots in docs/ui.md and what they were taken from. The browser suite
 * (screenshots.browser.spec.ts) retakes them whenever the page's sources differ from the ones
 * recorded in docs/img/screenshots.json and writes both; test/ui/screenshots.spec.ts fails when
 * the recorded sources are not today's, so a page change committed without its new screenshots
 * fails CI. (Pixels are not compared: fonts and Chromium builds differ between machines.)
 */
const ROOT = join(__dirname, '..', '..');
export const SCREENSHOT_DIR = join(ROOT, 'docs', 'img');
export const MANIFEST = join(SCREENSHOT_DIR, 'screenshots.json');
export const SCREENSHOTS = ['ui-chat-light.png', 'ui-chat-dark.png'] as const;

export interface Manifest {
  /** sha256 over the files below and the renderer's library versions. */
  sources: string;
  files: string[];
  screenshots: Record<string, { width: number; height: number }>;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]))
    .sort();
}

/** Everything the screenshots show: the page, its styles and code, the scene, the libraries. */
export function screenshotSources(): { hash: string; files: string[] } {
  const files = [
    join(ROOT, 'public', 'index.html'),
    join(ROOT, 'public', 'static', 'app.css'),
    ...filesUnder(join(ROOT, 'src', 'ui', 'web')),
    join(ROOT, 'test', 'browser', 'answers.ts'),
    join(ROOT, 'test', 'browser', 'screenshots.browser.spec.ts'),
  ];
  const hash = createHash('sha256');
  const rel = files.map((f) => relative(ROOT, f));
  for (const [i, file] of files.entries()) {
    hash.update(`${rel[i]}\0`).update(readFileSync(file)).update('\0');
  }
  const deps = (
    JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    }
  ).dependencies;
  hash.update(`markdown-it@${deps['markdown-it']} dompurify@${deps.dompurify}`);
  return { hash: hash.digest('hex'), files: rel };
}

export function readManifest(): Manifest | null {
  return existsSync(MANIFEST) ? (JSON.parse(readFileSync(MANIFEST, 'utf8')) as Manifest) : null;
}

/** Width and height from a PNG's IHDR chunk. */
export function pngSize(bytes: Buffer): { width: number; height: number } {
  const signature = '89504e470d0a1a0a';
  if (
    bytes.subarray(0, 8).toString('hex') !== signature ||
    bytes.toString('ascii', 12, 16) !== 'IHDR'
  ) {
    throw new Error('not a PNG');
  }
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}
