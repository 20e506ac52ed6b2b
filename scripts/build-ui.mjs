// Bundles the browser UI (src/ui/web/main.ts) into public/static/app.js with esbuild: no CDN, no
// runtime network, one script the page's CSP allows. node-forge is reduced to the RSA modules the
// PKCS#1 v1.5 unwrap needs. Written atomically so a running relay never serves half a file.
import { build } from 'esbuild';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'public', 'static', 'app.js');

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

const started = Date.now();
const result = await build({
  entryPoints: [join(root, 'src', 'ui', 'web', 'main.ts')],
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
  banner: { js: '/* token.place relay UI. node-forge (BSD-3-Clause) is bundled. */' },
  logLevel: 'warning',
});

/** Writes via a temporary file and a rename, so readers see the old file or the new one. */
async function writeAtomically(path, bytes) {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
}

const [file] = result.outputFiles;
await mkdir(dirname(outfile), { recursive: true });
const js = Buffer.from(file.contents);
await writeAtomically(outfile, js);
// Precompressed copies for src/ui/precompressed.middleware.ts (written after the plain file, so
// they are never older than it).
const css = join(root, 'public', 'static', 'app.css');
const sizes = [`app.js ${js.length}`];
for (const [path, bytes] of [
  [outfile, js],
  [css, await readFile(css)],
]) {
  const br = brotliCompressSync(bytes, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length },
  });
  const gz = gzipSync(bytes, { level: 9 });
  await writeAtomically(`${path}.br`, br);
  await writeAtomically(`${path}.gz`, gz);
  sizes.push(`${path.endsWith('.js') ? 'app.js' : 'app.css'} br ${br.length} gz ${gz.length}`);
}
console.log(`build:ui: public/static/ ${sizes.join(', ')} (${Date.now() - started} ms)`);
