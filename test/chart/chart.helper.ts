import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { requirement } from '../helpers/requirements';

/** Shared plumbing of the chart, image and workflow checks (ops.md §6): tools, renders, lookups. */
export const ROOT = join(__dirname, '..', '..');
export const CHART = join(ROOT, 'helm', 'tokenplace-relay');
export const EXAMPLES = join(ROOT, 'docs', 'examples');
export const FIXTURES = join(__dirname, 'fixtures');
export const SCRATCH = join(ROOT, '.tools', 'scratch');
export const HELM = process.env.HELM_BIN ?? join(ROOT, '.tools', 'bin', 'helm');

export function commandWorks(command: string, args: string[]): boolean {
  try {
    return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
  } catch {
    return false;
  }
}

export const helmReady = (): boolean =>
  requirement(
    'Helm chart',
    existsSync(HELM) && commandWorks(HELM, ['version']),
    'TOKENPLACE_REQUIRE_CHART_TOOLS',
    'run bash scripts/install-tools.sh',
  );

export const promtoolReady = (): boolean =>
  requirement(
    'promtool',
    commandWorks('promtool', ['--version']),
    'TOKENPLACE_REQUIRE_PROMTOOL',
    'apt-get install prometheus',
  );

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: string[], input?: string): Run {
  const r = spawnSync(command, args, {
    cwd: ROOT,
    input,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) {
    throw r.error;
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface K8s {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: unknown;
}

/** Reads a dotted path (`spec.template.spec.containers.0.name`); undefined when absent. */
export function get<T = unknown>(value: unknown, path: string): T {
  let cur: unknown = value;
  for (const key of path.split('.')) {
    if (cur === null || typeof cur !== 'object') {
      return undefined as T;
    }
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur as T;
}

export interface Probe {
  httpGet: { path: string; port: string | number };
  periodSeconds: number;
  timeoutSeconds: number;
  failureThreshold: number;
}

export interface Container {
  name: string;
  image: string;
  imagePullPolicy: string;
  command?: string[];
  env?: EnvVar[];
  ports?: Array<{ name: string; containerPort: number; protocol: string }>;
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } };
  securityContext?: Record<string, unknown>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}

export interface PodSpec {
  containers: Container[];
  volumes?: Array<{
    name: string;
    emptyDir?: { sizeLimit?: string };
    secret?: { secretName: string };
  }>;
  securityContext?: Record<string, unknown>;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
  serviceAccountName?: string;
}

export interface RenderOptions {
  release?: string;
  namespace?: string;
  /** Values files, relative to the repository root. */
  values?: string[];
  set?: string[];
  extra?: string[];
}

export function helmArgs(o: RenderOptions): string[] {
  const args = [
    'template',
    o.release ?? 'relay',
    CHART,
    '--namespace',
    o.namespace ?? 'tokenplace-relay',
  ];
  for (const file of o.values ?? []) {
    args.push('-f', join(ROOT, file));
  }
  for (const s of o.set ?? []) {
    args.push('--set', s);
  }
  return [...args, ...(o.extra ?? [])];
}

export interface Rendered {
  text: string;
  docs: K8s[];
}

/** `helm template`; throws with Helm's message when the render fails. */
export function render(o: RenderOptions = {}): Rendered {
  const r = run(HELM, helmArgs(o));
  if (r.status !== 0) {
    throw new Error(`helm template failed: ${r.stderr}`);
  }
  return { text: r.stdout, docs: parseDocs(r.stdout) };
}

/** `helm template` expected to fail: returns Helm's error output. */
export function renderError(o: RenderOptions): string {
  const r = run(HELM, helmArgs(o));
  if (r.status === 0) {
    throw new Error(`helm template unexpectedly succeeded with ${JSON.stringify(o)}`);
  }
  return r.stderr;
}

export function parseDocs(text: string): K8s[] {
  return parseAllDocuments(text)
    .map((d) => d.toJSON() as K8s | null)
    .filter((d): d is K8s => d !== null && typeof d === 'object');
}

export function find(docs: K8s[], kind: string): K8s[] {
  return docs.filter((d) => d.kind === kind);
}

export function one(docs: K8s[], kind: string): K8s {
  const found = find(docs, kind);
  if (found.length !== 1) {
    throw new Error(`expected one ${kind}, found ${found.length}`);
  }
  return found[0] as K8s;
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}

export function podSpec(docs: K8s[]): PodSpec {
  return get<PodSpec>(one(docs, 'Deployment'), 'spec.template.spec');
}

export function relayContainer(docs: K8s[]): Container {
  const container = podSpec(docs).containers.find((c) => c.name === 'relay');
  if (!container) {
    throw new Error('no container named relay');
  }
  return container;
}

export function envList(docs: K8s[]): EnvVar[] {
  return relayContainer(docs).env ?? [];
}

export function envMap(docs: K8s[]): Record<string, EnvVar> {
  return Object.fromEntries(envList(docs).map((e) => [e.name, e]));
}

/** A scratch directory inside the repository (git-ignored .tools/), so node_modules resolve. */
export function scratch(name: string): string {
  const dir = join(SCRATCH, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function writeScratch(name: string, file: string, content: string): string {
  const path = join(scratch(name), file);
  writeFileSync(path, content);
  return path;
}

/** Sugarkube's own tokenplace values (restated as fixtures), in the order its recipe layers them. */
export const SUGARKUBE_VALUES = [
  'test/chart/fixtures/sugarkube-dev.values.yaml',
  'test/chart/fixtures/sugarkube-staging.values.yaml',
];

/**
 * The renders every check runs over: defaults, the runbook's staging values through both Sugarkube
 * recipes (ops.md §2), HA with the chart's Valkey, monitoring on and off, and the option edge cases.
 */
export const MATRIX: Record<string, RenderOptions> = {
  defaults: {},
  'runbook staging, Dec-2025 recipe (default_tag=main-latest)': {
    release: 'tokenplace-relay',
    namespace: 'tokenplace-relay',
    values: ['docs/examples/tokenplace-relay.values.staging.yaml'],
    set: ['image.tag=main-latest', 'image.pullPolicy=Always'],
  },
  'runbook staging with monitoring, Dec-2025 recipe (tag=main-<sha7>)': {
    release: 'tokenplace-relay',
    namespace: 'tokenplace-relay',
    values: [
      'docs/examples/tokenplace-relay.values.staging.yaml',
      'docs/examples/tokenplace-relay.values.monitoring.yaml',
    ],
    set: ['image.tag=main-0123abc', 'image.pullPolicy=Always'],
  },
  'Sugarkube staging, Aug-2026 recipe (app=tokenplace env=staging), its values unchanged': {
    release: 'tokenplace',
    namespace: 'tokenplace',
    values: SUGARKUBE_VALUES,
    set: ['ingress.host=staging.token.place', 'image.tag=main-0123abc', 'image.pullPolicy=Always'],
  },
  'HA with the chart-managed Valkey (example values)': {
    release: 'tokenplace',
    namespace: 'tokenplace',
    values: ['docs/examples/tokenplace-relay.values.ha-redis.yaml'],
    set: ['image.tag=main-0123abc'],
  },
  'HA on Sentinel (Bitnami valkey, example values)': {
    release: 'tokenplace',
    namespace: 'tokenplace',
    values: ['docs/examples/tokenplace-relay.values.ha-sentinel.yaml'],
    set: ['image.tag=main-0123abc'],
  },
  'Redis Cluster, hash-tagged prefix, two replicas': {
    set: [
      'state.store=redis',
      'state.redis.cluster.nodes={redis-0.redis:6379,redis-1.redis:6379}',
      'state.redis.password.existingSecret=redis-auth',
      'replicaCount=2',
    ],
  },
  'external Redis, fixed 3 replicas, no autoscaling': {
    set: ['state.store=redis', 'state.redis.existingSecret=redis-url', 'replicaCount=3'],
  },
  'Valkey with a password, no persistence, one replica': {
    set: [
      'state.store=redis',
      'valkey.auth.existingSecret=valkey-password',
      'valkey.persistence.enabled=false',
    ],
  },
  'ServiceMonitor, alerts and dashboard on, node token Secret, TLS ingress': {
    set: [
      'metrics.enabled=true',
      'metrics.auth.existingSecret=relay-metrics',
      'serviceMonitor.enabled=true',
      'prometheusRule.enabled=true',
      'grafanaDashboard.enabled=true',
      'nodeAuth.existingSecret=relay-node-token',
      'ingress.host=relay.example.org',
      'ingress.tls.enabled=true',
      'service.port=80',
    ],
  },
  'env as a list, token file, digest, native sleep, service account': {
    set: [
      'env[0].name=TOKEN_PLACE_ENV',
      'env[0].value=production',
      'nodeAuth.tokensFile.existingSecret=relay-node-tokens',
      `image.digest=sha256:${'a'.repeat(64)}`,
      'lifecycle.sleepAction=true',
      'serviceAccount.create=true',
      'networkPolicy.restrictEgress=false',
    ],
  },
  'ServiceMonitor CRD required and present': {
    set: [
      'metrics.enabled=true',
      'metrics.auth.existingSecret=m',
      'serviceMonitor.enabled=true',
      'serviceMonitor.requireCRD=true',
    ],
    extra: ['--api-versions', 'monitoring.coreos.com/v1/ServiceMonitor'],
  },
  'Kubernetes 1.29, no memory limit, ingress off': {
    set: ['resources.limits.memory=null', 'ingress.enabled=false'],
    extra: ['--kube-version', '1.29.0'],
  },
};

/**
 * NOTES.txt as `helm install` would print it: `helm template` never renders NOTES, so a scratch copy
 * of the chart wraps it in a ConfigMap template and renders only that.
 */
export function renderNotes(o: RenderOptions = {}): string {
  const dir = join(scratch('notes'), 'tokenplace-relay');
  rmSync(dir, { recursive: true, force: true });
  cpSync(CHART, dir, { recursive: true });
  const notes = readFileSync(join(CHART, 'templates', 'NOTES.txt'), 'utf8');
  writeFileSync(
    join(dir, 'templates', 'notes-as-configmap.yaml'),
    [
      'apiVersion: v1',
      'kind: ConfigMap',
      'metadata:',
      '  name: notes',
      'data:',
      '  notes: |-',
      ...notes.split('\n').map((l) => (l.startsWith('{{-') ? l : `    ${l}`)),
    ].join('\n'),
  );
  const args = helmArgs(o);
  args[2] = dir;
  const r = run(HELM, [...args, '--show-only', 'templates/notes-as-configmap.yaml']);
  if (r.status !== 0) {
    throw new Error(`helm template (NOTES) failed: ${r.stderr}`);
  }
  return get<string>(parseDocs(r.stdout)[0], 'data.notes');
}

const MiB = 1024 * 1024;
const UNITS: Record<string, number> = { Ki: 1024, Mi: MiB, Gi: 1024 * MiB, '': 1 };

export function quantityBytes(q: string): number {
  const m = /^(\d+)(Ki|Mi|Gi|)$/.exec(q);
  if (!m) {
    throw new Error(`unexpected memory quantity ${q}`);
  }
  return Number(m[1]) * (UNITS[m[2] as string] as number);
}

/** The relay container's env as the kubelet would resolve it for the default render. */
export function chartRuntime(): { env: Record<string, string>; limitBytes: number; limit: string } {
  const relay = relayContainer(render().docs);
  const limit = relay.resources?.limits?.memory as string;
  const limitBytes = quantityBytes(limit);
  const env: Record<string, string> = {};
  for (const e of relay.env ?? []) {
    const field = (e.valueFrom as { resourceFieldRef?: { resource: string } } | undefined)
      ?.resourceFieldRef;
    if (e.value !== undefined) {
      env[e.name] = e.value;
    } else if (field?.resource === 'limits.memory') {
      env[e.name] = String(limitBytes);
    }
  }
  return { env, limitBytes, limit };
}
