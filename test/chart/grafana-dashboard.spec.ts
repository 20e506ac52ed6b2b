import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { describeIf } from '../helpers/requirements';
import {
  CHART,
  find,
  get,
  helmReady,
  one,
  promtoolReady,
  render,
  run,
  writeScratch,
} from './chart.helper';
import { promqlMetricNames, scrapeRelay, unknownMetric } from './metric-names';

interface Target {
  refId: string;
  expr: string;
  datasource: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: Target[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

const FILE = join(CHART, 'dashboards', 'tokenplace-relay.json');
const DASHBOARD = JSON.parse(readFileSync(FILE, 'utf8')) as Dashboard;
const PANELS = DASHBOARD.panels.filter((p) => p.type !== 'row');
const EXPRS = PANELS.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })),
);
const QUERIES = DASHBOARD.templating.list
  .filter((v) => v.type === 'query')
  .map((v) => ({
    panel: `variable ${v.name}`,
    expr: typeof v.query === 'string' ? v.query : v.query.query,
  }));
/** The families Sugarkube's staging verifier requires (ops.md §4): its dashboards chart them too. */
const REQUIRED = [
  'tokenplace_compute_nodes_registered',
  'tokenplace_compute_nodes_healthy',
  'tokenplace_compute_node_lease_age_seconds',
  'tokenplace_compute_node_evictions_total',
  'tokenplace_relay_queue_depth',
  'tokenplace_relay_oldest_queued_request_age_seconds',
  'tokenplace_relay_in_flight_requests',
  'tokenplace_relay_oldest_in_flight_age_seconds',
  'tokenplace_relay_request_outcomes_total',
  'tokenplace_http_requests_total',
  'tokenplace_http_request_duration_seconds_bucket',
  'tokenplace_instrumentation_up',
  'tokenplace_build_info',
];

/** Grafana's template variables replaced by concrete values, so the PromQL can be checked. */
const concrete = (expr: string): string =>
  expr
    .replace(/\$__rate_interval/g, '5m')
    .replace(/\$(namespace|job)\b/g, 'tokenplace')
    .replace(/\$pod\b/g, '.*');

