import { createTestApp } from '../helpers/test-app';

/**
 * Metric names a query may use although the relay does not export them, each with the exporter that
 * does. Everything else must appear in a live scrape of the relay.
 */
export const EXTERNAL_METRICS: Record<string, string> = {
  // Prometheus itself writes `up` (1: the scrape succeeded, 0: it failed) for every target, with
  // the target's job/namespace/pod labels (Prometheus docs, "Jobs and instances").
  up: 'Prometheus (synthetic, one per scrape target)',
  // kube-state-metrics, pod collector (docs/metrics/workload/pod-metrics.md: counter, STABLE,
  // labels container, namespace, pod, uid). Not kube_pod_container_restarts_total: no exporter
  // has that name, so an alert on it could never fire.
  kube_pod_container_status_restarts_total: 'kube-state-metrics (pod collector)',
};

export interface Family {
  name: string;
  type: string;
}

/** `# TYPE` lines of a Prometheus text exposition. */
export function families(exposition: string): Map<string, Family> {
  const out = new Map<string, Family>();
  for (const line of exposition.split('\n')) {
    const m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) {
      out.set(m[1] as string, { name: m[1] as string, type: m[2] as string });
    }
  }
  return out;
}

/** Families the relay really exports: one scrape of /metrics of the real app. */
export async function scrapeRelay(): Promise<Map<string, Family>> {
  const app = await createTestApp();
  try {
    return families(await fetch(`${app.baseUrl}/metrics`).then((r) => r.text()));
  } finally {
    await app.close();
  }
}

const PREFIXES = /\b((?:tokenplace|nodejs|process|kube|node|container)_[a-zA-Z0-9_:]*|up)\b/g;
const SELECTOR = /\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{/g;

/**
 * Metric names in a PromQL expression. Every metric is written with a selector (`name{...}`); a
 * metric-looking word without one is returned as `bare:<name>` so a test can refuse it.
 */
export function promqlMetricNames(expr: string): string[] {
  const withoutStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const selected = new Set([...withoutStrings.matchAll(SELECTOR)].map((m) => m[1] as string));
  const words = new Set([...withoutStrings.matchAll(PREFIXES)].map((m) => m[1] as string));
  const bare = [...words].filter((w) => !selected.has(w)).map((w) => `bare:${w}`);
  return [...selected, ...bare];
}

/** Why `name` is not a series the relay or a justified exporter provides, or null when it is. */
export function unknownMetric(name: string, exported: Map<string, Family>): string | null {
  if (name.startsWith('bare:')) {
    return `${name.slice(5)} is used without a selector`;
  }
  if (exported.has(name) || name in EXTERNAL_METRICS) {
    return null;
  }
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  const family = m ? exported.get(m[1] as string) : undefined;
  if (
    family &&
    (family.type === 'histogram' || (family.type === 'summary' && m?.[2] !== 'bucket'))
  ) {
    return null;
  }
  return `${name} is exported by neither the relay nor a listed exporter`;
}
