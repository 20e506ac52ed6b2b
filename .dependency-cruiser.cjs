/**
 * The module graph has one direction (docs/architecture.md). Layers, lowest first; a folder may
 * import its own layer's folder and any lower layer, never a higher one, and nothing may form a
 * cycle. `npm run lint` runs this (`depcruise src`).
 */
const LAYERS = [
  ['config'],
  ['lifecycle'],
  ['common'],
  ['peer'],
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
  comment: `${layer.join(', ')} may not import a higher layer (${LAYERS.slice(i + 1)
    .flat()
    .join(', ')})`,
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
      comment:
        'the smoke CLI speaks through the peer library and reads config, never the Nest modules',
      severity: 'error',
      from: { path: '^src/(cli|smoke)/' },
      to: { path: folder(LAYERS.flat().filter((n) => !['config', 'peer'].includes(n))) },
    },
    {
      name: 'nothing-imports-the-cli',
      comment:
        'src/cli/ (and its image alias src/smoke/) are entry points, not modules of the relay',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(cli|smoke)/' },
      to: { path: '^src/(cli|smoke)/' },
    },
    {
      name: 'peer-is-a-plain-library',
      comment:
        'src/peer/ (the protocol peer library) imports only itself and the hybrid crypto: no Nest, no relay module',
      severity: 'error',
      from: { path: '^src/peer/' },
      to: { path: '^src/', pathNot: '^src/(peer/|common/hybrid\\.crypto\\.ts$)' },
    },
    {
      name: 'peer-crypto-needs-only-node-forge',
      comment: 'the peer library and the hybrid crypto it uses take no npm package but node-forge',
      severity: 'error',
      from: { path: '^src/(peer/|common/hybrid\\.crypto\\.ts$)' },
      to: {
        dependencyTypes: [
          'npm',
          'npm-dev',
          'npm-optional',
          'npm-peer',
          'npm-no-pkg',
          'npm-unknown',
        ],
        pathNot: 'node_modules/node-forge/',
      },
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