describe('Grafana dashboard (helm/tokenplace-relay/dashboards/tokenplace-relay.json)', () => {
  it('should be a dashboard Grafana can import: uid, title, schema version, unique ids, a 24-column grid', () => {
    const ids = DASHBOARD.panels.map((p) => p.id);

    expect(DASHBOARD.uid).toBe('tokenplace-relay');
    expect(DASHBOARD.title).toBe('token.place relay');
    expect(DASHBOARD.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of DASHBOARD.panels) {
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      expect(p.gridPos.w).toBeGreaterThan(0);
      expect(p.gridPos.h).toBeGreaterThan(0);
    }
    const cells = new Set<string>();
    for (const p of DASHBOARD.panels) {
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x += 1) {
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y += 1) {
          expect(cells.has(`${x},${y}`)).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
    }
  });

  it('should query the selected Prometheus data source, namespace, job and pods in every panel', () => {
    const vars = DASHBOARD.templating.list.map((v) => `${v.name}:${v.type}`);

    expect(vars).toEqual(['datasource:datasource', 'namespace:query', 'job:query', 'pod:query']);
    for (const p of PANELS) {
      expect({ panel: p.title, ds: p.datasource }).toEqual({
        panel: p.title,
        ds: { type: 'prometheus', uid: '${datasource}' },
      });
      expect(p.targets?.length).toBeGreaterThan(0);
      const refIds = (p.targets ?? []).map((t) => t.refId);
      expect(new Set(refIds).size).toBe(refIds.length);
      for (const t of p.targets ?? []) {
        expect(t.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
        expect(t.expr).toContain('namespace="$namespace"');
      }
    }
  });

  it('should use only metric names the relay really exports (live scrape), plus up and kube-state-metrics', async () => {
    const exported = await scrapeRelay();

    const problems = [...EXPRS, ...QUERIES].flatMap(({ panel, expr }) =>
      promqlMetricNames(expr)
        .map((name) => unknownMetric(name, exported))
        .filter((p): p is string => p !== null)
        .map((p) => `${panel}: ${p}`),
    );
    const used = new Set([...EXPRS, ...QUERIES].flatMap(({ expr }) => promqlMetricNames(expr)));

    expect(problems).toEqual([]);
    expect(REQUIRED.filter((name) => !used.has(name))).toEqual([]);
  });

  (promtoolReady() ? it : it.skip)(
    'should hold only valid PromQL (promtool check rules on every query)',
    () => {
      const rules = EXPRS.map(({ expr }, i) => ({
        record: `dashboard:query_${i}`,
        expr: concrete(expr),
      }));
      const file = writeScratch(
        'dashboard',
        'queries.yaml',
        stringify({ groups: [{ name: 'dashboard', rules }] }),
      );

      const r = run('promtool', ['check', 'rules', file]);

      expect(r.stdout + r.stderr).toContain(`SUCCESS: ${rules.length} rules found`);
      expect(r.status).toBe(0);
    },
  );
});

describe("docs' PromQL (docs/operations.md)", () => {
  const docs = readFileSync(join(CHART, '..', '..', 'docs', 'operations.md'), 'utf8');
  const queries = [...docs.matchAll(/```promql\n([\s\S]*?)```/g)]
    .flatMap((m) => (m[1] as string).split('\n'))
    .filter((l) => l.trim() !== '' && !l.startsWith('#'));

  it('should use only exported metric names and the job the chart gives the runbook release', async () => {
    const exported = await scrapeRelay();

    const problems = queries.flatMap((q) =>
      promqlMetricNames(q)
        .map((name) => unknownMetric(name, exported))
        .filter((p): p is string => p !== null),
    );
    const jobs = new Set(
      queries.flatMap((q) => [...q.matchAll(/job="([^"]+)"/g)].map((m) => m[1])),
    );

    expect(queries.length).toBeGreaterThanOrEqual(5);
    expect(problems).toEqual([]);
    expect([...jobs]).toEqual(['tokenplace-relay']);
    expect(docs).not.toMatch(/job="tokenplace"[^-]/);
  });

  (promtoolReady() ? it : it.skip)('should hold only valid PromQL', () => {
    const file = writeScratch(
      'dashboard',
      'docs-queries.yaml',
      stringify({
        groups: [
          { name: 'docs', rules: queries.map((expr, i) => ({ record: `docs:q${i}`, expr })) },
        ],
      }),
    );

    const r = run('promtool', ['check', 'rules', file]);

    expect(r.stdout + r.stderr).toContain(`SUCCESS: ${queries.length} rules found`);
  });
});

describeIf(helmReady())('Grafana dashboard ConfigMap (grafanaDashboard.*)', () => {
  it('should ship the dashboard only when enabled, labelled for the Grafana sidecar, in the release namespace', () => {
    const on = render({
      release: 'tokenplace',
      namespace: 'tokenplace',
      set: ['grafanaDashboard.enabled=true'],
    }).docs;
    const map = one(on, 'ConfigMap');

    expect(find(render().docs, 'ConfigMap')).toEqual([]);
    expect(map.metadata).toMatchObject({ name: 'tokenplace-dashboard', namespace: 'tokenplace' });
    expect(map.metadata.labels?.grafana_dashboard).toBe('1');
    expect(
      JSON.parse(get<Record<string, string>>(map, 'data')['tokenplace-relay.json'] ?? ''),
    ).toEqual(DASHBOARD);
    expect(Buffer.byteLength(JSON.stringify(get(map, 'data')))).toBeLessThan(256 * 1024);
  });

  it('should take other sidecar labels and a folder annotation', () => {
    const map = one(
      render({
        set: [
          'grafanaDashboard.enabled=true',
          'grafanaDashboard.labels.grafana_dashboard=null',
          'grafanaDashboard.labels.dashboards=relay',
          'grafanaDashboard.annotations.grafana_folder=tokenplace',
        ],
      }).docs,
      'ConfigMap',
    );

    expect(map.metadata.labels?.dashboards).toBe('relay');
    expect(map.metadata.labels?.grafana_dashboard).toBeUndefined();
    expect(map.metadata.annotations).toEqual({ grafana_folder: 'tokenplace' });
  });
});
