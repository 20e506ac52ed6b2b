#!/usr/bin/env node
// `npm run bench -- --suite hostile` (or `node bench/hostile.mjs`): replays the attacks of issue 18
// against a built relay on loopback and prints what each one did, one table per scenario.
//
//   node bench/hostile.mjs                               every scenario, against this checkout
//   node bench/hostile.mjs --only slow-uploads,buckets   some of them (the scenario names)
//   node bench/hostile.mjs --relay-dir /work/baseline    the same attacks on another build ("before")
//   node bench/hostile.mjs --pod-shape                   the relay in the chart's memory shape: a
//                                                        512 MiB memory cgroup, NODE_OPTIONS
//                                                        --max-old-space-size=384 (needs root and a
//                                                        writable cgroupfs; refused otherwise)
//   node bench/hostile.mjs --list                        the scenarios and what each measures
//
// Scenarios are the modules of bench/hostile/*.mjs, loaded in name order. Each exports
//   export default { name, about, async run(ctx) { return [{ figure, value, unit }, ...] } }
// with ctx = { relayDir, startRelay(env = {}, nodeArgs = []) -> Promise<{ base, pid, stop(), rssKiB() }>,
//              cgroup: null | { limitBytes, nodeOptions }, log(line) }.
// Everything targets 127.0.0.0/8 only; every loop is capped in count and time, and every relay a
// scenario starts is stopped by the runner if the scenario does not stop it.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, cli, stopProcess, table } from './lib.mjs';

const values = cli(
  'usage: node bench/hostile.mjs [--only a,b] [--relay-dir DIR] [--pod-shape] [--list]',
  {
    only: { type: 'string' },
    'relay-dir': { type: 'string', default: ROOT },
    'pod-shape': { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
  },
);

const MiB = 1024 * 1024;
/** The chart's defaults: resources.limits.memory 512Mi; maxHeapMiB null gives min(75 %, limit - 128 MiB). */
const POD = { limitBytes: 512 * MiB, nodeOptions: '--max-old-space-size=384' };
/** A scenario that runs longer than this is abandoned (its relays are stopped). */
const SCENARIO_CAP_MS = 10 * 60_000;

const relayDir = values['relay-dir'];
const mainJs = join(relayDir, 'dist', 'main.js');
const dir = join(ROOT, 'bench', 'hostile');
const scenarios = [];
for (const file of readdirSync(dir)
  .filter((f) => f.endsWith('.mjs'))
  .sort()) {
  const mod = await import(pathToFileURL(join(dir, file)).href);
  scenarios.push(mod.default);
}
if (values.list) {
  for (const s of scenarios) {
    process.stdout.write(`${s.name.padEnd(22)} ${s.about}\n`);
  }
  process.exit(0);
}
const only = values.only
  ?.split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const unknown = only?.filter((n) => !scenarios.some((s) => s.name === n)) ?? [];
if (unknown.length > 0) {
  process.stderr.write(
    `unknown scenario ${unknown.join(', ')}; known: ${scenarios.map((s) => s.name).join(', ')}\n`,
  );
  process.exit(2);
}
if (!existsSync(mainJs)) {
  process.stderr.write(`${mainJs} is missing: run \`npm run build\` in ${relayDir} first\n`);
  process.exit(2);
}

let cgroup = null;
if (values['pod-shape']) {
  // The tests' cgroup helper, loaded as TypeScript by Node's type stripping; its one warning (the
  // package has no "type" field) is not news.
  process.removeAllListeners('warning');
  process.on('warning', (w) => {
    if (w.code !== 'MODULE_TYPELESS_PACKAGE_JSON') {
      process.stderr.write(`${w.name}: ${w.message}\n`);
    }
  });
  const { createMemoryCgroup } = await import('../test/helpers/memory-cgroup.ts');
  cgroup = createMemoryCgroup(POD.limitBytes, 'hostile-bench');
  if (cgroup === null) {
    process.stderr.write(
      '--pod-shape needs a memory cgroup (root, writable cgroupfs); none could be made\n',
    );
    process.exit(2);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const rssOf = (pid, field = 'VmRSS') => {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
};

/** Relays started by the current scenario, stopped when it ends whatever happened. */
const running = new Set();

async function startRelay(env = {}, nodeArgs = []) {
  const port = await freePort();
  const childEnv = {
    ...process.env,
    TOKENPLACE_LOG_LEVEL: 'warn',
    RELAY_HOST: '127.0.0.1',
    RELAY_PORT: String(port),
    ...(cgroup
      ? {
          NODE_OPTIONS: POD.nodeOptions,
          TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES: String(POD.limitBytes),
        }
      : {}),
    ...env,
  };
  const args = [...nodeArgs, mainJs];
  const [command, argv] = cgroup ? cgroup.wrap(process.execPath, args) : [process.execPath, args];
  const child = spawn(command, argv, { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i += 1) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `relay exited at start (${child.exitCode ?? child.signalCode}): ${stderr.slice(-500)}`,
      );
    }
    try {
      if ((await fetch(`${base}/livez`)).ok) {
        break;
      }
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const relay = {
    base,
    pid: child.pid,
    child,
    stop: async () => {
      running.delete(relay);
      if (child.exitCode === null && child.signalCode === null) {
        await stopProcess(child, 'SIGKILL');
      }
    },
    rssKiB: () => rssOf(child.pid),
    peakRssKiB: () => rssOf(child.pid, 'VmHWM'),
    alive: () => child.exitCode === null && child.signalCode === null,
    exit: () =>
      child.exitCode !== null
        ? `exit ${child.exitCode}`
        : child.signalCode
          ? `signal ${child.signalCode}`
          : null,
    stderr: () => stderr,
  };
  running.add(relay);
  return relay;
}

const ctx = {
  relayDir,
  startRelay,
  cgroup: cgroup ? { limitBytes: POD.limitBytes, nodeOptions: POD.nodeOptions } : null,
  log: (line) => process.stdout.write(`  ${line}\n`),
};

process.stdout.write(
  `relay: ${mainJs}${cgroup ? ` (pod shape: ${POD.limitBytes / MiB} MiB cgroup v${cgroup.version}, ${POD.nodeOptions})` : ''}\n`,
);
let failed = 0;
for (const scenario of scenarios.filter((s) => !only || only.includes(s.name))) {
  process.stdout.write(`\n== ${scenario.name}: ${scenario.about}\n`);
  const started = Date.now();
  let timer;
  try {
    const rows = await Promise.race([
      scenario.run(ctx),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`scenario over its ${SCENARIO_CAP_MS / 60_000} min cap`)),
          SCENARIO_CAP_MS,
        );
      }),
    ]);
    process.stdout.write(
      `${table(
        rows.map((r) => ({ ...r, value: r.value ?? '' })),
        ['figure', 'value', 'unit'],
      )}\n`,
    );
  } catch (error) {
    failed += 1;
    process.stdout.write(`  scenario failed: ${error.stack ?? error}\n`);
  } finally {
    clearTimeout(timer);
    for (const relay of [...running]) {
      await relay.stop();
    }
    process.stdout.write(`  (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
  }
}
if (cgroup) {
  try {
    cgroup.remove();
  } catch {
    // a process may still be leaving it
  }
}
process.exit(failed > 0 ? 1 : 0);
