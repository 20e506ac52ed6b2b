import { isDeepStrictEqual } from 'node:util';
import { get, type Container, type EnvVar, type K8s } from './chart.helper';

/**
 * The render checks Sugarkube's Aug-2026 recipe (`just app-deploy app=tokenplace env=staging
 * tag=...`, and `helm-oci-install ... app=tokenplace`) runs before Helm touches the cluster, as
 * ops.md §2 lists them: the preflight (workload, container image, namespaces, ingress host, the
 * four metadata variables) and validate-render for tokenplace/staging (no Secret, the
 * ServiceMonitor contract). Written from those facts, so CI can hold the chart to them without
 * fetching Sugarkube; each returns the list of violations (empty: the recipe would proceed).
 */
export interface RecipeInputs {
  release: string;
  namespace: string;
  tag: string;
  /** The host the recipe resolved from the values (`ingress.host`), or '' with no ingress. */
  host: string;
}

const WORKLOADS = new Set(['Deployment', 'StatefulSet', 'DaemonSet']);
const METADATA_ENV = [
  'TOKENPLACE_IMAGE_TAG',
  'TOKENPLACE_RELEASE_VERSION',
  'TOKENPLACE_CHART_VERSION',
  'TOKENPLACE_DEPLOY_ENV',
];

/** Immutable tags only: `<branch>-<7..40 lowercase hex>`, never one containing "latest". */
export function deploymentSafeTag(tag: string): boolean {
  return !tag.toLowerCase().includes('latest') && /^[a-z0-9][a-z0-9._-]*-[0-9a-f]{7,40}$/.test(tag);
}

function belongsTo(doc: K8s, release: string, byName: boolean): boolean {
  return (
    doc.metadata.labels?.['app.kubernetes.io/instance'] === release ||
    doc.metadata.labels?.release === release ||
    doc.metadata.annotations?.['meta.helm.sh/release-name'] === release ||
    (byName && doc.metadata.name === release)
  );
}

function appContainers(doc: K8s, release: string): Container[] {
  const names = new Set(['tokenplace', 'relay', release]);
  return (get<Container[] | undefined>(doc, 'spec.template.spec.containers') ?? []).filter((c) =>
    names.has(c.name),
  );
}

export function preflight(docs: K8s[], inputs: RecipeInputs): string[] {
  const errors: string[] = [];
  const workloads = docs.filter((d) => WORKLOADS.has(d.kind));
  const ours = workloads.filter((d) => belongsTo(d, inputs.release, false));
  const containers = ours.flatMap((d) => appContainers(d, inputs.release));
  if (!deploymentSafeTag(inputs.tag)) {
    errors.push(`tag ${inputs.tag} is not an immutable <branch>-<sha> tag`);
  }
  if (workloads.length === 0) {
    errors.push('no Deployment, StatefulSet or DaemonSet');
  } else if (ours.length === 0) {
    errors.push(`no workload labelled app.kubernetes.io/instance=${inputs.release}`);
  }
  if (workloads.length > 0 && containers.length === 0) {
    errors.push('no container named relay, tokenplace or the release');
  }
  for (const c of containers.filter((c) => !c.image.endsWith(`:${inputs.tag}`))) {
    errors.push(`container ${c.name} image ${c.image} does not end with :${inputs.tag}`);
  }
  for (const d of docs.filter(
    (d) => d.metadata.namespace && d.metadata.namespace !== inputs.namespace,
  )) {
    errors.push(`${d.kind} ${d.metadata.name} is in namespace ${d.metadata.namespace}`);
  }
  if (inputs.host) {
    const hosts = docs
      .filter((d) => d.kind === 'Ingress' && belongsTo(d, inputs.release, true))
      .flatMap((d) => get<Array<{ host?: string }>>(d, 'spec.rules') ?? [])
      .map((r) => r.host);
    if (!hosts.includes(inputs.host)) {
      errors.push(`no Ingress rule for host ${inputs.host}`);
    }
  }
  const complete = docs
    .filter((d) => d.kind === 'Deployment' && belongsTo(d, inputs.release, false))
    .flatMap((d) => appContainers(d, inputs.release))
    .some((c) => METADATA_ENV.every((name) => (c.env ?? []).some((e) => e.name === name)));
  if (!complete) {
    errors.push(`no app container carries ${METADATA_ENV.join(', ')}`);
  }
  return errors;
}

