import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { createTestApp } from '../helpers/test-app';
import { describeIf } from '../helpers/requirements';
import {
  CHART,
  MATRIX,
  ROOT,
  SUGARKUBE_VALUES,
  envMap,
  find,
  get,
  helmReady,
  one,
  podSpec,
  relayContainer,
  render,
  renderNotes,
  type K8s,
  type RenderOptions,
} from './chart.helper';
import { deploymentSafeTag, preflight, validateRender } from './sugarkube-contract';

/**
 * The operator path of issue 12: the runbook's commands and values as written, both Sugarkube
 * recipe generations, the Ingress the tunnel needs, the Prometheus target, redeploys of a mutable
 * tag, the memory sizing the chart hands the relay, and the chart-managed Valkey.
 */
const MiB = 1024 * 1024;
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');
const RUNBOOK_DOC = read('docs/k3s-sugarkube-staging.md');
const RUNBOOK = MATRIX[
  'runbook staging, Dec-2025 recipe (default_tag=main-latest)'
] as RenderOptions;
const MONITORED = MATRIX[
  'runbook staging with monitoring, Dec-2025 recipe (tag=main-<sha7>)'
] as RenderOptions;
const SUGARKUBE = MATRIX[
  'Sugarkube staging, Aug-2026 recipe (app=tokenplace env=staging), its values unchanged'
] as RenderOptions;
const AUG_2026 = {
  release: 'tokenplace',
  namespace: 'tokenplace',
  tag: 'main-0123abc',
  host: 'staging.token.place',
};

/** Fenced code blocks of a markdown file, by language, dedented by their fence's indentation. */
function blocks(markdown: string, lang: string): string[] {
  return [...markdown.matchAll(new RegExp('^( *)```' + lang + '\\n([\\s\\S]*?)^ *```', 'gm'))].map(
    (m) => (m[2] as string).replace(new RegExp(`^ {0,${(m[1] as string).length}}`, 'gm'), ''),
  );
}

const podAnnotations = (docs: K8s[]): Record<string, string> =>
  get<Record<string, string>>(one(docs, 'Deployment'), 'spec.template.metadata.annotations');

const ready = helmReady();

