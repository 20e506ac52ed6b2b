import type { ValidationError } from 'class-validator';
import { deploymentSettings, type DeploymentSettings } from './deployment.config';
import { bodyProblems, edgeSettings, type EdgeSettings } from './edge.config';
import { gatewaySettings, type GatewaySettings } from './gateway.config';
import { healthSettings, type HealthSettings } from './health.config';
import { lifecycleProblems, lifecycleSettings, type LifecycleSettings } from './lifecycle.config';
import { listenerSettings, type ListenerSettings } from './listener.config';
import type { LoggingSettings } from './logging.config';
import { runtimeMemory, type RuntimeMemory } from './memory-budget';
import { memoryPlanOf } from './memory.config';
import { metricsSettings, type MetricsSettings } from './metrics.config';
import { protocolProblems, protocolSettings, type ProtocolSettings } from './protocol.config';
import { redisProblems, redisSettings, type RedisSettings } from './redis.config';
import { blankTokenProblems, registrySettings, type RegistrySettings } from './registry.config';
import { parseRelayEnv, relayEnvSpecs } from './relay-env.schema';
import { storeSettings, type StoreSettings } from './store.config';
import type { UiSettings } from './ui.config';
import { unknownVariableWarnings, type EnvWarning } from './unknown-env';

export { isLoopbackHost } from './listener.config';
export {
  CONTROL_DEFAULTS,
  CONTROL_ROUTES,
  MIN_BODY_CHARGE_BYTES,
  parseRateLimit,
  type BodyLimits,
  type ControlRoute,
  type RateLimit,
} from './edge.config';
export { DEFAULT_BLOCKED_TERMS, type GatewayConfig } from './gateway.config';
export { PRE_HASH_TAG_PREFIX, type RedisEndpoint, type RedisTopology } from './redis.config';
export { ANSWER_RETRY_MS } from './store.config';

export type EnvSource = Readonly<Record<string, string | undefined>>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid relay configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** Every slice's settings: the shape of {@link RelayConfig}. */
export type RelaySettings = ListenerSettings &
  DeploymentSettings &
  LoggingSettings &
  HealthSettings &
  RegistrySettings &
  MetricsSettings &
  ProtocolSettings &
  EdgeSettings &
  StoreSettings &
  RedisSettings &
  LifecycleSettings &
  GatewaySettings &
  UiSettings & {
    /** Memory sizing problems that do not stop the relay (logged as warnings at boot). */
    readonly memoryWarnings: readonly string[];
    /** Variables that look like settings but are not (typos): logged at boot, never fatal. */
    readonly warnings: readonly EnvWarning[];
  };

/** A class whose instances carry exactly the settings they are built with. */
function settingsClass<T extends object>(): new (settings: T) => Readonly<T> {
  return class {
    constructor(settings: T) {
      Object.assign(this, settings);
    }
  } as new (settings: T) => Readonly<T>;
}

/**
 * The relay's configuration, parsed and validated once at boot: one object made of every slice's
 * settings, each built by the `<slice>.config.ts` that declares its variables. `process.env` is
 * read only in `src/config/`; everything else receives this object.
 */
export class RelayConfig extends settingsClass<RelaySettings>() {
  /** `next_poll_seconds` hint for active control answers (spec §4.4.3). */
  get controlNextPollSeconds(): number {
    const hint = Math.max(this.limits.inFlightTtlMs / 2000, 1);
    return Math.max(1, Math.min(this.pollWaitSeconds, 10, hint));
  }

  /** Names and docs of every variable, for the README table check. */
  static describe(): Array<{ property: string; names: readonly string[]; doc: string }> {
    return relayEnvSpecs().map(([property, spec]) => ({
      property,
      names: spec.names,
      doc: spec.doc,
    }));
  }

