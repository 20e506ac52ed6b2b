import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { newIdentity } from '../../src/peer/peer.crypto';
import { ROOT, run } from '../chart/chart.helper';
import { gatewayChat, MOCK, pageChat } from '../helpers/demo-chat';
import { HeadNodeLoop } from '../helpers/gateway';
import { describeIf } from '../helpers/requirements';
import { call, type WireResult } from '../helpers/test-app';
import {
  buildImage,
  chartPodShape,
  imageReady,
  Pod,
  podman,
  runArgs,
  ULIMITS,
  type PodShape,
} from './pod';

/**
 * The image as shipped (issue 19): scripts/build-image.sh builds the Dockerfile, unchanged, on a
 * stand-in for its base (docs/operations.md, "The image in the tests"), once for this file; every
 * container below runs it in the pod shape `helm template` renders. More checks of the same build
 * (capacity in the chart's 512 Mi) belong here as further describe blocks: `Pod.start` with
 * environment overrides starts another container of it.
 */
const ready = imageReady();
const MiB = 1024 * 1024;
const note = (line: string): void => {
  process.stderr.write(`image: ${line}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `path` answers 200 (the container is starting), or fails after `ms`. */
async function until200(baseUrl: string, path: string, ms = 60_000): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    try {
      if ((await call(baseUrl, 'GET', path)).status === 200) {
        return Date.now() - started;
      }
    } catch {
      // not listening yet
    }
    await sleep(20);
  }
  throw new Error(`${baseUrl}${path} never answered 200`);
}

async function untilLogged(pod: Pod, msg: string, ms = 60_000): Promise<Record<string, unknown>> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    const line = pod.logs().find((l) => l.msg === msg);
    if (line) {
      return line;
    }
    await sleep(100);
  }
  throw new Error(`${pod.name} never logged "${msg}"`);
}

interface ImageConfig {
  Config: {
    User: string;
    Env: string[];
    Entrypoint: string[];
    Cmd: string[];
    ExposedPorts: Record<string, unknown>;
    StopSignal: string;
    WorkingDir: string;
    Labels: Record<string, string>;
  };
  Healthcheck?: { Test: string[] };
  Size: number;
}

describeIf(ready)("the relay image, built with podman and run in the chart's pod shape", () => {
  const name = `tokenplace-image-test-${process.pid}`;
  let image = '';
  let shape: PodShape;
  let config: ImageConfig;

  beforeAll(async () => {
    const build = await buildImage();
    image = build.image;
    shape = chartPodShape();
    config = (JSON.parse(podman(['image', 'inspect', image]).stdout) as ImageConfig[])[0]!;
    const standIn = /stand-in base (\S+) \((cached|built in [^)]*)/.exec(build.log);
    const built = /image \S+ built in (\d+ s)/.exec(build.log);
    note(
      `${image}: scripts/build-image.sh took ${build.seconds.toFixed(0)} s (stand-in ${
        standIn?.[2] ?? /stand-in base \S+ built in (\d+ s)/.exec(build.log)?.[1] ?? '?'
      }, podman build ${built?.[1] ?? '?'}), ${(config.Size / 1e6).toFixed(0)} MB`,
    );
  }, 45 * 60_000);

  describe('the image', () => {
    it('should carry the OCI labels and run node /app/dist/main.js as UID 1000 on port 5010, stopped by SIGTERM', () => {
      const head = run('git', ['rev-parse', 'HEAD']).stdout.trim();
      const c = config.Config;

      expect(c.Labels).toMatchObject({
        'org.opencontainers.image.title': 'tokenplace-relay',
        'org.opencontainers.image.licenses': 'MIT',
        'org.opencontainers.image.revision': head,
        'org.opencontainers.image.version': `test-${head.slice(0, 7)}`,
        'org.opencontainers.image.created': run('git', ['log', '-1', '--format=%cI']).stdout.trim(),
      });
      expect(c.Labels['org.opencontainers.image.description']).toMatch(/^token\.place relay/);
      expect(c.User).toBe('1000:1000');
      expect(c.Entrypoint).toEqual(['node']);
      expect(c.Cmd).toEqual(['/app/dist/main.js']);
      expect(Object.keys(c.ExposedPorts)).toEqual(['5010/tcp']);
      expect(c.StopSignal).toBe('SIGTERM');
      expect(c.WorkingDir).toBe('/app');
      expect(c.Env).toEqual(
        expect.arrayContaining([
          'NODE_ENV=production',
          `TOKENPLACE_GIT_SHA=${head}`,
          `NODE_VERSION=${/NODE_IMAGE=node:(\d+\.\d+\.\d+)-/.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1]}`,
        ]),
      );
      expect(config.Healthcheck?.Test.slice(0, 2)).toEqual(['CMD', 'node']);
    });

    it('should ship production dependencies only, without the empty scope folders npm prune leaves', () => {
      const inImage = (script: string): string =>
        podman([
          'run',
          '--rm',
          ...ULIMITS,
          '--network',
          'none',
          '--no-healthcheck',
          '--entrypoint',
          'sh',
          image,
          '-c',
          script,
        ]).stdout.trim();

      const emptyScopes = inImage(
        "find /app/node_modules -mindepth 1 -maxdepth 1 -name '@*' -type d -empty",
      );
      const devOnly = inImage(
        'for p in jest typescript @nestjs/cli @swc/core; do [ ! -e /app/node_modules/$p ] || echo $p; done',
      );
      const bytes = Number(inImage('du -sb /app/node_modules').split(/\s/)[0]);
      note(`node_modules ${(bytes / 1e6).toFixed(1)} MB`);

      expect(emptyScopes).toBe('');
      expect(devOnly).toBe('');
      expect(inImage('node -e \'require("@nestjs/core"); console.log("ok")\'')).toBe('ok');
    });
  });

  describe('in the pod shape, with the demo node (USE_MOCK_LLM=1)', () => {
    let pod: Pod;
    let readyMs = 0;

    beforeAll(() => {
      pod = Pod.start(image, name, shape, { USE_MOCK_LLM: '1' });
    }, 60_000);

    afterAll(() => pod?.remove());

    it('should take its limits and security settings from the rendered chart', () => {
      expect(shape).toMatchObject({
        memoryBytes: 512 * MiB,
        user: '1000:1000',
        readOnlyRoot: true,
        capDrop: ['ALL'],
        noNewPrivileges: true,
        readinessPath: '/healthz',
      });
      expect(shape.tmpfs.map((t) => t.path)).toEqual(['/tmp']);
      expect(shape.env.NODE_OPTIONS).toMatch(/^--max-old-space-size=\d+ --max-semi-space-size=1$/);
      expect(shape.env.TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES).toBe(String(512 * MiB));
    });

    it('should turn ready with the demo node registered, and answer chats through it at once', async () => {
      readyMs = await until200(pod.baseUrl, shape.readinessPath);
      const chats = await Promise.all([
        gatewayChat(pod.baseUrl),
        pageChat(pod.baseUrl, newIdentity()),
      ]);
      const health = await call(pod.baseUrl, 'GET', shape.readinessPath);
      const live = await call(pod.baseUrl, 'GET', shape.livenessPath);
      const v1 = await call(pod.baseUrl, 'GET', '/v1/health');
      note(`ready ${readyMs} ms after podman run returned`);

      expect(chats.every((t) => MOCK.test(t))).toBe(true);
      expect(health.status).toBe(200);
      expect(health.body).toMatchObject({ status: 'ok', store: 'memory', demoNodes: 1 });
      expect(live.body).toEqual({ status: 'alive' });
      expect(v1.status).toBe(200);
      expect(pod.exec(config.Healthcheck!.Test.slice(1)).status).toBe(0); // the image's HEALTHCHECK
    });

    it("should unwrap a HEAD node's PKCS#1 v1.5 answers in its worker thread (the worker file ships in the image)", async () => {
      await until200(pod.baseUrl, shape.readinessPath);
      const node = await new HeadNodeLoop(pod.baseUrl, undefined, { answerDelayMs: 0 }).start();
      const chats: WireResult[] = [];
      try {
        // Two nodes serve the model (the demo node answers OAEP): round-robin reaches this one.
        for (let i = 0; i < 4; i += 1) {
          chats.push(
            await call(pod.baseUrl, 'POST', '/v1/chat/completions', {
              model: 'qwen3-8b-instruct',
              messages: [{ role: 'user', content: `v1.5 #${i}` }],
            }),
          );
        }
      } finally {
        await node.stop();
      }
      const contents = chats.map(
        (c) =>
          (c.body as { choices?: Array<{ message: { content: string } }> }).choices?.[0]?.message
            .content,
      );

      expect(chats.map((c) => c.status)).toEqual([200, 200, 200, 200]);
      expect(node.works.length).toBeGreaterThan(0);
      expect(contents.filter((c) => c?.startsWith('echo: ')).length).toBe(node.works.length);
      expect(
        contents.every((c) => c !== undefined && (MOCK.test(c) || c.startsWith('echo: '))),
      ).toBe(true);
      expect(pod.exec(['test', '-f', '/app/dist/common/rsa-private.cjs']).status).toBe(0);
    });

    it('should run node as PID 1 and UID 1000, with no capabilities, no new privileges, a read-only root and the /tmp tmpfs', () => {
      const status = pod.exec(['cat', '/proc/1/status']).stdout;
      const mounts = pod.exec(['cat', '/proc/1/mounts']).stdout.split('\n');
      const root = mounts.find((m) => m.split(' ')[1] === '/') ?? '';
      const tmp = mounts.find((m) => m.split(' ')[1] === '/tmp') ?? '';

      expect(pod.exec(['cat', '/proc/1/cmdline']).stdout).toBe('node\0/app/dist/main.js\0');
      expect(pod.exec(['id', '-u']).stdout.trim()).toBe('1000');
      expect(pod.exec(['id', '-g']).stdout.trim()).toBe('1000');
      expect(status).toMatch(/^Uid:\s+1000\s+1000\s+1000\s+1000$/m);
      expect(status).toMatch(/^CapEff:\s+0+$/m);
      expect(status).toMatch(/^CapBnd:\s+0+$/m);
      expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
      expect(root.split(' ')[3]?.split(',')).toContain('ro');
      expect(tmp).toMatch(
        new RegExp(`^tmpfs /tmp tmpfs rw,.*size=${shape.tmpfs[0]!.bytes / 1024}k`),
      );
    });

    it("should size its caps from the pod's 512 MiB: the chart's variable and the cgroup give the same caps", async () => {
      const caps = await untilLogged(pod, 'memory caps');
      const cgroupLimit = pod
        .exec([
          'sh',
          '-c',
          'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes',
        ])
        .stdout.trim();
      const fromCgroup = Pod.start(image, `${name}-cgroup`, shape, {
        TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES: null,
      });
      let cgroupCaps: Record<string, unknown>;
      try {
        cgroupCaps = await untilLogged(fromCgroup, 'memory caps');
      } finally {
        fromCgroup.remove();
      }
      const figures = ({ time: _t, limitSource: _s, ...rest }: Record<string, unknown>) => rest;
      const { level: _l, service: _v, context: _c, msg: _m, ...shown } = figures(caps);
      note(`memory caps ${JSON.stringify(shown)}`);

      expect(cgroupLimit).toBe(String(512 * MiB));
      expect(caps).toMatchObject({
        limitBytes: 512 * MiB,
        limitSource: 'TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES',
      });
      expect(cgroupCaps).toMatchObject({ limitBytes: 512 * MiB, limitSource: 'cgroup' });
      expect(figures(cgroupCaps)).toEqual(figures(caps));
      // NODE_OPTIONS=--max-old-space-size bounds the heap below the limit, as the chart intends.
      expect(caps.heapLimitBytes as number).toBeLessThan(512 * MiB - 96 * MiB);
      expect(caps.maxStoredResponses as number).toBeGreaterThan(0);
    }, 120_000);

    it('should write nothing outside /tmp', () => {
      // What podman itself creates in a container's layer (mount points, /run/.containerenv),
      // from a container of the same image and options that never ran the relay.
      const control = `${name}-control`;
      podman(['rm', '--force', '--ignore', control]);
      podman(['run', '--name', control, ...runArgs(shape), '--entrypoint', 'true', image]);
      const baseline = podman(['diff', control]).stdout;
      podman(['rm', '--force', control]);
      const touchApp = pod.exec(['touch', '/app/dist/written'], true);
      const touchTmp = pod.exec(['sh', '-c', 'echo x > /tmp/written && cat /tmp/written']);

      expect(touchApp.status).not.toBe(0);
      expect(touchApp.stderr).toContain('Read-only file system');
      expect(touchTmp.stdout.trim()).toBe('x');
      expect(podman(['diff', name]).stdout).toBe(baseline);
    });

    it('should drain on SIGTERM after its preStop hook (503 draining) and exit 0 within the drain window, as PID 1', async () => {
      const drainMs = Number(shape.env.TOKENPLACE_RELAY_DRAIN_SECONDS) * 1000;
      const preStopStarted = Date.now();
      const preStop = shape.preStop ? pod.exec(shape.preStop) : null;
      const preStopMs = Date.now() - preStopStarted;
      const beforeTerm = await call(pod.baseUrl, 'GET', shape.readinessPath);

      podman(['kill', '--signal', 'TERM', name]);
      const termAt = Date.now();
      let draining: WireResult | null = null;
      while (Date.now() - termAt < 2000) {
        const res = await call(pod.baseUrl, 'GET', shape.readinessPath);
        if (res.status === 503) {
          draining = res;
          break;
        }
      }
      const chat = await call(pod.baseUrl, 'POST', '/v1/chat/completions', {
        model: 'qwen3-8b-instruct',
        messages: [{ role: 'user', content: 'too late' }],
      });
      const waited = spawnSync('podman', ['--runtime', 'runc', 'wait', name], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: shape.terminationGraceSeconds * 1000,
      });
      const exitedMs = Date.now() - termAt;
      note(
        `preStop ${preStopMs} ms, then SIGTERM to exit ${exitedMs} ms (drain window ${drainMs} ms)`,
      );

      expect(preStop?.status ?? 0).toBe(0);
      expect(beforeTerm.status).toBe(200);
      expect(draining?.body).toMatchObject({ status: 'draining', details: { shutdown: true } });
      expect(draining?.headers.get('retry-after')).toBe('0');
      expect(chat.status).toBe(503);
      expect(waited.stdout.trim()).toBe('0');
      expect(exitedMs).toBeGreaterThanOrEqual(drainMs - 100);
      expect(exitedMs).toBeLessThan(
        Math.min(
          Number(shape.env.TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS) * 1000,
          shape.terminationGraceSeconds * 1000 - preStopMs,
        ),
      );
      expect(pod.logs().find((l) => l.msg === 'relay stopped')).toMatchObject({
        signal: 'SIGTERM',
      });
    }, 120_000);
  });
  describe("what a 512 Mi pod holds (bench/pod-capacity.mjs, this image, the chart's env)", () => {
    interface PhaseResult {
      held: number | string;
      next: string;
      collected?: string;
      rssMiB: number | string;
      peakMiB: number | string;
      died: boolean;
      oomKilled: boolean;
    }
    let port = 5600 + (process.pid % 200);

    /** Runs bench/pod-capacity.mjs's phases on this image in the chart's 512 Mi shape. */
    function podCapacity(phases: string[], args: string[]): Record<string, PhaseResult> {
      const bench = spawnSync(
        process.execPath,
        [
          'bench/pod-capacity.mjs',
          ...['--limit', '512Mi', '--store', 'memory', '--runner', 'podman', '--image', image],
          ...['--phases', phases.join(','), '--port', String(port), ...args],
        ],
        { cwd: ROOT, encoding: 'utf8', timeout: 40 * 60_000 },
      );
      port += phases.length;
      const lines = bench.stdout.split('\n');
      const json = lines.find((l) => l.startsWith('{"limit"'));
      if (json === undefined) {
        throw new Error(
          `pod-capacity printed no result (exit ${bench.status}): ${bench.stderr.slice(-2000)}`,
        );
      }
      note(`pod-capacity 512Mi memory: ${lines.find((l) => l.startsWith('| 512Mi')) ?? json}`);
      return (JSON.parse(json) as { results: Record<string, PhaseResult> }).results;
    }

    function expectNeverKilled(results: Record<string, PhaseResult>): void {
      for (const r of Object.values(results)) {
        expect({ died: r.died, oomKilled: r.oomKilled }).toEqual({
          died: false,
          oomKilled: false,
        });
        expect(r.peakMiB).toBeLessThan(512);
      }
    }

    it(
      'should hold 10,000 waiting 4 KiB answers on each protocol (collected intact), 10,000 queued 4 KiB requests, and refuse a 1 MiB flood with 503 + Retry-After, never OOM-killed',
      () => {
        const results = podCapacity(
          ['queued', 'legacy', 'v1', 'flood'],
          ['--max', '10100', '--seconds', '400'],
        );

        expect(results.queued?.held).toBeGreaterThanOrEqual(10_000);
        for (const protocol of ['legacy', 'v1']) {
          const r = results[protocol];
          // Every answer held was collected byte for byte (the first request per node registers it).
          expect({ protocol, atLeast: Number(r?.held) >= 10_000, collected: r?.collected }).toEqual(
            {
              protocol,
              atLeast: true,
              collected: `${r?.held}/${r?.held} intact`,
            },
          );
        }
        expect(results.flood?.next).toMatch(/^503 RA \d+.*; \/livez 200$/);
        expectNeverKilled(results);
      },
      45 * 60_000,
    );

    it(
      "should hold the registry's 1,024 nodes each polling, 5,000 client retrieves and the gateway's 1,024 chats, refuse node 1,025 and chat 1,025 with 503 + Retry-After, and stay healthy, never OOM-killed",
      () => {
        const { held } = podCapacity(['held'], ['--retrieves', '5000', '--chats', '1024']);
        const r = held as PhaseResult & {
          registry: { nodes: number; nextNode: string; renewal: number };
          claimed: number;
          polls: { sent: number; ended: Record<string, number> };
          retrieves: { sent: number; ended: Record<string, number> };
          chats: { sent: number; held: number; next: string };
          waitingAtOnce: number;
          refusedByBudget: number;
          sentMs: number;
          cpuMs: number;
          healthz: number;
        };
        note(
          `held: ${r.waitingAtOnce} of 7,048 at once; the 6,024 polls and retrieves all held ${r.sentMs} ms after they were written, ${r.cpuMs} ms of the relay's CPU`,
        );

        // Spec §9: at most 1,024 compute nodes; a new one fails at capacity, a renewal succeeds.
        expect(r.registry).toEqual({
          nodes: 1024,
          nextNode: expect.stringMatching(/^503 RA \d+/) as unknown,
          renewal: 200,
        });
        // Every request and chat in flight at a node that never answers, nothing left queued...
        expect(r.claimed).toBe(5000 + 1024);
        // ...so each poll was held its whole wait and ended empty, each retrieve likewise pending;
        expect(r.polls.ended).toEqual({ '200 no work': 1024 });
        expect(r.retrieves.ended).toEqual({ '202 pending': 5000 });
        // ...and all of them at one moment: the relay's own count (the bench opens every connection
        // first and writes the 6,024 requests at once, so each retrieve's 8 s hold overlaps).
        expect(r.chats).toMatchObject({ sent: 1024, held: 1024 });
        expect(r.waitingAtOnce).toBe(1024 + 5000 + 1024);
        // ...inside the held-wait budget the memory plan derives for this pod: none refused.
        expect(r.refusedByBudget).toBe(0);
        expect(r.chats.next).toMatch(/^503 RA \d+ gateway_busy$/);
        expect(r.healthz).toBe(200);
        expectNeverKilled({ held: r });
      },
      10 * 60_000,
    );
  });
});
