/**
 * The module graph has one direction (docs/architecture.md). Layers, lowest first; a folder may
 * import its own layer's folder and any lower layer, never a higher one, and nothing may form a
 * cycle. `npm run lint` runs this (`depcruise src`).
 */
const LAYERS = [
  ['config'],
  ['lifecycle'],
  ['common'],
  ['state'],
  ['metrics'],
  ['registry'],
  ['client-lifecycle'],
  ['edge'],
  ['client', 'sink', 'source', 'gateway', 'ui'],
  ['demo'],
  ['health'],
  ['boot'],
];
const folder = (names) => `^src/(${names.join('|')})/`;

const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `layer-${layer.join('-')}`,
  comment: `${layer.join(', ')} may not import a higher layer (${LAYERS.slice(i + 1).flat().join(', ')})`,
  severity: 'error',
  from: { path: folder(layer) },
  to: { path: folder(LAYERS.slice(i + 1).flat()) },
}));

const PROTOCOLS = ['client', 'sink', 'source', 'gateway', 'ui'];
const peers = PROTOCOLS.map((name) => ({
  name: `protocol-${name}-alone`,
  comment: `the protocol modules do not import each other (${name})`,
  severity: 'error',
  from: { path: folder([name]) },
  to: { path: folder(PROTOCOLS.filter((n) => n !== name)) },
}));

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'no import cycles, between folders or files',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'only-the-root-imports-the-root',
      comment: 'main.ts, app.module.ts and app.setup.ts compose the relay; no module imports them',
      severity: 'error',
      from: { path: '^src/[^/]+/' },
      to: { path: '^src/[^/]+\\.ts$' },
    },
    {
      name: 'cli-stays-out-of-the-app',
      comment: 'the smoke CLI uses the crypto and config, never the Nest modules',
      severity: 'error',
      from: { path: '^src/smoke/' },
      to: { path: folder(LAYERS.flat().filter((n) => !['config', 'common'].includes(n))) },
    },
    ...upward,
    ...peers,
  ],
  options: {
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '\\.spec\\.ts$' },
  },
};