  /**
   * Reads the relay's variables from `env` (first alias found wins) plus `--host`/`--port` flags,
   * validates all of them, sizes the memory caps from `runtime` (the process's own cgroup and heap
   * limits unless given), and throws one {@link ConfigError} listing every problem.
   */
  static load(
    env: EnvSource,
    argv: readonly string[] = [],
    runtime: RuntimeMemory = runtimeMemory(),
  ): RelayConfig {
    const specs = relayEnvSpecs();
    const raw: Record<string, string> = {};
    const source: Record<string, string> = {};
    for (const [property, spec] of specs) {
      const name = spec.names.find((n) => env[n] !== undefined);
      if (name !== undefined) {
        raw[property] = env[name] as string;
        source[property] = name;
      }
    }
    const problems: string[] = [];
    const flags = parseFlags(argv, problems);
    Object.assign(raw, flags);
    for (const key of Object.keys(flags)) {
      source[key] = `--${key}`;
    }
    problems.push(...blankTokenProblems(raw, source));

    const { schema: s, errors } = parseRelayEnv(raw);
    for (const error of errors) {
      problems.push(describeError(error, source, raw));
    }
    if (problems.length === 0) {
      problems.push(
        ...redisProblems(s, source),
        ...lifecycleProblems(s),
        ...bodyProblems(s),
        ...protocolProblems(s),
      );
    }
    if (problems.length > 0) {
      throw new ConfigError(problems);
    }
    const memory = memoryPlanOf(s, runtime);
    if (memory.plan === null) {
      throw new ConfigError(memory.problems);
    }
    const explicit = new Set(Object.keys(source));
    const listener = listenerSettings(s);
    return new RelayConfig({
      ...listener,
      ...deploymentSettings(s),
      logLevel: s.logLevel,
      ...healthSettings(s),
      ...registrySettings(s),
      ...metricsSettings(s),
      ...protocolSettings(s),
      ...edgeSettings(s, listener, explicit),
      ...storeSettings(s, memory.plan),
      ...redisSettings(s, explicit.has('redisKeyPrefix')),
      ...lifecycleSettings(s),
      ...gatewaySettings(s),
      uiEnabled: s.uiEnabled,
      memoryWarnings: memory.warnings,
      warnings: unknownVariableWarnings(
        env,
        specs.flatMap(([, spec]) => spec.names),
      ),
    });
  }
}

const KIND_CONSTRAINTS = ['isInt', 'isNumber', 'isBoolean', 'isString', 'isIn'];

function describeError(
  error: ValidationError,
  source: Record<string, string>,
  raw: Record<string, string>,
): string {
  const spec = relayEnvSpecs().find(([p]) => p === error.property)?.[1];
  const name = source[error.property] ?? spec?.names[0];
  const shown = spec?.secret ? '(hidden)' : JSON.stringify(raw[error.property] ?? error.value);
  const constraints = error.constraints ?? {};
  // A value of the wrong kind gets one clear reason ("must be a number"), not its range checks.
  const kind = KIND_CONSTRAINTS.find((name) => constraints[name] !== undefined);
  const messages = kind !== undefined ? [constraints[kind] as string] : Object.values(constraints);
  const reasons = messages.map((m) => m.replace(error.property, 'value'));
  return `${name}=${shown}: ${reasons.join('; ')}`;
}

function parseFlags(argv: readonly string[], problems: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (arg === '--use_mock_llm' || arg === '--use-mock-llm') {
      out.useMockLlm = 'true';
      continue;
    }
    const m = /^--(host|port)(?:=(.*))?$/.exec(arg);
    if (!m) {
      if (arg.startsWith('--')) {
        problems.push(`unknown flag ${arg} (accepted: --host, --port, --use_mock_llm)`);
      }
      continue;
    }
    const value = m[2] ?? argv[i + 1];
    if (m[2] === undefined) {
      i += 1;
    }
    if (value === undefined) {
      problems.push(`--${m[1]} needs a value`);
    } else {
      out[m[1] as string] = value;
    }
  }
  return out;
}

/** The process environment: the only place `process.env` is read (CLIs such as smoke use it too). */
export function processEnv(): EnvSource {
  return process.env;
}

/** The relay's configuration from the process environment and command line. */
export function loadProcessConfig(): RelayConfig {
  return RelayConfig.load(processEnv(), process.argv.slice(2));
}
