// Bundles the browser UI with esbuild: src/ui/web/main.ts into public/static/app.js (the page, with
// DOMPurify) and src/ui/web/markdown.worker.ts into public/static/markdown-worker.js (markdown-it,
// loaded when the first message is sent). No CDN, no runtime network, scripts the page's CSP allows.
// node-forge is reduced to the RSA modules the PKCS#1 v1.5 unwrap needs. Written atomically so a
// running relay never serves half a file.
import { build } from 'esbuild';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const statics = join(root, 'public', 'static');

/** `import forge from 'node-forge'` in the page gets only forge's RSA, ASN.1 and PKCS#1 code. */
const slimForge = {
  name: 'slim-node-forge',
  setup(b) {
    b.onResolve({ filter: /^node-forge$/ }, () => ({ path: 'node-forge', namespace: 'slim-forge' }));
    b.onLoad({ filter: /.*/, namespace: 'slim-forge' }, () => ({
      contents: [
        "module.exports = require('node-forge/lib/forge');",
        "require('node-forge/lib/asn1');",
        "require('node-forge/lib/rsa');",
      ].join('\n'),
      resolveDir: root,
      loader: 'js',
    }));
  },
};

const bundles = [
  {
    entry: 'main.ts',
    out: 'app.js',
    banner:
      '/* token.place relay UI. Bundled: node-forge (BSD-3-Clause), DOMPurify (MPL-2.0 or Apache-2.0). */',
  },
  {
    entry: 'markdown.worker.ts',
    out: 'markdown-worker.js',
    banner:
      '/* token.place relay UI, Markdown worker. Bundled: markdown-it, linkify-it, mdurl, uc.micro, punycode.js (MIT), entities (BSD-2-Clause). */',
  },
];

const started = Date.now();
const built = [];
for (const { entry, out, banner } of bundles) {
  const result = await build({
    entryPoints: [join(root, 'src', 'ui', 'web', entry)],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: ['es2022'],
    minify: true,
    legalComments: 'eof',
    // forge only requires Node's crypto when it runs under Node; never in the page.
    external: ['crypto'],
    plugins: [slimForge],
    banner: { js: banner },
    logLevel: 'warning',
  });
  const [file] = result.outputFiles;
  built.push([join(statics, out), Buffer.from(file.contents)]);
}

/** Writes via a temporary file and a rename, so readers see the old file or the new one. */
async function writeAtomically(path, bytes) {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
}

await mkdir(statics, { recursive: true });
for (const [path, bytes] of built) {
  await writeAtomically(path, bytes);
}
// Precompressed copies for src/ui/precompressed.middleware.ts (written after the plain files, so
// they are never older than them).
const css = join(statics, 'app.css');
const sizes = built.map(([path, bytes]) => `${basename(path)} ${bytes.length}`);
for (const [path, bytes] of [...built, [css, await readFile(css)]]) {
  const br = brotliCompressSync(bytes, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length },
  });
  const gz = gzipSync(bytes, { level: 9 });
  await writeAtomically(`${path}.br`, br);
  await writeAtomically(`${path}.gz`, gz);
  sizes.push(`${basename(path)} br ${br.length} gz ${gz.length}`);
}
console.log(`build:ui: public/static/ ${sizes.join(', ')} (${Date.now() - started} ms)`);
