// Bundles the browser UI (src/ui/web/main.ts) into public/static/app.js with esbuild: no CDN, no
// runtime network, one script the page's CSP allows. node-forge is reduced to the RSA modules the
// PKCS#1 v1.5 unwrap needs. Written atomically so a running relay never serves half a file.
import { build } from 'esbuild';
import { mkdir, rename, writeFile } from 'node:fs/promises';
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

const [file] = result.outputFiles;
await mkdir(dirname(outfile), { recursive: true });
const tmp = `${outfile}.${process.pid}.tmp`;
await writeFile(tmp, file.contents);
await rename(tmp, outfile);
console.log(
  `build:ui: public/static/app.js ${file.contents.length} bytes in ${Date.now() - started} ms`,
);
