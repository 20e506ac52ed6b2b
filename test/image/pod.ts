import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import {
  CHART,
  ROOT,
  commandWorks,
  get,
  helmReady,
  podSpec,
  relayContainer,
  render,
  type Container,
  type PodSpec,
  type RenderOptions,
} from '../chart/chart.helper';
import { requirement } from '../helpers/requirements';

/**
 * The relay image built by scripts/build-image.sh, run with podman in the pod shape the Helm chart
 * renders. Every limit, variable and security setting comes from `helm template` of the chart, so a
 * chart change is tested on the image the next run. podman runs with runc (crun refuses hybrid
 * cgroup hierarchies) and explicit ulimits, as root.
 */
export const PODMAN = ['podman', '--runtime', 'runc'];
export const ULIMITS = ['--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=4096:4096'];

/** podman, runc and debootstrap, as root; CI (.ci/run) sets TOKENPLACE_REQUIRE_IMAGE=1. */
export function imageReady(): boolean {
  const root = process.getuid?.() === 0;
  const tools =
    commandWorks('podman', ['--version']) &&
    commandWorks('runc', ['--version']) &&
    commandWorks('debootstrap', ['--version']);
  return (
    requirement(
      'relay image',
      root && tools && commandWorks(PODMAN[0] as string, [...PODMAN.slice(1), 'info']),
      'TOKENPLACE_REQUIRE_IMAGE',
      root
        ? 'podman with runc, and debootstrap, are needed (apt-get install podman buildah runc debootstrap)'
        : 'building and running the image needs root (debootstrap, podman storage)',
    ) && helmReady()
  );
}