/** validate-render's tokenplace/staging contract (the only environment Sugarkube configures). */
export const TOKENPLACE_STAGING = {
  namespace: 'tokenplace',
  serviceMonitorName: 'tokenplace',
  selector: { 'app.kubernetes.io/instance': 'tokenplace', 'app.kubernetes.io/name': 'tokenplace' },
  secret: { name: 'tokenplace-staging-metrics-token', key: 'token' },
  relabelings: [
    { action: 'replace', targetLabel: 'app', replacement: 'tokenplace' },
    { action: 'replace', targetLabel: 'environment', replacement: 'staging' },
    { action: 'replace', targetLabel: 'release', replacement: 'tokenplace' },
    { action: 'replace', targetLabel: 'cluster', replacement: 'sugarkube-int' },
  ],
  /** Where the verifier reads the version/revision it expects on tokenplace_build_info. */
  buildLabelsFrom: { deployment: 'tokenplace', container: 'relay', env: 'TOKENPLACE_IMAGE_TAG' },
};

export function validateRender(docs: K8s[], releaseNamespace: string): string[] {
  const c = TOKENPLACE_STAGING;
  const errors: string[] = [];
  if (docs.some((d) => d.kind === 'Secret')) {
    errors.push('a Secret is rendered');
  }
  const monitors = docs.filter(
    (d) =>
      d.kind === 'ServiceMonitor' &&
      d.metadata.name === c.serviceMonitorName &&
      (d.metadata.namespace ?? releaseNamespace) === c.namespace,
  );
  if (monitors.length !== 1) {
    return [
      ...errors,
      `expected one ServiceMonitor ${c.namespace}/${c.serviceMonitorName}, found ${monitors.length}`,
    ];
  }
  const deployment = docs.find(
    (d) => d.kind === 'Deployment' && d.metadata.name === c.buildLabelsFrom.deployment,
  );
  const tag = (get<Container[] | undefined>(deployment, 'spec.template.spec.containers') ?? [])
    .find((x) => x.name === c.buildLabelsFrom.container)
    ?.env?.find((e: EnvVar) => e.name === c.buildLabelsFrom.env)?.value;
  if (!tag) {
    errors.push(
      `Deployment ${c.buildLabelsFrom.deployment} container relay has no ${c.buildLabelsFrom.env}`,
    );
  }
  const sm = monitors[0] as K8s;
  const endpoints = get<Array<Record<string, unknown>>>(sm, 'spec.endpoints') ?? [];
  const ep = endpoints[0] ?? {};
  const checks: Array<[string, unknown, unknown]> = [
    ['release label', sm.metadata.labels?.release, 'kube-prometheus-stack'],
    ['namespaceSelector', get(sm, 'spec.namespaceSelector'), { matchNames: [c.namespace] }],
    ['selector', get(sm, 'spec.selector.matchLabels'), c.selector],
    ['targetLabels', get(sm, 'spec.targetLabels') ?? [], []],
    ['endpoints', endpoints.length, 1],
    ['path', ep.path, '/metrics'],
    ['interval', ep.interval, '30s'],
    ['scrapeTimeout', ep.scrapeTimeout, '10s'],
    ['authorization type', get(ep, 'authorization.type'), 'Bearer'],
    ['credentials', get(ep, 'authorization.credentials'), c.secret],
    ['relabelings', ep.relabelings, c.relabelings],
  ];
  for (const [what, actual, expected] of checks) {
    if (!isDeepStrictEqual(actual, expected)) {
      errors.push(
        `ServiceMonitor ${what}: ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`,
      );
    }
  }
  return errors;
}
