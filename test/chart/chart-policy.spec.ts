import { describeIf } from '../helpers/requirements';
import {
  MATRIX,
  envList,
  envMap,
  find,
  get,
  helmReady,
  one,
  podSpec,
  relayContainer,
  render,
  type K8s,
  type PodSpec,
} from './chart.helper';

const SUGARKUBE_STAGING =
  MATRIX['Sugarkube staging, Aug-2026 recipe (app=tokenplace env=staging), its values unchanged'] ??
  {};
const RUNBOOK = MATRIX['runbook staging, Dec-2025 recipe (default_tag=main-latest)'] ?? {};
const HA = MATRIX['HA with the chart-managed Valkey (example values)'] ?? {};
const SECRET_ENV = /(_TOKENS?|PASSWORD|SECRET|REDIS_URL)$/;
/** A literal Redis URL is fine without credentials, or with a $(VAR) reference to a Secret env. */
const carriesSecret = (e: { name: string; value?: string }): boolean =>
  e.value !== undefined &&
  !(/REDIS_URL$/.test(e.name) && /^rediss?:\/\/(:\$\([A-Z_]+\)@)?[^:@/]+:\d+\/\d+$/.test(e.value));

const ready = helmReady();

describeIf(ready)(
  'Helm chart policies (ops.md §1 defects, §2 Sugarkube contract, §5 checklist)',
  () => {
    const all = ready
      ? Object.entries(MATRIX).map(([label, o]) => ({ label, docs: render(o).docs }))
      : [];

    describe('Sugarkube recipe arguments and the runbook values', () => {
      it('should deploy the runbook values unchanged with --set image.tag=main-latest --set image.pullPolicy=Always', () => {
        const { docs, text } = render(RUNBOOK);
        const relay = relayContainer(docs);
        const deployment = one(docs, 'Deployment');

        expect(relay.image).toBe('ghcr.io/democratizedspace/tokenplace-relay:main-latest');
        expect(relay.imagePullPolicy).toBe('Always');
        expect(deployment.metadata.labels?.['app.kubernetes.io/instance']).toBe('tokenplace-relay');
        expect(envMap(docs).TOKEN_PLACE_ENV?.value).toBe('staging');
        expect(envMap(docs).TOKENPLACE_RELAY_PUBLIC_URL?.value).toBe('https://staging.token.place');
        expect(envMap(docs).TOKENPLACE_DEPLOY_ENV?.value).toBe('staging');
        expect(one(docs, 'Service').spec).toMatchObject({
          ports: [{ name: 'http', port: 5010, targetPort: 'http' }],
        });
        expect(text).toMatch(
          /^ {10}image: "ghcr\.io\/democratizedspace\/tokenplace-relay:main-latest"$/m,
        );
        expect(get(one(docs, 'Ingress'), 'spec.rules.0.host')).toBe('staging.token.place');
      });

      it('should satisfy the Aug-2026 preflight: container relay, image ending :<tag>, exact ingress host, four metadata env vars', () => {
        const { docs, text } = render(SUGARKUBE_STAGING);
        const env = envMap(docs);
        const deployment = one(docs, 'Deployment');

        expect(deployment.metadata.name).toBe('tokenplace');
        expect(deployment.metadata.labels?.['app.kubernetes.io/instance']).toBe('tokenplace');
        expect(relayContainer(docs).image.endsWith(':main-0123abc')).toBe(true);
        expect(text).toMatch(/^ {4}- host: staging\.token\.place$/m);
        for (const name of [
          'TOKENPLACE_IMAGE_TAG',
          'TOKENPLACE_RELEASE_VERSION',
          'TOKENPLACE_CHART_VERSION',
          'TOKENPLACE_DEPLOY_ENV',
        ]) {
          expect(env[name]?.value).toMatch(/^[-A-Za-z0-9_./:*]+$/);
        }
        expect(env.TOKENPLACE_IMAGE_TAG?.value).toBe('main-0123abc');
        expect(env.TOKENPLACE_DEPLOY_ENV?.value).toBe('staging');
      });

      it('should render the ServiceMonitor exactly as Sugarkube validate-render requires for tokenplace/staging', () => {
        const { docs } = render(SUGARKUBE_STAGING);
        const monitors = find(docs, 'ServiceMonitor');
        const sm = monitors[0] as K8s;

        expect(monitors).toHaveLength(1);
        expect(sm.metadata).toMatchObject({ name: 'tokenplace', namespace: 'tokenplace' });
        expect(sm.metadata.labels?.release).toBe('kube-prometheus-stack');
        expect(get(sm, 'spec.namespaceSelector')).toEqual({ matchNames: ['tokenplace'] });
        expect(get(sm, 'spec.selector')).toEqual({
          matchLabels: {
            'app.kubernetes.io/instance': 'tokenplace',
            'app.kubernetes.io/name': 'tokenplace',
          },
        });
        expect(get(sm, 'spec.targetLabels')).toBeUndefined();
        expect(get(sm, 'spec.endpoints')).toEqual([
          {
            port: 'http',
            path: '/metrics',
            interval: '30s',
            scrapeTimeout: '10s',
            authorization: {
              type: 'Bearer',
              credentials: { name: 'tokenplace-staging-metrics-token', key: 'token' },
            },
            relabelings: [
              { action: 'replace', targetLabel: 'app', replacement: 'tokenplace' },
              { action: 'replace', targetLabel: 'environment', replacement: 'staging' },
              { action: 'replace', targetLabel: 'release', replacement: 'tokenplace' },
              { action: 'replace', targetLabel: 'cluster', replacement: 'sugarkube-int' },
            ],
          },
        ]);
        expect(envList(docs).filter((e) => e.name === 'TOKENPLACE_IMAGE_TAG')).toEqual([
          { name: 'TOKENPLACE_IMAGE_TAG', value: 'main-0123abc' },
        ]);
      });

      it('should let the ServiceMonitor find the Service, and the Service find only relay pods', () => {
        const { docs } = render(SUGARKUBE_STAGING);
        const service = one(docs, 'Service');
        const selector = get<Record<string, string>>(
          one(docs, 'ServiceMonitor'),
          'spec.selector.matchLabels',
        );
        const podLabels = get<Record<string, string>>(
          one(docs, 'Deployment'),
          'spec.template.metadata.labels',
        );
        const testLabels = one(docs, 'Pod').metadata.labels ?? {};
        const serviceSelector = get<Record<string, string>>(service, 'spec.selector');
        const matches = (labels: Record<string, string>, sel: Record<string, string>): boolean =>
          Object.entries(sel).every(([k, v]) => labels[k] === v);

        expect(matches(service.metadata.labels ?? {}, selector)).toBe(true);
        expect(matches(podLabels, serviceSelector)).toBe(true);
        expect(matches(testLabels, serviceSelector)).toBe(false);
      });

      it('should render no legacy GPU upstream objects (fixed name gpu-server, ExternalName, v1 Endpoints)', () => {
        for (const { docs } of all) {
          expect(
            docs.filter(
              (d) =>
                d.kind === 'Endpoints' ||
                d.metadata.name === 'gpu-server' ||
                get(d, 'spec.type') === 'ExternalName',
            ),
          ).toEqual([]);
        }
      });

      it('should tolerate the top-level environment key and an empty env', () => {
        const { docs } = render({
          values: ['test/chart/fixtures/sugarkube-dev.values.yaml'],
          set: ['env=null'],
        });

        expect(envMap(docs).TOKENPLACE_DEPLOY_ENV?.value).toBe('dev');
        expect(one(docs, 'Ingress').spec).toMatchObject({
          rules: [{ http: { paths: [{ path: '/' }] } }],
        });
      });

      it('should accept env as a map and as a list of EnvVar, each name once', () => {
        const map = render({
          set: ['env.TOKEN_PLACE_ENV=production', 'env.TOKENPLACE_LOG_LEVEL=debug'],
        }).docs;
        const list = render({
          set: [
            'env[0].name=TOKEN_PLACE_ENV',
            'env[0].value=production',
            'env[1].name=TOKENPLACE_LOG_LEVEL',
            'env[1].value=debug',
          ],
        }).docs;

        for (const docs of [map, list]) {
          const names = envList(docs).map((e) => e.name);
          expect(new Set(names).size).toBe(names.length);
          expect(envMap(docs).TOKEN_PLACE_ENV?.value).toBe('production');
          expect(envMap(docs).TOKENPLACE_LOG_LEVEL?.value).toBe('debug');
          expect(envMap(docs).TOKENPLACE_DEPLOY_ENV?.value).toBe('prod');
        }
      });

      it('should keep the tag visible when a digest is pinned (repo:tag@digest)', () => {
        const digest = `sha256:${'b'.repeat(64)}`;

        const image = relayContainer(
          render({ set: ['image.tag=main-0123abc', `image.digest=${digest}`] }).docs,
        ).image;

        expect(image).toBe(`ghcr.io/democratizedspace/tokenplace-relay:main-0123abc@${digest}`);
      });

      it('should default to a valid, pullable image reference (the old default ghcr.io/${OWNER}/... was not)', () => {
        const image = relayContainer(render().docs).image;

        expect(image).toMatch(/^[a-z0-9.-]+(\/[a-z0-9._-]+)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/);
      });
    });

    describe('replica safety', () => {
      it('should run exactly one pod with Recreate, and no PDB or HPA, with the memory store', () => {
        const { docs } = render();

        expect(get(one(docs, 'Deployment'), 'spec.replicas')).toBe(1);
        expect(get(one(docs, 'Deployment'), 'spec.strategy')).toEqual({ type: 'Recreate' });
        expect(find(docs, 'PodDisruptionBudget')).toEqual([]);
        expect(find(docs, 'HorizontalPodAutoscaler')).toEqual([]);
        expect(envMap(docs).TOKENPLACE_RELAY_STATE_STORE?.value).toBe('memory');
      });

      it('should allow N replicas, RollingUpdate, a PDB that never blocks drains, and an HPA with Redis', () => {
        const { docs } = render(HA);
        const deployment = one(docs, 'Deployment');

        expect(get(deployment, 'spec.strategy')).toEqual({
          type: 'RollingUpdate',
          rollingUpdate: { maxSurge: 1, maxUnavailable: 0 },
        });
        expect(get(deployment, 'spec.replicas')).toBeUndefined();
        expect(get(one(docs, 'PodDisruptionBudget'), 'spec')).toEqual({
          maxUnavailable: 1,
          selector: {
            matchLabels: {
              'app.kubernetes.io/name': 'tokenplace',
              'app.kubernetes.io/instance': 'tokenplace',
            },
          },
        });
        expect(get(one(docs, 'HorizontalPodAutoscaler'), 'spec')).toMatchObject({
          minReplicas: 2,
          maxReplicas: 4,
          scaleTargetRef: { kind: 'Deployment', name: 'tokenplace' },
        });
        expect(envMap(docs).TOKENPLACE_RELAY_STATE_STORE?.value).toBe('redis');
        expect(envMap(docs).TOKENPLACE_RELAY_REDIS_URL).toEqual({
          name: 'TOKENPLACE_RELAY_REDIS_URL',
          value: 'redis://tokenplace-valkey:6379/0',
        });
      });

      it('should render no PDB for a single Redis replica (minAvailable on one pod blocks every drain)', () => {
        const { docs } = render({ set: ['state.store=redis', 'state.redis.existingSecret=r'] });

        expect(find(docs, 'PodDisruptionBudget')).toEqual([]);
      });
    });

    describe('pod lifecycle: probes, draining, grace period', () => {
      it('should probe readiness on /healthz, liveness on /livez, and startup, all on the container port', () => {
        const relay = relayContainer(render().docs);

        expect(relay.ports).toEqual([{ name: 'http', containerPort: 5010, protocol: 'TCP' }]);
        expect(relay.readinessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
        expect(relay.livenessProbe?.httpGet).toEqual({ path: '/livez', port: 'http' });
        expect(relay.startupProbe?.httpGet).toEqual({ path: '/livez', port: 'http' });
        expect(
          (relay.startupProbe?.periodSeconds ?? 0) * (relay.startupProbe?.failureThreshold ?? 0),
        ).toBeGreaterThanOrEqual(30);
      });

      it('should sleep first in preStop and never signal the relay itself (the old hook killed PID 1 first)', () => {
        for (const { label, docs } of all) {
          const preStop = relayContainer(docs).lifecycle?.preStop;

          const sleep = preStop?.sleep?.seconds ?? Number(preStop?.exec?.command[1]);

          expect({ label, preStop }).toEqual({
            label,
            preStop: preStop?.sleep
              ? { sleep: { seconds: 5 } }
              : { exec: { command: ['sleep', '5'] } },
          });
          expect(sleep).toBeGreaterThan(0);
        }
      });

      it('should give the pod more than preStop sleep + the relay shutdown grace, which exceeds the drain window', () => {
        for (const { docs } of all) {
          const spec = podSpec(docs);
          const env = envMap(docs);
          const preStop = relayContainer(docs).lifecycle?.preStop;
          const sleep = preStop?.sleep?.seconds ?? Number(preStop?.exec?.command[1]);
          const drain = Number(env.TOKENPLACE_RELAY_DRAIN_SECONDS?.value);
          const grace = Number(env.TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS?.value);

          expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(sleep + grace);
          expect(grace).toBeGreaterThan(drain);
        }
      });

      it('should roll the pods when their configuration changes (checksum annotation)', () => {
        const a = render().docs;
        const b = render({ set: ['env.TOKEN_PLACE_ENV=staging'] }).docs;
        const c = render({ set: ['nodeAuth.existingSecret=rotated-tokens'] }).docs;
        const checksum = (docs: K8s[]): string | undefined =>
          get<Record<string, string>>(
            one(docs, 'Deployment'),
            'spec.template.metadata.annotations',
          )['checksum/config'];

        expect(checksum(a)).toMatch(/^[0-9a-f]{64}$/);
        expect(checksum(render().docs)).toBe(checksum(a));
        expect(checksum(b)).not.toBe(checksum(a));
        expect(checksum(c)).not.toBe(checksum(a));
      });
    });

    describe('security', () => {
      const restricted = (
        spec: PodSpec,
        container: { securityContext?: Record<string, unknown> },
      ): void => {
        expect(spec.securityContext).toMatchObject({
          runAsNonRoot: true,
          runAsUser: 1000,
          runAsGroup: 1000,
          seccompProfile: { type: 'RuntimeDefault' },
        });
        expect(container.securityContext).toMatchObject({
          runAsNonRoot: true,
          runAsUser: 1000,
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(spec.automountServiceAccountToken).toBe(false);
      };

      it('should meet the restricted Pod Security profile with a read-only root and a bounded /tmp', () => {
        for (const { label, docs } of all) {
          const spec = podSpec(docs);
          const relay = relayContainer(docs);

          restricted(spec, relay);
          expect(relay.volumeMounts).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
          expect(spec.volumes?.find((v) => v.name === 'tmp')?.emptyDir?.sizeLimit).toBe('64Mi');
          expect(relay.resources?.requests?.memory).toBeDefined();
          expect(relay.resources?.limits?.memory === undefined).toBe(
            label.includes('no memory limit'),
          );
          for (const store of find(docs, 'StatefulSet')) {
            const storeSpec = get<PodSpec>(store, 'spec.template.spec');
            expect(storeSpec.securityContext).toMatchObject({
              runAsNonRoot: true,
              seccompProfile: { type: 'RuntimeDefault' },
            });
            expect(storeSpec.containers[0]?.securityContext).toMatchObject({
              runAsNonRoot: true,
              allowPrivilegeEscalation: false,
              readOnlyRootFilesystem: true,
              capabilities: { drop: ['ALL'] },
            });
            expect(storeSpec.automountServiceAccountToken).toBe(false);
          }
        }
      });

      it('should never render a Secret, nor a token, password or Redis URL as a literal env value', () => {
        for (const { label, docs } of all) {
          const literalSecrets = envList(docs).filter(
            (e) => SECRET_ENV.test(e.name) && carriesSecret(e),
          );

          expect({
            label,
            kinds: docs.filter((d) => d.kind === 'Secret').map((d) => d.metadata.name),
            literalSecrets,
          }).toEqual({
            label,
            kinds: [],
            literalSecrets: [],
          });
        }
      });

      it('should never leave /metrics open: disabled (401) or Bearer token from a Secret', () => {
        for (const { docs } of all) {
          const env = envMap(docs);

          const closed =
            env.TOKENPLACE_METRICS_DISABLED?.value === '1' ||
            env.TOKENPLACE_METRICS_TOKEN?.valueFrom?.secretKeyRef !== undefined;

          expect(closed).toBe(true);
        }
      });

      it('should mount node tokens from a Secret file the relay re-reads, or take them from a Secret env', () => {
        const file = render({ set: ['nodeAuth.tokensFile.existingSecret=node-tokens'] }).docs;
        const secretEnv = render({ set: ['nodeAuth.existingSecret=node-token'] }).docs;

        expect(envMap(file).TOKENPLACE_RELAY_SERVER_TOKENS_FILE?.value).toBe(
          '/etc/tokenplace/node-tokens/tokens',
        );
        expect(relayContainer(file).volumeMounts).toContainEqual({
          name: 'node-tokens',
          mountPath: '/etc/tokenplace/node-tokens',
          readOnly: true,
        });
        expect(podSpec(file).volumes).toContainEqual({
          name: 'node-tokens',
          secret: { secretName: 'node-tokens', defaultMode: 0o440 },
        });
        expect(envMap(secretEnv).TOKEN_PLACE_RELAY_SERVER_TOKENS).toEqual({
          name: 'TOKEN_PLACE_RELAY_SERVER_TOKENS',
          valueFrom: { secretKeyRef: { name: 'node-token', key: 'token' } },
        });
      });
    });

    describe('network', () => {
      it('should admit Traefik from kube-system and Prometheus from monitoring on the container port, whatever the Service port', () => {
        const { docs } = render(
          MATRIX['ServiceMonitor, alerts and dashboard on, node token Secret, TLS ingress'],
        );
        const policy = one(docs, 'NetworkPolicy');
        const ingress = get<Array<{ from: unknown[]; ports: unknown[] }>>(policy, 'spec.ingress');

        expect(get(one(docs, 'Service'), 'spec.ports.0.port')).toBe(80);
        expect(ingress).toContainEqual({
          from: [
            {
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
              podSelector: { matchLabels: { 'app.kubernetes.io/name': 'traefik' } },
            },
          ],
          ports: [{ port: 5010, protocol: 'TCP' }],
        });
        expect(ingress).toContainEqual({
          from: [
            {
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } },
              podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } },
            },
          ],
          ports: [{ port: 5010, protocol: 'TCP' }],
        });
        expect(
          ingress.every(
            (rule) => JSON.stringify(rule.ports) === '[{"port":5010,"protocol":"TCP"}]',
          ),
        ).toBe(true);
      });

      it('should admit the helm test pod and restrict egress to DNS (plus Redis with the Redis store)', () => {
        const memory = render().docs;
        const redis = render(MATRIX['external Redis, fixed 3 replicas, no autoscaling']).docs;
        const testPod = one(memory, 'Pod');
        const rules = get<
          Array<{ from: Array<{ podSelector?: { matchLabels: Record<string, string> } }> }>
        >(one(memory, 'NetworkPolicy'), 'spec.ingress');
        const admitted = rules.some((r) =>
          r.from.some(
            (peer) =>
              peer.podSelector &&
              Object.entries(peer.podSelector.matchLabels).every(
                ([k, v]) => testPod.metadata.labels?.[k] === v,
              ) &&
              !('namespaceSelector' in peer),
          ),
        );

        expect(admitted).toBe(true);
        expect(get(one(memory, 'NetworkPolicy'), 'spec.policyTypes')).toEqual([
          'Ingress',
          'Egress',
        ]);
        expect(get(one(memory, 'NetworkPolicy'), 'spec.egress')).toHaveLength(1);
        expect(get(one(redis, 'NetworkPolicy'), 'spec.egress.1')).toEqual({
          ports: [{ port: 6379, protocol: 'TCP' }],
        });
      });

      it('should route the whole host through Traefik to the Service port named http, with optional TLS', () => {
        const tls = render(SUGARKUBE_STAGING).docs;
        const plain = render(RUNBOOK).docs;

        expect(get(one(tls, 'Ingress'), 'spec')).toEqual({
          ingressClassName: 'traefik',
          tls: [{ secretName: 'tokenplace-staging-tls', hosts: ['staging.token.place'] }],
          rules: [
            {
              host: 'staging.token.place',
              http: {
                paths: [
                  {
                    path: '/',
                    pathType: 'Prefix',
                    backend: { service: { name: 'tokenplace', port: { name: 'http' } } },
                  },
                ],
              },
            },
          ],
        });
        expect(get(one(plain, 'Ingress'), 'spec')).toEqual({
          ingressClassName: 'traefik',
          rules: [
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
          ],
        });
      });
    });

    describe('helm test', () => {
      it('should run the smoke check from the relay image against the release Service, restricted, cleaned up', () => {
        const { docs } = render(
          MATRIX['ServiceMonitor, alerts and dashboard on, node token Secret, TLS ingress'],
        );
        const pod = one(docs, 'Pod');
        const spec = get<PodSpec>(pod, 'spec');
        const smoke = spec.containers[0];

        expect(pod.metadata.annotations).toEqual({
          'helm.sh/hook': 'test',
          'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded',
        });
        expect(smoke?.image).toBe(relayContainer(docs).image);
        expect(smoke?.command).toEqual([
          'node',
          '/app/dist/smoke/smoke.js',
          'http://relay-tokenplace-relay:80',
        ]);
        expect(smoke?.env).toEqual([
          {
            name: 'TOKEN_PLACE_RELAY_SERVER_TOKENS',
            valueFrom: { secretKeyRef: { name: 'relay-node-token', key: 'token' } },
          },
        ]);
        expect(get(pod, 'spec.restartPolicy')).toBe('Never');
        restrictedPod(spec);
      });

      it('should hand the token file to the smoke check when node tokens come from a file', () => {
        const { docs } = render({ set: ['nodeAuth.tokensFile.existingSecret=node-tokens'] });

        const smoke = get<PodSpec>(one(docs, 'Pod'), 'spec').containers[0];

        expect(smoke?.command?.slice(-2)).toEqual([
          '--token-file',
          '/etc/tokenplace/node-tokens/tokens',
        ]);
        expect(smoke?.volumeMounts).toContainEqual({
          name: 'node-tokens',
          mountPath: '/etc/tokenplace/node-tokens',
          readOnly: true,
        });
      });
    });

    describe('alerts', () => {
      it('should label the PrometheusRule for kube-prometheus-stack and only when enabled', () => {
        const on = render({
          release: 'tokenplace',
          namespace: 'tokenplace',
          set: ['prometheusRule.enabled=true'],
        }).docs;

        expect(one(on, 'PrometheusRule').metadata.labels?.release).toBe('kube-prometheus-stack');
        expect(find(render().docs, 'PrometheusRule')).toEqual([]);
      });
    });
  },
);

function restrictedPod(spec: PodSpec): void {
  const container = spec.containers[0];
  expect(spec.securityContext).toMatchObject({
    runAsNonRoot: true,
    runAsUser: 1000,
    seccompProfile: { type: 'RuntimeDefault' },
  });
  expect(container?.securityContext).toMatchObject({
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
  });
  expect(spec.automountServiceAccountToken).toBe(false);
}
