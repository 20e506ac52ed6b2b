import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  pngSize,
  readManifest,
  SCREENSHOT_DIR,
  SCREENSHOTS,
  screenshotSources,
} from '../browser/screenshots';

describe('docs/ui.md screenshots', () => {
  it('should have been taken from the page as it is now (else: npx jest test/browser/screenshots, and commit docs/img)', () => {
    const manifest = readManifest();
    const now = screenshotSources();

    expect(manifest?.files).toEqual(now.files);
    expect(manifest?.sources).toBe(now.hash);
  });

  it.each(SCREENSHOTS)('should ship %s as the PNG the manifest names', (file) => {
    const size = pngSize(readFileSync(join(SCREENSHOT_DIR, file)));

    expect(readManifest()?.screenshots[file]).toEqual(size);
  });

  it('should show both screenshots in docs/ui.md', () => {
    const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'ui.md'), 'utf8');

    for (const file of SCREENSHOTS) {
      expect(doc).toContain(`](img/${file})`);
    }
  });
});
