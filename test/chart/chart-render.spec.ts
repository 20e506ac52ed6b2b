import { join } from 'node:path';
import { describeIf } from '../helpers/requirements';
import {
  CHART,
  HELM,
  MATRIX,
  ROOT,
  helmArgs,
  helmReady,
  render,
  renderError,
  run,
  writeScratch,
  type K8s,
  type RenderOptions,
} from './chart.helper';

/** Object types for the unknown-field check: TypeScript's excess-property check on each literal. */
const MODEL_TYPES: Record<string, [string, string]> = {
  'v1/Service': ['IService', 'kubernetes-models/v1/Service'],
  'v1/Pod': ['IPod', 'kubernetes-models/v1/Pod'],
  'v1/ServiceAccount': ['IServiceAccount', 'kubernetes-models/v1/ServiceAccount'],
  'v1/ConfigMap': ['IConfigMap', 'kubernetes-models/v1/ConfigMap'],
  'apps/v1/Deployment': ['IDeployment', 'kubernetes-models/apps/v1/Deployment'],
  'apps/v1/StatefulSet': ['IStatefulSet', 'kubernetes-models/apps/v1/StatefulSet'],
  'networking.k8s.io/v1/Ingress': ['IIngress', 'kubernetes-models/networking.k8s.io/v1/Ingress'],
  'networking.k8s.io/v1/NetworkPolicy': [
    'INetworkPolicy',
    'kubernetes-models/networking.k8s.io/v1/NetworkPolicy',
  ],
  'policy/v1/PodDisruptionBudget': [
    'IPodDisruptionBudget',
    'kubernetes-models/policy/v1/PodDisruptionBudget',
  ],
  'autoscaling/v2/HorizontalPodAutoscaler': [
    'IHorizontalPodAutoscaler',
    'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler',
  ],
  'monitoring.coreos.com/v1/ServiceMonitor': [
    'IServiceMonitor',
    '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
  ],
  'monitoring.coreos.com/v1/PrometheusRule': [
    'IPrometheusRule',
    '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule',
  ],
};

/** Validates objects with kubernetes-models (types, required fields, enums, CRD schemas). */
function validateModels(
  docs: unknown[],
): Array<{ index: number; kind: string; name: string; error: string }> {
  const r = run(
    process.execPath,
    [join(__dirname, 'validate-manifests.mjs')],
    JSON.stringify(docs),
  );
  if (r.status !== 0) {
    throw new Error(`validate-manifests failed: ${r.stderr}`);
  }
  return JSON.parse(r.stdout) as Array<{
    index: number;
    kind: string;
    name: string;
    error: string;
  }>;
}

/**
 * kubernetes-models does not reject unknown fields, so every object also becomes an object literal
 * typed with the model's interface; `tsc` reports any field the API does not have (TS2353).
 */
function unknownFields(named: Array<{ label: string; doc: K8s }>): string[] {
  const imports = new Map<string, string>();
  const lines: string[] = [];
  named.forEach(({ label, doc }, i) => {
    const key = `${doc.apiVersion}/${doc.kind}`;
    const model = MODEL_TYPES[key];
    if (!model) {
      lines.push(`// ${label}: no type for ${key}`);
      throw new Error(`${label}: no model type for ${key}`);
    }
    imports.set(model[0], model[1]);
    lines.push(
      `// ${label}: ${doc.kind} ${doc.metadata.name}`,
      `export const o${i}: ${model[0]} = ${JSON.stringify(doc)};`,
    );
  });
  const header = [...imports].map(([type, from]) => `import type { ${type} } from '${from}';`);
  writeScratch('typecheck', 'manifests.mts', [...header, ...lines].join('\n') + '\n');
  const tsconfig = writeScratch(
    'typecheck',
    'tsconfig.json',
    JSON.stringify({
      compilerOptions: {
        module: 'nodenext',
        moduleResolution: 'nodenext',
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        types: [],
      },
      files: ['manifests.mts'],
    }),
  );
  const r = run(process.execPath, [
    join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
    '-p',
    tsconfig,
  ]);
  return r.stdout.split('\n').filter((l) => l.includes('error TS'));
}

const ready = helmReady();

