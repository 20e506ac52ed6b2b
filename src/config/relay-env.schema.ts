import { plainToInstance } from 'class-transformer';
import { validateSync, type ValidationError } from 'class-validator';
import { envSpecs, type EnvSpec } from './env.decorator';
import { DeploymentEnv } from './deployment.config';
import { EdgeEnv } from './edge.config';
import { GatewayEnv } from './gateway.config';
import { HealthEnv } from './health.config';
import { LifecycleEnv } from './lifecycle.config';
import { ListenerEnv } from './listener.config';
import { LoggingEnv } from './logging.config';
import { MemoryEnv } from './memory.config';
import { MetricsEnv } from './metrics.config';
import { ProtocolEnv } from './protocol.config';
import { RedisEnv } from './redis.config';
import { RegistryEnv } from './registry.config';
import { StoreEnv } from './store.config';
import { UiEnv } from './ui.config';

/**
 * Every environment variable the relay reads. Each is declared once, with its default, its aliases
 * (the runbook's names and the existing relay's names) and a one-line description, in the
 * `<slice>.config.ts` of the part of the relay that uses it; this list names every slice, in the
 * order of the README table. Validated once at boot; a bad value stops the process with one
 * message listing every bad variable.
 */
export const ENV_SLICES = [
  ListenerEnv,
  DeploymentEnv,
  LoggingEnv,
  HealthEnv,
  RegistryEnv,
  MetricsEnv,
  ProtocolEnv,
  EdgeEnv,
  MemoryEnv,
  StoreEnv,
  RedisEnv,
  LifecycleEnv,
  GatewayEnv,
  UiEnv,
] as const;

type Slice = InstanceType<(typeof ENV_SLICES)[number]>;
type Intersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void
  ? I
  : never;

/** The whole environment, parsed: every slice's properties in one object. */
export type RelayEnvSchema = Intersection<Slice>;

/** Every variable as [schema property, spec], in the README's order. */
export function relayEnvSpecs(): Array<[string, EnvSpec]> {
  return ENV_SLICES.flatMap((slice) => envSpecs(slice.prototype));
}

/** The default of every variable (what an empty environment parses to). */
export function relayEnvDefaults(): RelayEnvSchema {
  return Object.assign({}, ...ENV_SLICES.map((slice) => new slice())) as RelayEnvSchema;
}

/**
 * Converts and validates `raw` (texts keyed by schema property), slice by slice: the parsed
 * environment and every validation error.
 */
export function parseRelayEnv(raw: Readonly<Record<string, string>>): {
  schema: RelayEnvSchema;
  errors: ValidationError[];
} {
  const schema = {} as RelayEnvSchema;
  const errors: ValidationError[] = [];
  for (const slice of ENV_SLICES) {
    const own: Record<string, string> = {};
    for (const [property] of envSpecs(slice.prototype)) {
      if (raw[property] !== undefined) {
        own[property] = raw[property];
      }
    }
    const part: Slice = plainToInstance<Slice, Record<string, string>>(slice, own);
    errors.push(...validateSync(part, { forbidUnknownValues: false }));
    Object.assign(schema, part);
  }
  return { schema, errors };
}
