import {
  plainToInstance,
  Transform,
  type ClassConstructor,
  type TransformFnParams,
} from 'class-transformer';
import { validateSync } from 'class-validator';
import 'reflect-metadata';
import { Errors, RelayError } from './relay-error';

/** Keys that would mean plaintext reached the relay (spec §4.3). */
export const PLAINTEXT_KEYS = [
  'messages',
  'prompt',
  'input',
  'content',
  'response',
  'text',
] as const;

export interface BodyRules {
  /** Error for a body that is not a JSON object, and the default for an invalid field. */
  invalid: () => RelayError;
  /** Reject plaintext-looking keys, then keys outside this list (spec §4.3 order). */
  allowlist?: readonly string[];
  /** Key set must equal the allowlist exactly, with this error (progress). */
  exactKeys?: () => RelayError;
}

const RULES = Symbol('relay:body-rules');
const FIELD_ERRORS = Symbol('relay:field-errors');
const COERCES = Symbol('relay:coerces');

/**
 * class-transformer's `@Transform` for body DTOs, which also marks the class: bodies of DTOs
 * without coercions skip class-transformer entirely (measured ~3% of a legacy cycle).
 */
export function Coerce(fn: (params: TransformFnParams) => unknown): PropertyDecorator {
  return (target, property) => {
    Transform(fn)(target, property);
    Reflect.defineMetadata(COERCES, true, target.constructor);
  };
}

/** Declares how a DTO class is checked and which error a bad body gets. */
export function BodyShape(rules: BodyRules): ClassDecorator {
  return (target) => {
    Reflect.defineMetadata(RULES, rules, target);
  };
}

/**
 * Marks a validated property and the error it gets when invalid (default: the body's `invalid`).
 * Every validated property carries it; they are checked in declaration order and the first
 * failing one decides, which reproduces the spec's check order per route.
 */
export function FailsAs(error?: () => RelayError): PropertyDecorator {
  return (target, property) => {
    const list = (Reflect.getMetadata(FIELD_ERRORS, target) ?? []) as Array<
      [string, (() => RelayError) | undefined]
    >;
    Reflect.defineMetadata(FIELD_ERRORS, [...list, [String(property), error]], target);
  };
}

/** Own-property copy that never invokes setters (a `__proto__` key stays a plain property). */
function copyOwn<T extends object>(target: T, source: Record<string, unknown>): T {
  for (const key of Object.keys(source)) {
    Object.defineProperty(target, key, {
      value: source[key],
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return target;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Validates a request body against a DTO class: object shape, plaintext and allowlist guards, then
 * class-validator types and sizes. Throws the route's wire error; returns the typed DTO.
 * Shape is validated, content never: ciphertext fields are bounded strings, nothing more.
 */
export function parseBody<T extends object>(cls: ClassConstructor<T>, body: unknown): T {
  const rules = Reflect.getMetadata(RULES, cls) as BodyRules | undefined;
  if (!rules) {
    throw new Error(`${cls.name} has no @BodyShape`);
  }
  if (!isPlainObject(body)) {
    throw rules.invalid();
  }
  const keys = Object.keys(body);
  if (rules.exactKeys && rules.allowlist) {
    const allowed = rules.allowlist;
    if (keys.length !== allowed.length || !allowed.every((k) => Object.hasOwn(body, k))) {
      throw rules.exactKeys();
    }
  } else if (rules.allowlist) {
    if (keys.some((k) => (PLAINTEXT_KEYS as readonly string[]).includes(k))) {
      throw Errors.plaintextForbidden();
    }
    const allowed = rules.allowlist;
    if (keys.some((k) => !allowed.includes(k))) {
      throw Errors.unexpectedFields();
    }
  }
  // class-transformer recurses into nested values and overflows the stack on deeply nested
  // bodies; DTO fields are flat, so it only ever sees a shallow copy (nested values stand in as
  // empty containers of the same kind, which every field validator treats like the original).
  const shallow: Record<string, unknown> = {};
  for (const key of keys) {
    const value = body[key];
    Object.defineProperty(shallow, key, {
      value: typeof value === 'object' && value !== null ? (Array.isArray(value) ? [] : {}) : value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  const dto =
    Reflect.getMetadata(COERCES, cls) === true
      ? plainToInstance(cls, shallow, { excludeExtraneousValues: false })
      : copyOwn(new cls(), shallow);
  const errors = validateSync(dto, {
    whitelist: true,
    forbidUnknownValues: false,
    stopAtFirstError: true,
  });
  if (errors.length > 0) {
    const failing = new Set(errors.map((e) => e.property));
    const fields = (Reflect.getMetadata(FIELD_ERRORS, cls.prototype as object) ?? []) as Array<
      [string, (() => RelayError) | undefined]
    >;
    const first = fields.find(([property]) => failing.has(property));
    throw (first?.[1] ?? rules.invalid)();
  }
  // Put the real nested values back where the DTO still holds a (copied) placeholder container,
  // not where a transform replaced it with something else.
  const out = dto as Record<string, unknown>;
  for (const key of keys) {
    const held = out[key];
    if (shallow[key] !== body[key] && typeof held === 'object' && held !== null) {
      out[key] = body[key];
    }
  }
  return dto;
}