describeIf(ready)(
  'Helm chart helm/tokenplace-relay: lint, render matrix, manifest validation',
  () => {
    it('should pass helm lint --strict with the defaults and with every example values file', () => {
      const sets: string[][] = [
        [],
        ['-f', 'docs/examples/tokenplace-relay.values.staging.yaml'],
        [
          '-f',
          'docs/examples/tokenplace-relay.values.staging.yaml',
          '-f',
          'docs/examples/tokenplace-relay.values.monitoring.yaml',
        ],
        ['-f', 'docs/examples/tokenplace-relay.values.ha-redis.yaml'],
        ['-f', 'docs/examples/tokenplace-relay.values.ha-sentinel.yaml'],
        [
          '-f',
          'test/chart/fixtures/sugarkube-dev.values.yaml',
          '-f',
          'test/chart/fixtures/sugarkube-staging.values.yaml',
        ],
      ];

      const results = sets.map((args) => run(HELM, ['lint', '--strict', CHART, ...args]));

      for (const r of results) {
        expect(r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
        expect(r.status).toBe(0);
      }
    });

    // Rendered while collecting (it.each needs the table); a placeholder when Helm is missing.
    const renders = ready
      ? Object.entries(MATRIX).map(([label, options]) => ({
          label,
          options,
          docs: render(options).docs,
        }))
      : [{ label: '(helm missing)', options: {} as RenderOptions, docs: [] as K8s[] }];

    it.each(renders.map((r) => [r.label, r] as const))(
      'should render %s into valid objects in the release namespace',
      (_label, r) => {
        const namespace = r.options.namespace ?? 'tokenplace-relay';

        const problems = validateModels(r.docs);

        expect(problems).toEqual([]);
        expect(r.docs.length).toBeGreaterThanOrEqual(4);
        expect(r.docs.filter((d) => d.metadata.namespace !== namespace)).toEqual([]);
      },
    );

    it('should render no field the Kubernetes and prometheus-operator APIs do not define', () => {
      const named = renders.flatMap((r) => r.docs.map((doc) => ({ label: r.label, doc })));

      const errors = unknownFields(named);

      expect(errors).toEqual([]);
    });

    it('should catch an unknown field with the same check (the check itself works)', () => {
      const deployment = render().docs.find((d) => d.kind === 'Deployment') as K8s;
      const broken = JSON.parse(
        JSON.stringify(deployment).replace('"imagePullPolicy"', '"imagePullPolicyy"'),
      ) as K8s;

      const errors = unknownFields([{ label: 'broken', doc: broken }]);

      expect(errors).toHaveLength(1);
      expect(errors[0]).toContain("'\"imagePullPolicyy\"' does not exist in type 'IContainer'");
    });

    it('should render the ServiceMonitor under plain helm template, with no CRD in the capabilities', () => {
      const plain = render(
        MATRIX[
          'Sugarkube staging, Aug-2026 recipe (app=tokenplace env=staging), its values unchanged'
        ],
      ).docs;
      const off = render({
        set: [
          'serviceMonitor.enabled=false',
          'metrics.enabled=true',
          'metrics.auth.existingSecret=m',
        ],
      }).docs;

      expect(plain.filter((d) => d.kind === 'ServiceMonitor')).toHaveLength(1);
      expect(off.filter((d) => d.kind === 'ServiceMonitor')).toHaveLength(0);
      expect(
        render().docs.filter((d) => ['ServiceMonitor', 'PrometheusRule'].includes(d.kind)),
      ).toEqual([]);
    });

    const schemaError = (lines: string[]): string =>
      [
        "Error: values don't meet the specifications of the schema(s) in the following chart(s):",
        'tokenplace-relay:',
        ...lines,
      ].join('\n');
    const FAILURES: Array<[string, RenderOptions, string]> = [
      [
        'two replicas with the memory store',
        { set: ['replicaCount=2'] },
        schemaError([
          '- (root): Must validate "then" as "if" was valid',
          '- replicaCount: replicaCount must be one of the following: "1 or 0 with state.store=memory (each pod would hold its own relay state); set state.store=redis to run more replicas"',
          '- (root): Must validate all the schemas (allOf)',
        ]),
      ],
      [
        'autoscaling with the memory store',
        { set: ['autoscaling.enabled=true'] },
        schemaError([
          '- (root): Must validate "then" as "if" was valid',
          '- autoscaling.enabled: autoscaling.enabled must be one of the following: "false with state.store=memory (each pod would hold its own relay state); set state.store=redis to autoscale"',
          '- (root): Must validate all the schemas (allOf)',
        ]),
      ],
      [
        'the Redis store with the chart Valkey turned off and no URL Secret',
        { set: ['state.store=redis', 'valkey.enabled=false'] },
        'state.store=redis needs a Redis: leave valkey.enabled unset (the chart runs one), or set state.redis.existingSecret to an existing Secret holding the redis:// or rediss:// URL, or state.redis.sentinel.hosts, or state.redis.cluster.nodes',
      ],
      [
        'the chart Valkey with the memory store',
        { set: ['valkey.enabled=true'] },
        'valkey.enabled=true but state.store is memory: set state.store=redis so the relay uses it',
      ],
      [
        'the chart Valkey and an external Redis at once',
        {
          set: ['state.store=redis', 'state.redis.existingSecret=redis-url', 'valkey.enabled=true'],
        },
        "valkey.enabled=true and an external Redis (state.redis.existingSecret, sentinel.hosts or cluster.nodes) are both set: use the chart's Valkey or an external Redis, not both",
      ],
      [
        'a memory limit too small for the relay',
        { set: ['resources.limits.memory=128Mi'] },
        "the relay's heap would be 0 MiB (resources.limits.memory 128Mi, relay.maxHeapMiB <nil>): give it at least 256Mi of memory (128 MiB of heap)",
      ],
      [
        'a memory quantity the chart cannot read',
        { set: ['resources.limits.memory=5e8'] },
        'cannot read the memory quantity "5e8" (use a plain number of bytes or a k/M/G/T/Ki/Mi/Gi/Ti suffix)',
      ],
      [
        'an unknown restartOnUpgrade mode',
        { set: ['image.restartOnUpgrade=sometimes'] },
        '- image.restartOnUpgrade: image.restartOnUpgrade must be one of the following: "auto", "always", "never"',
      ],
      [
        'an unknown state store',
        { set: ['state.store=sqlite'] },
        schemaError(['- state.store: state.store must be one of the following: "memory", "redis"']),
      ],
      [
        'metrics without a token Secret',
        { set: ['metrics.enabled=true'] },
        'metrics.enabled=true needs metrics.auth.existingSecret: the name of an existing Secret holding the /metrics Bearer token (the chart never renders Secrets)',
      ],
      [
        'a ServiceMonitor with metrics off',
        { set: ['serviceMonitor.enabled=true'] },
        'serviceMonitor.enabled=true needs metrics.enabled=true and metrics.auth.existingSecret: the relay answers 401 on /metrics otherwise',
      ],
      [
        'a required ServiceMonitor CRD that the cluster lacks',
        {
          set: [
            'metrics.enabled=true',
            'metrics.auth.existingSecret=m',
            'serviceMonitor.enabled=true',
            'serviceMonitor.requireCRD=true',
          ],
        },
        'serviceMonitor.requireCRD=true but the cluster has no monitoring.coreos.com/v1 ServiceMonitor',
      ],
      [
        'an ingress host with a scheme',
        { set: ['ingress.enabled=true', 'ingress.host=https://staging.token.place'] },
        schemaError([
          '- ingress.host: Must validate "then" as "if" was valid',
          "- ingress.host: Does not match format 'hostname'",
        ]),
      ],
      [
        'TLS without a host',
        { set: ['ingress.enabled=true', 'ingress.tls.enabled=true'] },
        'ingress.tls.enabled=true needs ingress.host (or TOKENPLACE_RELAY_PUBLIC_URL in env)',
      ],
      [
        'the upstream placeholder image ghcr.io/${OWNER}/...',
        { set: ['image.repository=ghcr.io/${OWNER}/tokenplace-relay'] },
        "- image.repository: Does not match pattern '",
      ],
      [
        'a short digest',
        { set: ['image.digest=sha256:abc'] },
        "- image.digest: Does not match pattern '^(sha256:[0-9a-f]{64})?$'",
      ],
      [
        'a privileged container port',
        { set: ['containerPort=80'] },
        '- containerPort: Must be greater than or equal to 1024',
      ],
      [
        'a metrics path the relay does not serve',
        { set: ['metrics.path=/stats'] },
        '- metrics.path: metrics.path does not match: "/metrics"',
      ],
      [
        'a misspelt top-level key',
        { set: ['replicas=2'] },
        '- (root): Additional property replicas is not allowed',
      ],
      [
        'a numeric scrape interval',
        { set: ['serviceMonitor.interval=30'] },
        '- serviceMonitor.interval: Invalid type. Expected: string, given: integer',
      ],
      [
        'a node token as a literal env value',
        { set: ['env.TOKEN_PLACE_RELAY_SERVER_TOKEN=hunter2'] },
        'env TOKEN_PLACE_RELAY_SERVER_TOKEN must not be a literal value: the chart never renders secrets; use nodeAuth.existingSecret (or valueFrom.secretKeyRef)',
      ],
      [
        'a chart-owned variable in env',
        { set: ['env.TOKENPLACE_IMAGE_TAG=other'] },
        'env TOKENPLACE_IMAGE_TAG is set by the chart (see the chart README, "Environment"); remove it from env/extraEnv and use the matching value instead',
      ],
      [
        'a grace period shorter than preStop + shutdown grace',
        { set: ['terminationGracePeriodSeconds=20'] },
        'terminationGracePeriodSeconds (20) must be greater than lifecycle.preStopSleepSeconds (5) + relay.shutdownGraceSeconds (20), or the relay is killed before it finishes draining; leave it null to compute it',
      ],
      [
        'a shutdown grace not above the drain window',
        { set: ['relay.drainSeconds=20', 'relay.shutdownGraceSeconds=20'] },
        'relay.shutdownGraceSeconds (20) must be greater than relay.drainSeconds (20): the relay refuses to start otherwise',
      ],
      [
        'the native sleep action on Kubernetes 1.29',
        { set: ['lifecycle.sleepAction=true'], extra: ['--kube-version', '1.29.0'] },
        'lifecycle.sleepAction=true needs Kubernetes 1.30 or later (this cluster is v1.29.0); leave it false to use exec sleep',
      ],
    ];

    it.each(FAILURES)('should refuse %s with a clear message', (_label, options, message) => {
      const stderr = renderError(options);

      expect(stderr).toContain(message);
    });

    it('should accept staging.token.place and token.place as hosts (the old chart required relay.*)', () => {
      for (const host of ['staging.token.place', 'token.place']) {
        const args = helmArgs({ set: ['ingress.enabled=true', `ingress.host=${host}`] });

        const r = run(HELM, args);

        expect(r.status).toBe(0);
        expect(r.stdout).toContain(`- host: ${host}\n`);
      }
    });
  },
);