export interface Podman {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** One podman command; throws with its output when it fails, unless `allowFailure`. */
export function podman(args: string[], allowFailure = false): Podman {
  const r = spawnSync(PODMAN[0] as string, [...PODMAN.slice(1), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) {
    throw r.error;
  }
  if (r.status !== 0 && !allowFailure) {
    throw new Error(`podman ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface Build {
  image: string;
  seconds: number;
  /** What scripts/build-image.sh printed (progress, podman build's steps). */
  log: string;
}

/** Runs scripts/build-image.sh (cached: the stand-in base by key, the image by podman's layers). */
export function buildImage(): Promise<Build> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [join(ROOT, 'scripts', 'build-image.sh')], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let log = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (log += c.toString('utf8')));
    child.once('error', reject);
    child.once('exit', (code) => {
      const seconds = (Date.now() - started) / 1000;
      if (code !== 0) {
        reject(new Error(`scripts/build-image.sh failed (${code}):\n${log.slice(-6000)}`));
        return;
      }
      resolve({ image: out.trim().split('\n').at(-1) ?? '', seconds, log });
    });
  });
}

const UNITS: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** A Kubernetes quantity ("512Mi", "64Mi", "1", "250m") as a number (bytes, or CPUs). */
export function quantity(text: string | number): number {
  const m = /^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(String(text));
  if (!m) {
    throw new Error(`not a quantity this test understands: ${text}`);
  }
  const value = Number(m[1]);
  return m[2] === 'm' ? value / 1000 : value * (UNITS[m[2] ?? ''] as number);
}

/** What `docker/podman run` needs to reproduce the chart's relay container. */
export interface PodShape {
  memoryBytes: number;
  cpus: number | null;
  env: Record<string, string>;
  user: string;
  readOnlyRoot: boolean;
  capDrop: string[];
  noNewPrivileges: boolean;
  /** emptyDir volumes, mounted as tmpfs of their sizeLimit. */
  tmpfs: Array<{ path: string; bytes: number }>;
  port: number;
  preStop: string[] | null;
  terminationGraceSeconds: number;
  readinessPath: string;
  livenessPath: string;
}

/**
 * The relay container of `helm template` (chart defaults unless `options` say otherwise), as podman
 * options. Anything the translation does not know (a secret, another downward-API field) is an
 * error, so a chart change cannot silently leave the image test on an old shape.
 */
export function chartPodShape(options: RenderOptions = {}): PodShape {
  const { docs } = render(options);
  const pod: PodSpec = podSpec(docs);
  const c: Container = relayContainer(docs);
  const memory = c.resources?.limits?.memory;
  if (memory === undefined) {
    throw new Error(`the chart (${CHART}) renders no memory limit`);
  }
  const memoryBytes = quantity(memory);
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const field = get<{ resource?: string } | undefined>(e, 'valueFrom.resourceFieldRef');
    if (e.value !== undefined) {
      env[e.name] = e.value;
    } else if (field?.resource === 'limits.memory') {
      env[e.name] = String(memoryBytes); // the downward API, divisor 1: bytes
    } else {
      throw new Error(`the image test cannot reproduce env ${e.name}: ${JSON.stringify(e)}`);
    }
  }
  const sc = { ...(pod.securityContext ?? {}), ...(c.securityContext ?? {}) } as {
    runAsUser?: number;
    runAsGroup?: number;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    privileged?: boolean;
  };
  if (sc.privileged || (sc.capabilities?.add ?? []).length > 0) {
    throw new Error('the image test does not grant privileges or capabilities');
  }
  const tmpfs = (c.volumeMounts ?? []).map((m) => {
    const volume = (pod.volumes ?? []).find((v) => v.name === m.name);
    if (!volume?.emptyDir) {
      throw new Error(`the image test can only mount emptyDir volumes, not ${m.name}`);
    }
    const size = volume.emptyDir.sizeLimit;
    return { path: m.mountPath, bytes: size === undefined ? memoryBytes : quantity(size) };
  });
  const http = c.ports?.find((p) => p.name === 'http');
  const cpu = c.resources?.limits?.cpu;
  return {
    memoryBytes,
    cpus: cpu === undefined ? null : quantity(cpu),
    env,
    user: `${sc.runAsUser ?? ''}:${sc.runAsGroup ?? ''}`,
    readOnlyRoot: sc.readOnlyRootFilesystem === true,
    capDrop: sc.capabilities?.drop ?? [],
    noNewPrivileges: sc.allowPrivilegeEscalation === false,
    tmpfs,
    port: http?.containerPort ?? 5010,
    preStop: c.lifecycle?.preStop?.exec?.command ?? null,
    terminationGraceSeconds: pod.terminationGracePeriodSeconds ?? 30,
    readinessPath: c.readinessProbe?.httpGet.path ?? '/healthz',
    livenessPath: c.livenessProbe?.httpGet.path ?? '/livez',
  };
}

/** `podman run` options for the shape: as Kubernetes would run the container, no more. */
export function runArgs(shape: PodShape, env: Record<string, string | null> = {}): string[] {
  const args = [
    ...ULIMITS,
    '--memory',
    String(shape.memoryBytes),
    '--memory-swap',
    String(shape.memoryBytes), // no swap, as on a kubelet
    '--user',
    shape.user,
    '--no-healthcheck', // Kubernetes ignores HEALTHCHECK; the chart's probes are the checks
    '--publish',
    `127.0.0.1::${shape.port}`,
  ];
  if (shape.cpus !== null) {
    args.push('--cpus', String(shape.cpus));
  }
  if (shape.readOnlyRoot) {
    // podman's --read-only adds writable tmpfs at /tmp, /var/tmp and /run unless told not to.
    args.push('--read-only', '--read-only-tmpfs=false');
  }
  for (const cap of shape.capDrop) {
    args.push('--cap-drop', cap);
  }
  if (shape.noNewPrivileges) {
    args.push('--security-opt', 'no-new-privileges');
  }
  for (const t of shape.tmpfs) {
    args.push('--mount', `type=tmpfs,destination=${t.path},tmpfs-size=${t.bytes},tmpfs-mode=1777`);
  }
  const merged: Record<string, string | null> = { ...shape.env, ...env };
  for (const [name, value] of Object.entries(merged)) {
    if (value !== null) {
      args.push('--env', `${name}=${value}`);
    }
  }
  return args;
}

/** One container of the image in the chart's shape, as the test drives it. */
export class Pod {
  readonly baseUrl: string;

  private constructor(
    readonly name: string,
    readonly shape: PodShape,
  ) {
    const port = podman(['port', name, `${shape.port}/tcp`])
      .stdout.trim()
      .split(':')
      .at(-1);
    this.baseUrl = `http://127.0.0.1:${port}`;
  }

  /** Starts a container (`env` adds to or, with null, removes from the chart's variables). */
  static start(
    image: string,
    name: string,
    shape: PodShape,
    env: Record<string, string | null> = {},
  ): Pod {
    podman(['rm', '--force', '--ignore', name]);
    podman(['run', '--detach', '--name', name, ...runArgs(shape, env), image]);
    return new Pod(name, shape);
  }

  /** The relay's JSON log lines so far. */
  logs(): Array<Record<string, unknown>> {
    return podman(['logs', this.name])
      .stdout.split('\n')
      .flatMap((line) => {
        try {
          return [JSON.parse(line) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
  }

  /** Runs a command inside the container (as its user, with its restrictions). */
  exec(command: string[], allowFailure = false): Podman {
    return podman(['exec', this.name, ...command], allowFailure);
  }

  inspect<T = unknown>(format: string): T {
    return JSON.parse(podman(['inspect', '--format', `{{json ${format}}}`, this.name]).stdout) as T;
  }

  remove(): void {
    podman(['rm', '--force', '--ignore', '--time', '0', this.name], true);
  }
}
