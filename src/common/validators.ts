import { ValidateBy, type ValidationOptions } from 'class-validator';

/** Largest public key, id or token the relay stores (spec §9: identities ≤ 8192 bytes). */
export const MAX_KEY_CHARS = 8192;
export const MAX_ID_CHARS = 256;
export const MAX_TOKEN_CHARS = 1024;
/** Ciphertext is bounded by the body-size limit; this only guards against absurd values. */
export const MAX_CIPHERTEXT_CHARS = 64 * 1024 * 1024;

/**
 * A string of at most `max` UTF-16 units, non-blank unless `allowEmpty`. O(1): ciphertext can be
 * megabytes and the relay never looks inside it.
 */
export function Str(
  max: number,
  opts: { allowEmpty?: boolean } = {},
  validation?: ValidationOptions,
): PropertyDecorator {
  return ValidateBy(
    {
      name: 'boundedString',
      validator: {
        validate: (value: unknown) =>
          typeof value === 'string' &&
          value.length <= max &&
          (opts.allowEmpty === true ||
            (value.length > 0 && (value.length > 64 || value.trim() !== ''))),
        defaultMessage: () => `must be a non-empty string of at most ${max} characters`,
      },
    },
    validation,
  );
}

/** A value that must simply be present (any JSON value but null). */
export function Present(validation?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'present',
      validator: {
        validate: (value: unknown) => value !== undefined && value !== null,
        defaultMessage: () => 'is required',
      },
    },
    validation,
  );
}

/** `version` passes through as sent; real clients send the number 1. */
export function VersionLike(validation?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'versionLike',
      validator: {
        validate: (value: unknown) =>
          (typeof value === 'number' && Number.isFinite(value)) ||
          (typeof value === 'string' && value.length <= 32),
        defaultMessage: () => 'must be a number or a short string',
      },
    },
    validation,
  );
}

/**
 * Truthiness as the existing relay's Python reads a JSON value: `false`, `null`, `0`, `""`, `[]`
 * and `{}` are false; everything else (including the string `"false"`) is true.
 */
export function isTruthy(value: unknown): boolean {
  if (value === null || value === undefined || value === false || value === 0 || value === '') {
    return false;
  }
  if (Array.isArray(value)) {
    return value.length > 0;
  }
  if (typeof value === 'object') {
    return Object.keys(value).length > 0;
  }
  return true;
}

/** True when `value` nests deeper than `max` containers (iterative: hostile depth is cheap). */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop() as [unknown, number];
    if (typeof current !== 'object' || current === null) {
      continue;
    }
    if (depth >= max) {
      return true;
    }
    for (const child of Object.values(current)) {
      if (typeof child === 'object' && child !== null) {
        stack.push([child, depth + 1]);
      }
    }
  }
  return false;
}
