import { MAX_NESTING, renderMarkdown } from '../../src/ui/web/markdown.render';

const html = (text: string): string => renderMarkdown(text).join('');

describe('renderMarkdown', () => {
  it('should render raw HTML as text, never as markup', () => {
    const out = html('<img src=x onerror=alert(1)> <script>alert(2)</script>\n\n<div>block</div>');

    expect(out).not.toMatch(/<(img|script|div)\b/);
    expect(out).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(out).toContain('&lt;script&gt;alert(2)&lt;/script&gt;');
    expect(out).toContain('&lt;div&gt;block&lt;/div&gt;');
  });

  it('should keep http, https and mailto links only', () => {
    const out = html(
      '[a](https://a.example) [b](http://b.example) [c](mailto:c@example.com) ' +
        '[d](javascript:alert(1)) [e](data:text/html,x) [f](/relative) [g](#anchor) <vbscript:x>',
    );

    expect([...out.matchAll(/href="([^"]*)"/g)].map((m) => m[1])).toEqual([
      'https://a.example',
      'http://b.example',
      'mailto:c@example.com',
    ]);
    expect(out).toContain('[d](javascript:alert(1))');
  });

  it('should turn images into links labelled with their alt text, never <img>', () => {
    expect(html('![a cat](https://img.example/cat.png) ![x](javascript:alert(1))')).toBe(
      '<p><a href="https://img.example/cat.png">Image: a cat</a> ![x](javascript:alert(1))</p>\n',
    );
  });

  it('should start headings at h3 and never skip a level', () => {
    expect(html('# A\n\n### B\n\n###### C\n\n# D')).toBe(
      '<h3>A</h3>\n<h4>B</h4>\n<h5>C</h5>\n<h3>D</h3>\n',
    );
    expect(html('### Only\n\n#### Then')).toBe('<h3>Only</h3>\n<h4>Then</h4>\n');
    // A first heading deeper than the rest still comes in at h3.
    expect(html('## Second\n\n# First')).toBe('<h3>Second</h3>\n<h3>First</h3>\n');
  });

  it('should write table alignment as a class, never a style attribute', () => {
    const out = html('| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |');

    expect(out).not.toContain('style=');
    expect(out).toContain('<th class="align-left">a</th>');
    expect(out).toContain('<td class="align-center">2</td>');
    expect(out).toContain('<td class="align-right">3</td>');
  });

  it('should escape a code fence and its language', () => {
    expect(html('```"><img src=x>\n<b>x</b>\n```')).toBe(
      '<pre><code class="language-&quot;&gt;&lt;img">&lt;b&gt;x&lt;/b&gt;\n</code></pre>\n',
    );
  });

  it(`should cut nesting past ${MAX_NESTING} levels`, () => {
    const out = html('>'.repeat(10_000) + ' deep');

    expect(out.match(/<blockquote>/g)?.length).toBeLessThanOrEqual(MAX_NESTING);
  });

  it('should cut chunks only between top-level blocks, and lose nothing', () => {
    const text = Array.from(
      { length: 40 },
      (_, i) => `- item ${i}\n  - sub ${i}\n\npara ${i}`,
    ).join('\n\n');

    const chunks = renderMarkdown(text, 200);

    expect(chunks.length).toBeGreaterThan(5);
    expect(chunks.join('')).toBe(renderMarkdown(text, Number.MAX_SAFE_INTEGER).join(''));
    for (const chunk of chunks) {
      expect(chunk.match(/<ul>/g)?.length).toBe(chunk.match(/<\/ul>/g)?.length);
    }
  });
});
