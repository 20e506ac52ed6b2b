import { get, type IncomingHttpHeaders } from 'node:http';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { ensureUiBundle } from '../browser/chromium';
import { call, createTestApp, type TestApp } from '../helpers/test-app';

/** A GET that leaves the body as sent (fetch would decompress it). */
function rawGet(
  url: string,
  acceptEncoding: string | undefined,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    get(url, { headers: acceptEncoding ? { 'Accept-Encoding': acceptEncoding } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
    }).on('error', reject);
  });
}

describe('UI routes: page, assets and security headers', () => {
  let t: TestApp;

  beforeAll(async () => {
    ensureUiBundle();
    t = await createTestApp();
  });

  afterAll(async () => {
    await t.close();
  });

  it('should serve the page at / with a strict CSP, no referrer and no framing', async () => {
    const res = await call(t.baseUrl, 'GET', '/');
    const csp = res.headers.get('content-security-policy') ?? '';

    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("require-trusted-types-for 'script'");
    // Only the answer sanitizer's policy, the worker's and DOMPurify's own; no duplicates.
    expect(csp).toContain('trusted-types tokenplace-answer tokenplace-worker dompurify;');
    expect(csp).not.toContain("'allow-duplicates'");
    expect(csp).toContain("worker-src 'self'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|upgrade-insecure-requests/);
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('should ship a page with no inline script or style and no third-party URL', async () => {
    const { text } = await call(t.baseUrl, 'GET', '/');

    expect(text).toContain('<script src="/static/app.js" defer></script>');
    expect(text).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
    expect(text).not.toMatch(/\sstyle=|<style|\son[a-z]+=/i);
    expect(text).not.toMatch(/(src|href)="(https?:)?\/\//);
  });

  it('should serve the stylesheet and the bundle under /static with the same headers', async () => {
    const css = await call(t.baseUrl, 'GET', '/static/app.css');
    const js = await call(t.baseUrl, 'GET', '/static/app.js');

    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toMatch(/^text\/css/);
    expect(css.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect(js.text).not.toMatch(/https?:\/\/[a-z0-9.-]+\.(com|net|org|io)\/[^\s"'`]*\.js/);
  });

  it.each([
    ['app.js', 'gzip', 'gzip, deflate', (b: Buffer) => gunzipSync(b)],
    ['app.js', 'br', 'gzip, deflate, br', (b: Buffer) => brotliDecompressSync(b)],
    ['markdown-worker.js', 'gzip', 'gzip, deflate', (b: Buffer) => gunzipSync(b)],
    ['markdown-worker.js', 'br', 'gzip, deflate, br', (b: Buffer) => brotliDecompressSync(b)],
  ] as const)(
    'should send %s %s-compressed to a browser that accepts it',
    async (file, encoding, accept, inflate) => {
      const plain = Buffer.from(
        await (
          await fetch(`${t.baseUrl}/static/${file}`, { headers: { 'Accept-Encoding': 'identity' } })
        ).arrayBuffer(),
      );
      const raw = await rawGet(`${t.baseUrl}/static/${file}`, accept);

      expect(raw.status).toBe(200);
      expect(raw.headers['content-encoding']).toBe(encoding);
      expect(raw.headers['content-type']).toBe('text/javascript; charset=utf-8');
      expect(raw.headers['vary']).toContain('Accept-Encoding');
      expect(raw.headers['content-security-policy']).toContain("script-src 'self'");
      expect(raw.body.length).toBeLessThan(plain.length / 2);
      expect(inflate(raw.body).equals(plain)).toBe(true);
    },
  );

  it('should send the plain bundle when no encoding is accepted', async () => {
    const raw = await rawGet(`${t.baseUrl}/static/app.js`, undefined);

    expect(raw.status).toBe(200);
    expect(raw.headers['content-encoding']).toBeUndefined();
    expect(raw.headers['vary']).toContain('Accept-Encoding');
  });

  it('should leave API routes without the UI headers and keep their CORS', async () => {
    const next = await call(t.baseUrl, 'GET', '/api/v1/relay/servers/next');
    const preflight = await fetch(`${t.baseUrl}/api/v1/relay/responses/retrieve`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://example.test', 'Access-Control-Request-Method': 'POST' },
    });
    const diagnostics = await call(t.baseUrl, 'GET', '/relay/diagnostics');

    expect(next.status).toBe(503);
    expect(next.headers.get('content-security-policy')).toBeNull();
    expect(next.headers.get('access-control-allow-origin')).toBe('*');
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-methods')).toBe('GET, POST, OPTIONS');
    expect(preflight.headers.get('content-security-policy')).toBeNull();
    expect(diagnostics.headers.get('content-security-policy')).toBeNull();
  });

  it('should answer unknown paths with 404, not the page', async () => {
    expect((await call(t.baseUrl, 'GET', '/missing.js')).status).toBe(404);
    expect((await call(t.baseUrl, 'GET', '/static/missing.js')).status).toBe(404);
  });
});

describe('UI disabled', () => {
  it('should not serve the page when TOKENPLACE_RELAY_UI_ENABLED is off', async () => {
    const t = await createTestApp({ TOKENPLACE_RELAY_UI_ENABLED: 'false' });

    const res = await call(t.baseUrl, 'GET', '/');
    await t.close();

    expect(res.status).toBe(404);
  });
});
