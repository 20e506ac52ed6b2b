// Nest 12 packages are ESM-only; Jest on Node 20 cannot require() them, so @swc/jest compiles
// both our TypeScript and the @nestjs/* files to CommonJS (see docs/decisions.md).
const swc = {
  jsc: {
    parser: { syntax: 'typescript', decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true },
    target: 'es2023',
  },
  module: { type: 'commonjs' },
  sourceMaps: 'inline',
};

module.exports = {
  testEnvironment: 'node',
  rootDir: '.',
  roots: ['<rootDir>/src', '<rootDir>/test'],
  setupFiles: ['<rootDir>/test/env.ts'],
  testRegex: '.*\\.(e2e-)?spec\\.ts$',
  moduleFileExtensions: ['js', 'json', 'ts', 'mjs'],
  transform: { '^.+\\.(t|j|mj)s$': ['@swc/jest', swc] },
  transformIgnorePatterns: [
    '/node_modules/(?!(@nestjs|file-type|strtok3|token-types|uint8array-extras|@tokenizer)/)',
  ],
  testTimeout: 30000,
};
