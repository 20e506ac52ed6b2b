import type { NextFunction, Request, Response } from 'express';
import { statSync } from 'node:fs';
import { extname, join } from 'node:path';

const TYPES: Readonly<Record<string, string>> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};
const SUFFIX = { br: '.br', gzip: '.gz' } as const;
const NAME = /^[A-Za-z0-9_-]+\.(js|css)$/;

function mtime(file: string): number | null {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return null;
  }
}

/**
 * Serves `/static/<name>.js|css` from the `.br` / `.gz` sibling the UI build writes, when the
 * browser accepts that encoding and the sibling is not older than the file; otherwise falls
 * through to the plain file. The bundle is about 140 kB plain and about 40 kB compressed.
 */
export function precompressedAssets(root: string) {
  const dir = join(root, 'static');
  return (req: Request, res: Response, next: NextFunction): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      next();
      return;
    }
    const path = new URL(req.originalUrl, 'http://relay.invalid').pathname;
    const name = path.startsWith('/static/') ? path.slice('/static/'.length) : '';
    const type = TYPES[extname(name)];
    if (!NAME.test(name) || type === undefined) {
      next();
      return;
    }
    res.vary('Accept-Encoding');
    const encoding = req.acceptsEncodings('br')
      ? 'br'
      : req.acceptsEncodings('gzip')
        ? 'gzip'
        : null;
    if (encoding === null) {
      next();
      return;
    }
    const plain = mtime(join(dir, name));
    const packed = join(dir, `${name}${SUFFIX[encoding]}`);
    const packedAt = mtime(packed);
    if (plain === null || packedAt === null || packedAt < plain) {
      next();
      return;
    }
    res.setHeader('Content-Type', type);
    res.setHeader('Content-Encoding', encoding);
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile(packed, (err) => {
      if (err && !res.headersSent) {
        next();
      }
    });
  };
}
