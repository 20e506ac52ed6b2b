import { closest, distance } from 'fastest-levenshtein';

/** Name families a misspelt relay setting would belong to. */
const FAMILIES = /^(TOKENPLACE_|TOKEN_PLACE_|RELAY_|API_)/;

/**
 * Names in those families that are not relay settings but are set in real deployments, each with
 * why the relay ignores it. They get a short note instead of a "did you mean".
 */
const NOT_OURS: ReadonlyArray<readonly [RegExp, string]> = [
  [
    /^(RELAY_WORKERS|RELAY_THREADS|RELAY_GRACEFUL_TIMEOUT|RELAY_TIMEOUT|RELAY_WORKER_TMP_DIR)$/,
    'a gunicorn setting of the existing Python relay; this relay is one Node.js process (scale with replicas and the Redis store)',
  ],
  [
    /^(TOKENPLACE|TOKEN_PLACE)_RELAY_(URL|BASE_URL|PORT|UPSTREAM_URL|CLUSTER_ONLY)$|^TOKEN_PLACE_RELAY_UPSTREAM_URL$|^RELAY_URL$/,
    'read by compute nodes to find their relay; the relay listens on RELAY_HOST:RELAY_PORT',
  ],
  [
    /^TOKENPLACE_API_V1_(COMPUTE_PROVIDER|DISTRIBUTED_FALLBACK|DISTRIBUTED_RELAY_URL|ENFORCE_RELAY_DISTRIBUTED)$|^TOKENPLACE_DISTRIBUTED_(RELAY|COMPUTE)_URL$|^(TOKENPLACE_|TOKEN_PLACE_)?RELAY_INTERNAL_URL$/,
    "the existing relay's gateway provider selection; this relay's gateway always dispatches to compute nodes in process",
  ],
  [/^TOKENPLACE_MAX_POLL_FAILURES$/, 'read by compute nodes (how many failed polls they tolerate)'],
  [
    /^TOKENPLACE_FRONTEND_MODE$/,
    "the existing relay's Vue build switch; this relay serves one bundled page",
  ],
  [
    /^TOKENPLACE_GATEWAY_KEY_POOL_SIZE$/,
    'retired: the gateway seals every chat under one client key per process (see TOKENPLACE_GATEWAY_CLIENT_KEY_ROTATE_SECONDS)',
  ],
  [/^TOKENPLACE_REQUIRE_[A-Z_]+$/, "a switch of this project's test suite (npm test)"],
  [
    /^(TOKENPLACE_RATE_LIMIT_STORAGE_URI|TOKEN_PLACE_CONFIG)$/,
    'an existing-relay setting with no equivalent here (rate limits live in the state store; configuration is environment only)',
  ],
];

/** Kubernetes service links (`<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT_80_TCP_ADDR`, ...). */
const SERVICE_LINK =
  /_SERVICE_HOST$|_SERVICE_PORT(_[A-Z0-9_]+)?$|_PORT_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?$/;

export interface EnvWarning {
  variable: string;
  message: string;
  suggestion?: string;
}

/**
 * Variables that look like relay settings but are not (a typo silently starting the relay with
 * a default is the worst kind of configuration error): one warning each, naming the closest known
 * variable when one is near. Never fatal: the environment of a container carries all sorts.
 */
export function unknownVariableWarnings(
  env: Readonly<Record<string, string | undefined>>,
  known: readonly string[],
): EnvWarning[] {
  const knownSet = new Set(known);
  const warnings: EnvWarning[] = [];
  for (const variable of Object.keys(env).sort()) {
    if (!FAMILIES.test(variable) || knownSet.has(variable) || SERVICE_LINK.test(variable)) {
      continue;
    }
    const note = NOT_OURS.find(([pattern]) => pattern.test(variable));
    if (note) {
      warnings.push({ variable, message: `${variable} is ignored: ${note[1]}` });
      continue;
    }
    const candidate = closest(variable, known);
    const near = distance(variable, candidate) <= Math.max(3, Math.floor(variable.length / 5));
    warnings.push({
      variable,
      message: near
        ? `${variable} is not a setting of this relay and is ignored; did you mean ${candidate}?`
        : `${variable} is not a setting of this relay and is ignored`,
      ...(near ? { suggestion: candidate } : {}),
    });
  }
  return warnings;
}
