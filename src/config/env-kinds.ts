import { Transform } from 'class-transformer';
import {
  IsBoolean,
  IsInt,
  IsNumber,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
} from 'class-validator';
import { Env } from './env.decorator';

// The kinds of variable the slices declare (`*.config.ts`): each one decorator that names the
// variable, converts its text and validates it, so a declaration is its names, its doc line, its
// bounds and its default.

type Names = string | readonly string[];

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);

/** Strings that look like numbers become numbers; anything else stays a string and fails validation. */
const ToNumber = (): PropertyDecorator =>
  Transform(({ value }: { value: unknown }) => {
    if (typeof value !== 'string') {
      return value;
    }
    const trimmed = value.trim();
    const n = Number(trimmed);
    return trimmed !== '' && Number.isFinite(n) ? n : value;
  });

const ToBoolean = (): PropertyDecorator =>
  Transform(({ value }: { value: unknown }) => {
    if (typeof value !== 'string') {
      return value;
    }
    const v = value.trim().toLowerCase();
    if (TRUE.has(v)) {
      return true;
    }
    return FALSE.has(v) || v === '' ? false : value;
  });

export const Trim = (): PropertyDecorator =>
  Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value));

/** Lower-cases and trims the value (one-word choices such as `redis`). */
export const ToWord = (): PropertyDecorator =>
  Transform(({ value }: { value: unknown }) =>
    typeof value === 'string' ? value.trim().toLowerCase() : value,
  );

/** Applies decorators in the order written (the order they would run stacked bottom-up). */
function all(...decorators: PropertyDecorator[]): PropertyDecorator {
  return (target, property) => {
    for (const decorate of decorators) {
      decorate(target, property);
    }
  };
}

interface NumberOptions {
  /** No default: unset stays undefined (the relay derives the value). */
  optional?: boolean;
}

/** A number kind: its validator applied to a value in [min, max]. */
function numberKind(kind: () => PropertyDecorator) {
  return (
    names: Names,
    doc: string,
    min: number,
    max: number,
    options: NumberOptions = {},
  ): PropertyDecorator =>
    all(
      Max(max),
      Min(min),
      kind(),
      ...(options.optional ? [IsOptional()] : []),
      ToNumber(),
      Env(names, doc),
    );
}

/** A whole number in [min, max]. */
export const IntEnv = numberKind(() => IsInt());

/** A number (fractions allowed) in [min, max]. */
export const NumberEnv = numberKind(() => IsNumber());

/** A switch: 1/true/yes/on or 0/false/no/off (empty: off). */
export function BoolEnv(names: Names, doc: string): PropertyDecorator {
  return all(IsBoolean(), ToBoolean(), Env(names, doc));
}

/** Free text of at most `maxLength` characters (`secret`: never echoed in errors). */
export function TextEnv(
  names: Names,
  doc: string,
  maxLength: number,
  secret = false,
): PropertyDecorator {
  return all(MaxLength(maxLength), IsString(), Env(names, doc, secret));
}

interface PatternOptions {
  /** Never echoed in errors. */
  secret?: boolean;
  /** Trim the value first (default); off where spaces would be part of the value. */
  trim?: boolean;
}

/** Text matching `pattern` (else `message`). */
export function PatternEnv(
  names: Names,
  doc: string,
  pattern: RegExp,
  message: string,
  { secret = false, trim = true }: PatternOptions = {},
): PropertyDecorator {
  return all(Matches(pattern, { message }), ...(trim ? [Trim()] : []), Env(names, doc, secret));
}

/** `60/hour`, `60 per hour`, `10/minute`, `1000/day`, or `off`. */
const RATE_LIMIT = /^(off|\d+\s*(\/|per)\s*(\d+\s*)?(second|minute|hour|day)s?)$/i;
const RATE_LIMIT_OR_EMPTY = new RegExp(`^$|${RATE_LIMIT.source}`, 'i');
const RATE_LIMIT_MESSAGE = 'must look like "60/hour", "10 per minute" or "off"';

/** A rate limit (see {@link RATE_LIMIT}); `orEmpty`: empty is allowed too (a default applies). */
export function RateLimitEnv(names: Names, doc: string, orEmpty = false): PropertyDecorator {
  return PatternEnv(names, doc, orEmpty ? RATE_LIMIT_OR_EMPTY : RATE_LIMIT, RATE_LIMIT_MESSAGE);
}

/** Splits a comma- or space-separated list, dropping empty items. */
export function splitList(value: string): string[] {
  return value
    .split(/[,\s]+/)
    .map((v) => v.trim())
    .filter(Boolean);
}
