import { stringify } from 'yaml';
import { describeIf } from '../helpers/requirements';
import { get, helmReady, one, promtoolReady, render, run, writeScratch } from './chart.helper';
import { promqlMetricNames, scrapeRelay, unknownMetric } from './metric-names';

interface Rule {
  alert: string;
  expr: string;
  for: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** Labels Prometheus attaches to a relay target scraped through the ServiceMonitor. */
const TARGET =
  'job="tokenplace",namespace="tokenplace",pod="tokenplace-5d9c-x",instance="10.42.0.7:5010"';
const http = (route: string, statusClass: string, extra = ''): string =>
  `tokenplace_http_requests_total{${TARGET},method="POST",route="${route}",status_class="${statusClass}",provider_mode="relay",outcome="${statusClass === '5xx' ? 'failed' : 'completed'}"${extra}}`;

interface Case {
  name: string;
  series: Array<[string, string]>;
  at: string;
  fires: boolean;
  labels?: Record<string, string>;
  /** Values of the `{{ ... }}` placeholders in the rule's annotations. */
  values?: Record<string, string>;
}

/** Each alert, once firing and at least once staying silent, on the relay's real metric names. */
const CASES: Record<string, Case[]> = {
  TokenplaceRelayTargetDown: [
    {
      name: 'target down 6 minutes',
      series: [[`up{${TARGET}}`, '0x10']],
      at: '6m',
      fires: true,
      labels: {
        job: 'tokenplace',
        namespace: 'tokenplace',
        pod: 'tokenplace-5d9c-x',
        instance: '10.42.0.7:5010',
      },
      values: {
        '{{ $labels.pod }}': 'tokenplace-5d9c-x',
        '{{ $labels.instance }}': '10.42.0.7:5010',
      },
    },
    { name: 'target up', series: [[`up{${TARGET}}`, '1x10']], at: '6m', fires: false },
  ],
  TokenplaceRelayTargetMissing: [
    {
      name: 'no relay target at all',
      series: [['up{job="other",namespace="tokenplace"}', '1x15']],
      at: '11m',
      fires: true,
      labels: { job: 'tokenplace', namespace: 'tokenplace' },
    },
    { name: 'relay target present', series: [[`up{${TARGET}}`, '1x15']], at: '11m', fires: false },
  ],
  TokenplaceRelayInstrumentationDown: [
    {
      name: 'a collector failed',
      series: [[`tokenplace_instrumentation_up{${TARGET}}`, '0x10']],
      at: '6m',
      fires: true,
    },
    {
      name: 'collectors up',
      series: [[`tokenplace_instrumentation_up{${TARGET}}`, '1x10']],
      at: '6m',
      fires: false,
    },
  ],
  TokenplaceRelayHigh5xxRatio: [
    {
      name: 'half the requests fail',
      series: [
        [http('/api/v1/relay/requests', '5xx'), '0+10x40'],
        [http('/api/v1/relay/requests', '2xx'), '0+10x40'],
      ],
      at: '30m',
      fires: true,
      values: { '{{ $value | humanizePercentage }}': '50%' },
    },
    {
      name: 'only /metrics fails (excluded)',
      series: [
        [http('/metrics', '5xx'), '0+10x40'],
        [http('/api/v1/relay/requests', '2xx'), '0+10x40'],
      ],
      at: '30m',
      fires: false,
    },
    {
      name: 'no traffic',
      series: [[http('/api/v1/relay/requests', '2xx'), '0x40']],
      at: '30m',
      fires: false,
    },
  ],
  TokenplaceRelayNoHealthyComputeNode: [
    {
      name: 'clients ask for nodes, none healthy',
      series: [
        [`tokenplace_compute_nodes_healthy{${TARGET}}`, '0x30'],
        [http('/api/v1/relay/servers/next', '5xx'), '0+5x30'],
      ],
      at: '25m',
      fires: true,
    },
    {
      name: 'no node and no client traffic',
      series: [
        [`tokenplace_compute_nodes_healthy{${TARGET}}`, '0x30'],
        [http('/api/v1/relay/servers/next', '2xx'), '0x30'],
      ],
      at: '25m',
      fires: false,
    },
    {
      name: 'a healthy node serves the traffic',
      series: [
        [`tokenplace_compute_nodes_healthy{${TARGET}}`, '1x30'],
        [http('/api/v1/relay/requests', '2xx'), '0+5x30'],
      ],
      at: '25m',
      fires: false,
    },
  ],
  TokenplaceRelayQueuedRequestsStale: [
    {
      name: 'the oldest queued request keeps ageing',
      series: [
        [
          `tokenplace_relay_oldest_queued_request_age_seconds{${TARGET},provider_mode="relay"}`,
          '0+60x30',
        ],
      ],
      at: '20m',
      fires: true,
      values: { '{{ $value | humanizeDuration }}': '20m 0s' },
    },
    {
      name: 'requests are picked up within 30 s',
      series: [
        [
          `tokenplace_relay_oldest_queued_request_age_seconds{${TARGET},provider_mode="relay"}`,
          '30x30',
        ],
      ],
      at: '20m',
      fires: false,
    },
  ],
  TokenplaceRelayHighExpiryRatio: [
    {
      name: 'half the requests expire',
      series: [
        [`tokenplace_relay_request_outcomes_total{${TARGET},outcome="expired"}`, '0+5x60'],
        [`tokenplace_relay_request_outcomes_total{${TARGET},outcome="completed"}`, '0+5x60'],
      ],
      at: '50m',
      fires: true,
      values: { '{{ $value | humanizePercentage }}': '50%' },
    },
    {
      name: 'requests complete or are cancelled by their clients',
      series: [
        [`tokenplace_relay_request_outcomes_total{${TARGET},outcome="expired"}`, '0x60'],
        [`tokenplace_relay_request_outcomes_total{${TARGET},outcome="cancelled"}`, '0+5x60'],
        [`tokenplace_relay_request_outcomes_total{${TARGET},outcome="completed"}`, '0+5x60'],
      ],
      at: '50m',
      fires: false,
    },
  ],
  TokenplaceRelayStaleEvictions: [
    {
      name: 'a node is evicted for a stale lease every minute',
      series: [
        [`tokenplace_compute_node_evictions_total{${TARGET},reason="stale_lease"}`, '0+1x30'],
      ],
      at: '25m',
      fires: true,
      values: { '{{ $value | humanize }}': '15' },
    },
    {
      name: 'nodes unregister cleanly',
      series: [
        [`tokenplace_compute_node_evictions_total{${TARGET},reason="unregistered"}`, '0+1x30'],
      ],
      at: '25m',
      fires: false,
    },
  ],
  TokenplaceRelayRestarting: [
    {
      name: 'the relay container restarts every minute',
      series: [
        [
          'kube_pod_container_status_restarts_total{namespace="tokenplace",pod="tokenplace-5d9c-x",container="relay"}',
          '0+1x40',
        ],
      ],
      at: '35m',
      fires: true,
    },
    {
      name: 'another release restarts',
      series: [
        [
          'kube_pod_container_status_restarts_total{namespace="tokenplace",pod="other-5d9c-x",container="relay"}',
          '0+1x40',
        ],
      ],
      at: '35m',
      fires: false,
    },
  ],
};

function expectedAnnotations(
  rule: Rule,
  values: Record<string, string> = {},
): Record<string, string> {
  return Object.fromEntries(
    Object.entries(rule.annotations).map(([k, v]) => [
      k,
      Object.entries(values).reduce((text, [from, to]) => text.split(from).join(to), v),
    ]),
  );
}

const ready = helmReady() && promtoolReady();

describeIf(ready)(
  'PrometheusRule alerts (promtool check rules / test rules on the relay metric names)',
  () => {
    const rendered = ready
      ? render({
          release: 'tokenplace',
          namespace: 'tokenplace',
          set: ['nameOverride=tokenplace', 'prometheusRule.enabled=true'],
        }).docs
      : [];
    const spec = ready
      ? get<{ groups: Array<{ name: string; rules: Rule[] }> }>(
          one(rendered, 'PrometheusRule'),
          'spec',
        )
      : { groups: [] };
    const rules = spec.groups.flatMap((g) => g.rules);
    const rulesFile = ready ? writeScratch('promtool', 'rules.yaml', stringify(spec)) : '';

    it('should pass promtool check rules', () => {
      const r = run('promtool', ['check', 'rules', rulesFile]);

      expect(r.stdout + r.stderr).toContain(`SUCCESS: ${rules.length} rules found`);
      expect(r.status).toBe(0);
    });

    it('should cover every alert with a firing and a silent case', () => {
      expect(Object.keys(CASES).sort()).toEqual(rules.map((r) => r.alert).sort());
      for (const cases of Object.values(CASES)) {
        expect(cases.some((c) => c.fires) && cases.some((c) => !c.fires)).toBe(true);
      }
    });

    it('should fire each alert when it should and stay silent otherwise (promtool test rules)', () => {
      const tests = Object.entries(CASES).flatMap(([alert, cases]) =>
        cases.map((c) => {
          const rule = rules.find((r) => r.alert === alert) as Rule;
          return {
            name: `${alert}: ${c.name}`,
            interval: '1m',
            input_series: c.series.map(([series, values]) => ({ series, values })),
            alert_rule_test: [
              {
                eval_time: c.at,
                alertname: alert,
                exp_alerts: c.fires
                  ? [
                      {
                        exp_labels: { ...rule.labels, ...(c.labels ?? {}) },
                        exp_annotations: expectedAnnotations(rule, c.values),
                      },
                    ]
                  : [],
              },
            ],
          };
        }),
      );
      const testFile = writeScratch(
        'promtool',
        'rules.test.yaml',
        stringify({ rule_files: ['rules.yaml'], evaluation_interval: '1m', tests }),
      );

      const r = run('promtool', ['test', 'rules', testFile]);

      expect(r.stdout + r.stderr).toContain('SUCCESS');
      expect(r.status).toBe(0);
    });

    it('should query only series the relay (live scrape), Prometheus or kube-state-metrics really export', async () => {
      const exported = await scrapeRelay();

      const problems = rules.flatMap((r) =>
        promqlMetricNames(r.expr)
          .map((name) => unknownMetric(name, exported))
          .filter((p): p is string => p !== null)
          .map((p) => `${r.alert}: ${p}`),
      );
      const external = rules
        .flatMap((r) => promqlMetricNames(r.expr))
        .filter((name) => !exported.has(name));

      expect(problems).toEqual([]);
      expect([...new Set(external)].sort()).toEqual([
        'kube_pod_container_status_restarts_total',
        'up',
      ]);
      expect(rules.map((r) => r.expr).join('\n')).not.toMatch(
        /http_server_requests_seconds_count|kube_pod_container_restarts_total/,
      );
    });

    it('should refuse a metric name no exporter emits (the check itself works)', async () => {
      const exported = await scrapeRelay();

      const wrong = [
        'kube_pod_container_restarts_total',
        'tokenplace_relay_queue_depht',
        'bare:up',
      ].map((n) => unknownMetric(n, exported));

      expect(wrong).toEqual([
        'kube_pod_container_restarts_total is exported by neither the relay nor a listed exporter',
        'tokenplace_relay_queue_depht is exported by neither the relay nor a listed exporter',
        'up is used without a selector',
      ]);
      expect(promqlMetricNames('sum(rate(x_total{a="up"}[5m])) and on() up == 0')).toEqual([
        'x_total',
        'bare:up',
      ]);
    });
  },
);