describeIf(ready)(
  'operator path: runbook, Sugarkube recipes, ingress, redeploys, memory, Valkey',
  () => {
    describe('the runbook as written (docs/k3s-sugarkube-staging.md)', () => {
      it('should state the values it deploys exactly as the example files hold them', () => {
        const yamlBlocks = blocks(RUNBOOK_DOC, 'yaml').map((b) => parse(b) as unknown);

        expect(yamlBlocks).toContainEqual(
          parse(read('docs/examples/tokenplace-relay.values.monitoring.yaml')),
        );
      });

      it('should name the recipe generation of each command and say that main-latest is refused today', () => {
        const commands = blocks(RUNBOOK_DOC, 'bash').filter((b) => b.includes('just '));
        const dec = commands.filter((c) => c.includes('default_tag=main-latest'));
        const aug = commands.filter((c) => c.includes('env=staging'));

        expect(RUNBOOK_DOC).toContain('### Dec-2025 recipe');
        expect(RUNBOOK_DOC).toContain('### Aug-2026 recipe');
        expect(RUNBOOK_DOC).toMatch(/the Aug-2026 recipe refuses it/);
        expect(dec).toHaveLength(1);
        expect(aug).toHaveLength(2);
        for (const c of aug) {
          expect(c).toContain('tag=main-<sha7>');
          expect(c).toContain('app=tokenplace');
          expect(c).not.toMatch(/values\.sugarkube|nameOverride/);
        }
        expect(deploymentSafeTag('main-latest')).toBe(false);
        expect(deploymentSafeTag('main')).toBe(false);
        expect(deploymentSafeTag('main-0123abc')).toBe(true);
      });

      it('should route staging.token.place through Traefik with the runbook values and the Dec-2025 flags', () => {
        const { docs } = render(RUNBOOK);
        const ingress = one(docs, 'Ingress');

        expect(ingress.metadata.name).toBe('tokenplace-relay');
        expect(get(ingress, 'spec.ingressClassName')).toBe('traefik');
        expect(get(ingress, 'spec.rules')).toEqual([
          {
            host: 'staging.token.place',
            http: {
              paths: [
                {
                  path: '/',
                  pathType: 'Prefix',
                  backend: { service: { name: 'tokenplace-relay', port: { name: 'http' } } },
                },
              ],
            },
          },
        ]);
        expect(envMap(docs).TOKENPLACE_RELAY_PUBLIC_URL?.value).toBe('https://staging.token.place');
        expect(renderNotes(RUNBOOK)).not.toContain('no Ingress');
      });

      it('should give Prometheus a target, alerts and a dashboard with the runbook monitoring values', () => {
        const { docs } = render(MONITORED);
        const monitor = one(docs, 'ServiceMonitor');
        const policy = one(docs, 'NetworkPolicy');

        expect(`serviceMonitor/${monitor.metadata.namespace}/${monitor.metadata.name}/0`).toBe(
          'serviceMonitor/tokenplace-relay/tokenplace-relay/0',
        );
        expect(monitor.metadata.labels?.release).toBe('kube-prometheus-stack');
        expect(get(monitor, 'spec.endpoints.0.authorization.credentials')).toEqual({
          name: 'tokenplace-staging-metrics-token',
          key: 'token',
        });
        expect(one(docs, 'PrometheusRule').metadata.labels?.release).toBe('kube-prometheus-stack');
        expect(one(docs, 'ConfigMap').metadata.labels?.grafana_dashboard).toBe('1');
        expect(JSON.stringify(get(policy, 'spec.ingress'))).toContain('"monitoring"');
        expect(envMap(docs).TOKENPLACE_RELAY_SERVER_TOKENS_FILE?.value).toBe(
          '/etc/tokenplace/node-tokens/tokens',
        );
      });

      it('should warn in NOTES when metrics are served but nothing scrapes them', () => {
        const notes = renderNotes({
          values: ['docs/examples/tokenplace-relay.values.staging.yaml'],
          set: ['metrics.enabled=true', 'metrics.auth.existingSecret=m'],
        });

        expect(notes).toContain('no ServiceMonitor was rendered, so Prometheus');
        expect(renderNotes(MONITORED)).not.toContain('no ServiceMonitor');
      });
    });

    describe('Sugarkube Aug-2026 recipe with its tokenplace values unchanged', () => {
      it('should pass the preflight and the metrics contract checks the recipe runs before Helm', () => {
        const { docs } = render(SUGARKUBE);

        expect(preflight(docs, AUG_2026)).toEqual([]);
        expect(validateRender(docs, 'tokenplace')).toEqual([]);
      });

      it('should still pass with the runbook monitoring overlay layered after Sugarkube values', () => {
        const { docs } = render({
          ...SUGARKUBE,
          values: [...SUGARKUBE_VALUES, 'docs/examples/tokenplace-relay.values.monitoring.yaml'],
        });

        expect(preflight(docs, AUG_2026)).toEqual([]);
        expect(validateRender(docs, 'tokenplace')).toEqual([]);
        expect(find(docs, 'PrometheusRule')).toHaveLength(1);
      });

      it('should name every object tokenplace and select app.kubernetes.io/name=tokenplace', () => {
        const { docs } = render(SUGARKUBE);

        expect(docs.map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual([
          'Deployment/tokenplace',
          'Ingress/tokenplace',
          'NetworkPolicy/tokenplace',
          'Pod/tokenplace-smoke-test',
          'Service/tokenplace',
          'ServiceMonitor/tokenplace',
        ]);
        expect(get(one(docs, 'Service'), 'spec.selector')).toEqual({
          'app.kubernetes.io/name': 'tokenplace',
          'app.kubernetes.io/instance': 'tokenplace',
        });
      });

      it('should be caught by the same checks when the render breaks the contract', () => {
        const renamed = render({
          ...SUGARKUBE,
          set: [...(SUGARKUBE.set ?? []), 'nameOverride=relay'],
        }).docs;
        const digest = render({
          ...SUGARKUBE,
          set: [...(SUGARKUBE.set ?? []), `image.digest=sha256:${'c'.repeat(64)}`],
        }).docs;
        const noIngress = render({
          ...SUGARKUBE,
          set: [...(SUGARKUBE.set ?? []), 'ingress.enabled=false'],
        }).docs;

        expect(validateRender(renamed, 'tokenplace')).toEqual([
          'expected one ServiceMonitor tokenplace/tokenplace, found 0',
        ]);
        expect(preflight(digest, AUG_2026)).toEqual([
          `container relay image ghcr.io/futuroptimist/tokenplace-relay:main-0123abc@sha256:${'c'.repeat(64)} does not end with :main-0123abc`,
        ]);
        expect(preflight(noIngress, AUG_2026)).toEqual([
          'no Ingress rule for host staging.token.place',
        ]);
        expect(preflight(render(SUGARKUBE).docs, { ...AUG_2026, tag: 'main-latest' })).toContain(
          'tag main-latest is not an immutable <branch>-<sha> tag',
        );
      });

      it('should keep the Dec-2025 release names (tokenplace-relay) and so its immutable selectors', () => {
        const { docs } = render(RUNBOOK);

        expect(get(one(docs, 'Deployment'), 'spec.selector.matchLabels')).toEqual({
          'app.kubernetes.io/name': 'tokenplace-relay',
          'app.kubernetes.io/instance': 'tokenplace-relay',
        });
        expect(
          preflight(docs, {
            ...AUG_2026,
            release: 'tokenplace-relay',
            namespace: 'tokenplace-relay',
            tag: 'main-latest',
          }),
        ).toEqual(['tag main-latest is not an immutable <branch>-<sha> tag']);
      });

      it('should point Sugarkube app-deploy at this chart with its own values (docs/examples/sugarkube/tokenplace.env)', () => {
        const config = Object.fromEntries(
          read('docs/examples/sugarkube/tokenplace.env')
            .split('\n')
            .filter((l) => /^[A-Z_]+=/.test(l))
            .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
        );
        const chartVersion = /^version: (\S+)$/m.exec(
          readFileSync(join(CHART, 'Chart.yaml'), 'utf8'),
        )?.[1];

        expect(config).toEqual({
          SUGARKUBE_APP: 'tokenplace',
          SUGARKUBE_RELEASE: 'tokenplace',
          SUGARKUBE_NAMESPACE: 'tokenplace',
          SUGARKUBE_CHART: 'oci://ghcr.io/democratizedspace/charts/tokenplace-relay',
          SUGARKUBE_VERSION: chartVersion,
          SUGARKUBE_VALUES_STAGING:
            'docs/examples/tokenplace.values.dev.yaml,docs/examples/tokenplace.values.staging.yaml',
          SUGARKUBE_STATUS_HOST_KEY: 'ingress.host',
          SUGARKUBE_VERIFY_PATHS: '/,/livez,/healthz,/relay/diagnostics,/api/v1/meta',
          SUGARKUBE_DEBUG_SELECTOR: 'app.kubernetes.io/name=tokenplace',
        });
      });

      it('should answer every path Sugarkube verifies after a deploy', async () => {
        const app = await createTestApp();
        try {
          const statuses = await Promise.all(
            ['/', '/livez', '/healthz', '/relay/diagnostics', '/api/v1/meta'].map(
              async (path) => [path, (await fetch(`${app.baseUrl}${path}`)).status] as const,
            ),
          );

          expect(statuses).toEqual([
            ['/', 200],
            ['/livez', 200],
            ['/healthz', 200],
            ['/relay/diagnostics', 200],
            ['/api/v1/meta', 200],
          ]);
        } finally {
          await app.close();
        }
      });
    });

    describe('Ingress', () => {
      it('should render for a host given alone (Sugarkube host=), and never when disabled', () => {
        const hostOnly = render({ set: ['ingress.host=staging.token.place'] }).docs;
        const off = render({ ...RUNBOOK, set: [...(RUNBOOK.set ?? []), 'ingress.enabled=false'] });

        expect(get(one(hostOnly, 'Ingress'), 'spec.rules.0.host')).toBe('staging.token.place');
        expect(find(render().docs, 'Ingress')).toEqual([]);
        expect(find(off.docs, 'Ingress')).toEqual([]);
        expect(
          renderNotes({ ...RUNBOOK, set: [...(RUNBOOK.set ?? []), 'ingress.enabled=false'] }),
        ).toContain(
          'WARNING: no Ingress was rendered, so nothing outside the cluster (Traefik, the Cloudflare tunnel)',
        );
        expect(renderNotes()).toContain('Set ingress.host (Sugarkube: host=staging.token.place)');
      });
    });

    describe('redeploying a mutable tag', () => {
      it('should change the pod template on every render of main-latest pulled Always, so helm upgrade rolls and pulls', () => {
        const a = render(RUNBOOK);
        const b = render(RUNBOOK);
        const stamp = /tokenplace\.io\/redeploy: "[0-9a-f-]{36}"/g;

        expect(podAnnotations(a.docs)['tokenplace.io/redeploy']).toMatch(/^[0-9a-f-]{36}$/);
        expect(podAnnotations(a.docs)['tokenplace.io/redeploy']).not.toBe(
          podAnnotations(b.docs)['tokenplace.io/redeploy'],
        );
        expect(a.text.replace(stamp, '')).toBe(b.text.replace(stamp, ''));
        expect(renderNotes(RUNBOOK)).toContain(
          'the tag main-latest is mutable, so every helm upgrade rolls the pod',
        );
      });

      it('should render byte-identically for an immutable tag, a pinned digest, or restartOnUpgrade=never', () => {
        const pinned = { ...RUNBOOK, set: ['image.tag=main-0123abc', 'image.pullPolicy=Always'] };
        const digest = {
          ...RUNBOOK,
          set: [...(RUNBOOK.set ?? []), `image.digest=sha256:${'d'.repeat(64)}`],
        };
        const never = { ...RUNBOOK, set: [...(RUNBOOK.set ?? []), 'image.restartOnUpgrade=never'] };

        for (const o of [pinned, digest, never, SUGARKUBE]) {
          expect(render(o).text).toBe(render(o).text);
          expect(podAnnotations(render(o).docs)['tokenplace.io/redeploy']).toBeUndefined();
        }
        expect(
          podAnnotations(render({ set: ['image.restartOnUpgrade=always'] }).docs)[
            'tokenplace.io/redeploy'
          ],
        ).toBeDefined();
        expect(
          podAnnotations(render({ set: ['image.tag=main-latest'] }).docs)['tokenplace.io/redeploy'],
        ).toBeUndefined();
      });
    });

    describe('memory: the relay learns its limit and the chart sizes its heap', () => {
      it.each([
        ['256Mi', 128],
        ['512Mi', 384],
        ['1Gi', 768],
        ['2G', 1430],
      ])(
        'should give a %s pod --max-old-space-size=%d, --max-semi-space-size=1 and the limit',
        (limit, heap) => {
          const { docs } = render({ set: [`resources.limits.memory=${limit}`] });
          const env = envMap(docs);
          const limitMiB = /Gi$/.test(limit)
            ? Number.parseInt(limit, 10) * 1024
            : /G$/.test(limit)
              ? (Number.parseInt(limit, 10) * 1e9) / MiB
              : Number.parseInt(limit, 10);

          expect(env.NODE_OPTIONS?.value).toBe(
            `--max-old-space-size=${heap} --max-semi-space-size=1`,
          );
          expect(env.TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES).toEqual({
            name: 'TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES',
            valueFrom: { resourceFieldRef: { containerName: 'relay', resource: 'limits.memory' } },
          });
          // The heap plus what Node keeps outside it (measured 63-80 MiB) stays inside the limit.
          expect(heap + 96).toBeLessThanOrEqual(limitMiB);
        },
      );

      it('should leave the heap to V8 without a memory limit or with relay.maxHeapMiB=0', () => {
        for (const set of [['resources.limits.memory=null'], ['relay.maxHeapMiB=0']]) {
          expect(envMap(render({ set }).docs).NODE_OPTIONS?.value).toBe('--max-semi-space-size=1');
        }
        expect(
          envMap(render({ set: ['relay.maxHeapMiB=0', 'relay.maxSemiSpaceMiB=0'] }).docs)
            .NODE_OPTIONS,
        ).toBeUndefined();
        expect(envMap(render({ set: ['relay.maxSemiSpaceMiB=4'] }).docs).NODE_OPTIONS?.value).toBe(
          '--max-old-space-size=384 --max-semi-space-size=4',
        );
        expect(
          envMap(render({ set: ['resources.limits.memory=null'] }).docs)
            .TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES,
        ).toBeUndefined();
        expect(
          envMap(render({ set: ['env.NODE_OPTIONS=--max-old-space-size=300'] }).docs).NODE_OPTIONS
            ?.value,
        ).toBe('--max-old-space-size=300');
      });
    });

    describe('Redis in the cluster: the chart-managed Valkey', () => {
      const ha = render(MATRIX['HA with the chart-managed Valkey (example values)']).docs;
      const secured = render(MATRIX['Valkey with a password, no persistence, one replica']).docs;
      const valkey = (docs: K8s[]): K8s =>
        docs.find((d) => d.kind === 'StatefulSet' && d.metadata.name.endsWith('-valkey')) as K8s;

      it('should start one Valkey with a PVC, append-only persistence and noeviction when state.store=redis', () => {
        const set = valkey(ha);
        const conf = get<Record<string, string>>(
          ha.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'tokenplace-valkey'),
          'data',
        )['valkey.conf'] as string;
        const container = get<PodSpecLike>(set, 'spec.template.spec').containers[0];

        expect(get(set, 'spec.replicas')).toBe(1);
        expect(get(set, 'spec.volumeClaimTemplates.0.spec')).toEqual({
          accessModes: ['ReadWriteOnce'],
          resources: { requests: { storage: '1Gi' } },
        });
        expect(conf).toMatch(/^appendonly yes$/m);
        expect(conf).toMatch(/^appendfsync everysec$/m);
        expect(conf).toMatch(/^maxmemory-policy noeviction$/m);
        expect(conf).toMatch(new RegExp(`^maxmemory ${Math.floor((256 * MiB * 60) / 100)}$`, 'm'));
        expect(conf).toMatch(/^save ""$/m);
        expect(container?.image).toBe(
          'docker.io/valkey/valkey:8.1.8-alpine@sha256:77643d152547b446fc15cbafaff22004545663fcd40c6b28038ad283837baa75',
        );
        expect(container?.command).toEqual(['valkey-server', '/etc/valkey/valkey.conf']);
        expect(container?.readinessProbe?.exec?.command).toEqual([
          'sh',
          '-c',
          '[ "$(valkey-cli -p 6379 ping)" = PONG ]',
        ]);
        expect(container?.livenessProbe?.tcpSocket).toEqual({ port: 'valkey' });
        expect(container?.resources?.limits?.memory).toBe('256Mi');
        expect(envMap(ha).TOKENPLACE_RELAY_REDIS_URL?.value).toBe(
          'redis://tokenplace-valkey:6379/0',
        );
      });

      it('should admit only this release relay pods to Valkey and let the relay reach only Valkey', () => {
        const store = ha.find(
          (d) => d.kind === 'NetworkPolicy' && d.metadata.name === 'tokenplace-valkey',
        ) as K8s;
        const relay = ha.find(
          (d) => d.kind === 'NetworkPolicy' && d.metadata.name === 'tokenplace',
        ) as K8s;
        const relayPods = get<Record<string, string>>(
          one(ha, 'Deployment'),
          'spec.template.metadata.labels',
        );
        const storePods = get<Record<string, string>>(valkey(ha), 'spec.template.metadata.labels');
        const matches = (labels: Record<string, string>, sel: Record<string, string>): boolean =>
          Object.entries(sel).every(([k, v]) => labels[k] === v);

        expect(get(store, 'spec.policyTypes')).toEqual(['Ingress', 'Egress']);
        expect(get(store, 'spec.egress')).toEqual([]);
        expect(get(store, 'spec.ingress')).toEqual([
          {
            from: [
              {
                podSelector: {
                  matchLabels: {
                    'app.kubernetes.io/name': 'tokenplace',
                    'app.kubernetes.io/instance': 'tokenplace',
                  },
                },
              },
            ],
            ports: [{ port: 6379, protocol: 'TCP' }],
          },
        ]);
        expect(
          matches(relayPods, get(store, 'spec.ingress.0.from.0.podSelector.matchLabels')),
        ).toBe(true);
        expect(matches(storePods, get(store, 'spec.podSelector.matchLabels'))).toBe(true);
        // No relay selector (Service, Deployment, relay NetworkPolicy, PDB) picks Valkey pods.
        for (const sel of [
          get<Record<string, string>>(one(ha, 'Deployment'), 'spec.selector.matchLabels'),
          get<Record<string, string>>(
            find(ha, 'Service').find((s) => s.metadata.name === 'tokenplace'),
            'spec.selector',
          ),
          get<Record<string, string>>(relay, 'spec.podSelector.matchLabels'),
        ]) {
          expect(matches(storePods, sel)).toBe(false);
        }
        expect(get(relay, 'spec.egress.1')).toEqual({
          to: [{ podSelector: { matchLabels: get(store, 'spec.podSelector.matchLabels') } }],
          ports: [{ port: 6379, protocol: 'TCP' }],
        });
      });

      it('should take the Valkey password from a Secret and hand it to the relay URL by reference', () => {
        const env = envMap(secured);
        const container = get<PodSpecLike>(valkey(secured), 'spec.template.spec').containers[0];

        expect(env.VALKEY_PASSWORD).toEqual({
          name: 'VALKEY_PASSWORD',
          valueFrom: { secretKeyRef: { name: 'valkey-password', key: 'password' } },
        });
        expect(env.TOKENPLACE_RELAY_REDIS_URL?.value).toBe(
          'redis://:$(VALKEY_PASSWORD)@relay-tokenplace-relay-valkey:6379/0',
        );
        const names = podSpec(secured).containers[0]?.env?.map((e) => e.name) ?? [];
        expect(names.indexOf('VALKEY_PASSWORD')).toBeLessThan(
          names.indexOf('TOKENPLACE_RELAY_REDIS_URL'),
        );
        expect(container?.args).toEqual(['--requirepass', '$(VALKEY_PASSWORD)']);
        expect(get(valkey(secured), 'spec.volumeClaimTemplates')).toBeUndefined();
        expect(find(secured, 'Secret')).toEqual([]);
      });

      it('should run no Valkey with the memory store or an external Redis', () => {
        expect(valkey(render().docs)).toBeUndefined();
        expect(
          valkey(
            render(MATRIX['external Redis, fixed 3 replicas, no autoscaling'] as RenderOptions)
              .docs,
          ),
        ).toBeUndefined();
      });
    });

    describe('smaller fixes', () => {
      it('should fill in the release selector for spread constraints that have none', () => {
        const spread = get<Array<Record<string, unknown>>>(
          one(
            render(MATRIX['HA with the chart-managed Valkey (example values)']).docs,
            'Deployment',
          ),
          'spec.template.spec.topologySpreadConstraints',
        );
        const own = get<Array<Record<string, unknown>>>(
          one(
            render({
              set: [
                'topologySpreadConstraints[0].maxSkew=1',
                'topologySpreadConstraints[0].topologyKey=zone',
                'topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule',
                'topologySpreadConstraints[0].labelSelector.matchLabels.team=a',
              ],
            }).docs,
            'Deployment',
          ),
          'spec.template.spec.topologySpreadConstraints',
        );

        expect(spread).toEqual([
          {
            maxSkew: 1,
            topologyKey: 'kubernetes.io/hostname',
            whenUnsatisfiable: 'ScheduleAnyway',
            labelSelector: {
              matchLabels: {
                'app.kubernetes.io/name': 'tokenplace',
                'app.kubernetes.io/instance': 'tokenplace',
              },
            },
          },
        ]);
        expect(own?.[0]?.labelSelector).toEqual({ matchLabels: { team: 'a' } });
        expect(read('docs/examples/tokenplace-relay.values.ha-redis.yaml')).not.toMatch(
          /instance: tokenplace|redis\.example\.internal/,
        );
      });

      it('should keep relay image and container contract in every render the runbook documents', () => {
        for (const o of [RUNBOOK, MONITORED, SUGARKUBE]) {
          expect(relayContainer(render(o).docs).name).toBe('relay');
        }
      });
    });
  },
);

interface PodSpecLike {
  containers: Array<{
    image: string;
    command?: string[];
    args?: string[];
    resources?: { limits?: Record<string, string> };
    readinessProbe?: { exec?: { command: string[] } };
    livenessProbe?: { tcpSocket?: Record<string, unknown> };
  }>;
}
