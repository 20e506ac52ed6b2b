// Regenerates the README's environment table from the config schema (run after `npm run build`).
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { envTable } = require('../dist/config/env-table.js');
const path = new URL('../README.md', import.meta.url);
const readme = readFileSync(path, 'utf8');
const start = '<!-- env-table:start -->';
const end = '<!-- env-table:end -->';
const next = `${readme.slice(0, readme.indexOf(start) + start.length)}\n${envTable()}\n${readme.slice(readme.indexOf(end))}`;
writeFileSync(path, next);
