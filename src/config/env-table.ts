import { relayEnvDefaults, relayEnvSpecs } from './relay-env.schema';

/** The README's environment table, generated from the schema (a test keeps the README in sync). */
export function envTable(): string {
  const defaults = relayEnvDefaults() as unknown as Record<string, unknown>;
  const rows = relayEnvSpecs().map(([property, spec]) => {
    const value = defaults[property];
    const shown =
      typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
        ? value === ''
          ? '_(unset)_'
          : `\`${value}\``
        : '_(unset)_';
    const names = spec.names.map((n) => `\`${n}\``).join(' / ');
    return `| ${names} | ${shown} | ${spec.doc.replace(/\|/g, '\\|')} |`;
  });
  return ['| Variable | Default | Purpose |', '| --- | --- | --- |', ...rows].join('\n');
}

if (require.main === module) {
  process.stdout.write(`${envTable()}\n`);
}
