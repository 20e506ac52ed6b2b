import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { envTable } from '../../src/config/env-table';

describe('README', () => {
  const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');

  it('should open with the two commands', () => {
    const firstBlock = readme.slice(
      readme.indexOf('```'),
      readme.indexOf('```', readme.indexOf('```') + 3),
    );

    expect(firstBlock).toContain('npm ci && npm start');
    expect(firstBlock).toContain('npm test');
  });

  it('should document every environment variable exactly as the schema declares it', () => {
    const section = readme.slice(
      readme.indexOf('<!-- env-table:start -->') + '<!-- env-table:start -->'.length,
      readme.indexOf('<!-- env-table:end -->'),
    );

    expect(section.trim()).toBe(envTable());
  });
});
