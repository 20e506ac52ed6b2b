import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A child memory cgroup of this process's own cgroup, with a hard limit, for running a relay the
 * way a Kubernetes container runs it (the kernel OOM-kills it past the limit). cgroup v1
 * (`memory.limit_in_bytes`) and v2 (`memory.max`, when the memory controller can be delegated).
 * Null when neither is possible here (not root, read-only cgroupfs, v2 without delegation).
 */
export interface MemoryCgroup {
  version: 1 | 2;
  path: string;
  limitBytes: number;
  /** Wraps a command so the process joins the cgroup before it execs the command. */
  wrap: (command: string, args: string[]) => [string, string[]];
  /** Highest memory the kernel charged to the cgroup. */
  peakBytes: () => number;
  /** Times the kernel hit the limit (v1 failcnt, v2 events max). */
  limitHits: () => number;
  /** Processes the kernel OOM-killed in the cgroup. */
  oomKills: () => number;
  remove: () => void;
}

function ownCgroup(): { v1?: string; v2?: string } {
  const out: { v1?: string; v2?: string } = {};
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers?.split(',').includes('memory')) {
      out.v1 = path;
    } else if (controllers === '' && path !== undefined) {
      out.v2 = path;
    }
  }
  return out;
}

const readNumber = (file: string, key?: string): number => {
  const text = readFileSync(file, 'utf8');
  if (key === undefined) {
    return Number(text.trim());
  }
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
};

export function createMemoryCgroup(limitBytes: number, name: string): MemoryCgroup | null {
  try {
    const own = ownCgroup();
    const wrap =
      (dir: string) =>
      (command: string, args: string[]): [string, string[]] => [
        'sh',
        ['-c', `echo $$ > "${dir}/cgroup.procs" && exec "$0" "$@"`, command, ...args],
      ];
    if (own.v1 !== undefined && existsSync(`/sys/fs/cgroup/memory${own.v1}`)) {
      const dir = join(`/sys/fs/cgroup/memory${own.v1}`, `${name}-${process.pid}`);
      mkdirSync(dir);
      writeFileSync(join(dir, 'memory.limit_in_bytes'), String(limitBytes));
      return {
        version: 1,
        path: dir,
        limitBytes,
        wrap: wrap(dir),
        peakBytes: () => readNumber(join(dir, 'memory.max_usage_in_bytes')),
        limitHits: () => readNumber(join(dir, 'memory.failcnt')),
        oomKills: () => readNumber(join(dir, 'memory.oom_control'), 'oom_kill'),
        remove: () => rmdirSync(dir),
      };
    }
    if (own.v2 !== undefined) {
      const base = join('/sys/fs/cgroup', own.v2);
      if (!readFileSync(join(base, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('memory')) {
        return null;
      }
      writeFileSync(join(base, 'cgroup.subtree_control'), '+memory');
      const dir = join(base, `${name}-${process.pid}`);
      mkdirSync(dir);
      writeFileSync(join(dir, 'memory.max'), String(limitBytes));
      if (existsSync(join(dir, 'memory.swap.max'))) {
        writeFileSync(join(dir, 'memory.swap.max'), '0');
      }
      return {
        version: 2,
        path: dir,
        limitBytes,
        wrap: wrap(dir),
        peakBytes: () => readNumber(join(dir, 'memory.peak')),
        limitHits: () => readNumber(join(dir, 'memory.events'), 'max'),
        oomKills: () => readNumber(join(dir, 'memory.events'), 'oom_kill'),
        remove: () => rmdirSync(dir),
      };
    }
  } catch {
    return null;
  }
  return null;
}
