import 'reflect-metadata';

export interface EnvSpec {
  /** Accepted variable names, first found wins (runbook names first, then the existing relay's). */
  names: readonly string[];
  /** One line for the README env table. */
  doc: string;
  /** Marks secrets: never echoed in error messages. */
  secret?: boolean;
}

const ENV_KEY = Symbol('relay:env');

/** Declares where a config property comes from. The property initialiser is its default. */
export function Env(
  names: string | readonly string[],
  doc: string,
  secret = false,
): PropertyDecorator {
  return (target, property) => {
    const list = (Reflect.getMetadata(ENV_KEY, target) ?? []) as Array<[string, EnvSpec]>;
    list.push([
      String(property),
      { names: typeof names === 'string' ? [names] : names, doc, secret },
    ]);
    Reflect.defineMetadata(ENV_KEY, list, target);
  };
}

export function envSpecs(target: object): Array<[string, EnvSpec]> {
  return (Reflect.getMetadata(ENV_KEY, target) ?? []) as Array<[string, EnvSpec]>;
}
