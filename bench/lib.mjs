// Shared helpers for the bench scripts: start relay processes, run the cycle benchmark.
import { spawn, spawnSync, execFile } from 'node:child_process';
import { generateKeyPair, generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, isAbsolute, join } from 'node:path';
import { parseArgs, promisify } from 'node:util';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = promisify(execFile);

let peer = null;
/**
 * The protocol peer library (src/peer/, compiled to dist/peer/ by `npm run build`): the protocol id
 * and routes, typed calls of both protocols (legacy and API v1, node and client side) and the
 * hybrid crypto, as the smoke CLI, the demo node and the test simulators use them. Loaded on first
 * use, so a script's `--help` needs no build.
 */
export function peerLibrary() {
  if (peer === null) {
    const dir = join(ROOT, 'dist', 'peer');
    if (!existsSync(join(dir, 'relay.client.js'))) {
      process.stderr.write('bench: dist/peer/ is missing: run `npm run build` first\n');
      process.exit(2);
    }
    const load = createRequire(import.meta.url);
    peer = Object.freeze({
      ...load(join(dir, 'relay.protocol.js')),
      ...load(join(dir, 'peer.crypto.js')),
      ...load(join(dir, 'relay.client.js')),
      ...load(join(dir, 'legacy.peer.js')),
      ...load(join(dir, 'v1.peer.js')),
    });
  }
  return peer;
}

/** A peer library `Send` over {@link request}: the node token on node calls when one is given. */
export function relaySend(base, { token = null, timeoutMs = 60_000 } = {}) {
  const { NODE_TOKEN_HEADER } = peerLibrary();
  return (r) =>
    request(base, r.method, r.path, r.body, { ...(r.asNode && token ? { [NODE_TOKEN_HEADER]: token } : {}), ...r.headers }, timeoutMs);
}

/** Env for benchmarking: no rate limits, big caps, quiet logs. */
export const BENCH_ENV = {
  TOKENPLACE_LOG_LEVEL: 'warn',
  API_RATE_LIMIT: 'off',
  API_DAILY_QUOTA: 'off',
  API_RELAY_CONTROL_PLANE_RATE_LIMIT: 'off',
  API_RELAY_CONTROL_PLANE_IP_RATE_LIMIT: 'off',
  TOKENPLACE_RELAY_MAX_PENDING_PER_CLIENT: '100000',
  TOKENPLACE_RELAY_MAX_QUEUED_REQUESTS: '1000000',
  TOKENPLACE_RELAY_MAX_NODES: '100000',
  TOKEN_PLACE_API_V1_MAX_QUEUE_DEPTH_PER_NODE: '100000',
  // Every bench node registers from loopback without a token (open registration).
  TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS: '100000',
};

/**
 * Command-line options of a bench script: `--help` prints the usage line and the options with their
 * defaults; an unknown or malformed option prints the problem and the usage line (exit 2). With
 * `{ positionals: true }` the other arguments come back as `values.positionals`.
 */
export function cli(usage, options, { positionals: allowPositionals = false } = {}) {
  const help = () =>
    `${usage}\n${Object.entries(options)
      .map(([name, o]) => `  --${name}${o.default !== undefined ? ` (default ${o.default})` : ''}`)
      .join('\n')}\n`;
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals }));
  } catch (error) {
    process.stderr.write(`${error.message}\n${help()}`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(help());
    process.exit(0);
  }
  return allowPositionals ? { ...values, positionals } : values;
}

/** Relays this process started and has not stopped: killed when it exits, however it exits. */
const started = new Set();
process.once('exit', () => {
  for (const child of started) child.kill('SIGKILL');
});

/**
 * Serves one controller as a bare NestJS express app on 127.0.0.1:`port` (the framework floors:
 * bare-app.mjs, gateway-floor-app.mjs): no logger, closed on SIGINT and SIGTERM.
 */
export async function serveBareNest(controller, port) {
  const { Module } = await import('@nestjs/common');
  const { NestFactory } = await import('@nestjs/core');
  class BareModule {}
  Module({ controllers: [controller] })(BareModule);
  const app = await NestFactory.create(BareModule, { logger: false });
  await app.listen(port, '127.0.0.1');
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => void app.close().then(() => process.exit(0)));
  }
  return app;
}

/**
 * Pins this process, every thread of it, to `cpus` (`taskset -a -p`). taskset fails when one of
 * the threads it lists ends before it is set (V8 and libuv start and stop helper threads), so it
 * is tried a few times.
 */
export function pinSelf(cpus) {
  for (let attempt = 1; ; attempt += 1) {
    const result = spawnSync('taskset', ['-a', '-p', '-c', String(cpus), String(process.pid)], { stdio: 'ignore' });
    if (result.status === 0) {
      return;
    }
    if (attempt === 5) {
      throw new Error(`taskset -a -p -c ${cpus} ${process.pid} failed ${attempt} times`);
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

/**
 * Starts `node dist/main.js` on a port and waits until /livez answers.
 * `options.probe`: preload bench/relay-probe.cjs with an IPC channel (`relay.probe('gc')`, 'memory',
 * 'snapshot', 'eld', 'trace'; see that file). `options.cpus`: pin the relay (`taskset -c <cpus>`).
 * `options.node`: the Node binary to run it with (default: the one running the bench).
 */
export async function startRelay(port, env = {}, nodeArgs = [], script = 'dist/main.js', options = {}) {
  // BENCH_RELAY_ROOT=<checkout> runs another build of the relay (before/after comparisons).
  const main = isAbsolute(script) ? script : join(process.env.BENCH_RELAY_ROOT ?? ROOT, script);
  if (!existsSync(main)) {
    throw new Error(`${main} is missing: run \`npm run build\` first`);
  }
  const args = [...(options.probe ? ['--expose-gc', '-r', join(ROOT, 'bench/relay-probe.cjs')] : []), ...nodeArgs, main];
  const node = options.node ?? process.execPath;
  const [command, argv] = options.cpus ? ['taskset', ['-c', String(options.cpus), node, ...args]] : [node, args];
  const child = spawn(command, argv, {
    env: { ...process.env, ...BENCH_ENV, RELAY_HOST: '127.0.0.1', RELAY_PORT: String(port), ...env },
    // BENCH_RELAY_LOGS=<dir> keeps each relay's JSON log in <dir>/relay-<port>.log.
    stdio: [
      'ignore',
      process.env.BENCH_RELAY_LOGS ? openSync(join(process.env.BENCH_RELAY_LOGS, `relay-${port}.log`), 'a') : 'ignore',
      'inherit',
      ...(options.probe ? ['ipc'] : []),
    ],
  });
  started.add(child);
  child.once('exit', () => started.delete(child));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i += 1) {
    if (child.exitCode !== null) {
      throw new Error(`relay on ${port} exited with ${child.exitCode}`);
    }
    try {
      const res = await fetch(`${base}/livez`);
      if (res.ok) {
        return { child, base, pid: child.pid, probe: options.probe ? probeOf(child) : null, stop: () => stopProcess(child) };
      }
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`relay on ${port} did not start`);
}

/** `relay.probe(cmd, args)`: one question to bench/relay-probe.cjs inside the relay, its answer. */
function probeOf(child) {
  let next = 0;
  const waiting = new Map();
  child.on('message', (msg) => {
    waiting.get(msg?.id)?.(msg.body);
    waiting.delete(msg?.id);
  });
  child.once('exit', () => {
    for (const resolve of waiting.values()) resolve({ error: 'relay exited' });
    waiting.clear();
  });
  return (cmd, args = {}) =>
    new Promise((resolve) => {
      const id = ++next;
      waiting.set(id, resolve);
      child.send({ id, cmd, ...args });
    });
}

export function stopProcess(child, signal = 'SIGINT') {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve(child.exitCode ?? child.signalCode);
      return;
    }
    child.once('exit', (code, signal) => resolve(code ?? signal));
    child.kill(signal);
  });
}

/** Runs bench/cycle.mjs in its own process and returns its JSON line. */
export async function cycle(options) {
  const argv = [join(ROOT, 'bench/cycle.mjs')];
  for (const [k, v] of Object.entries(options)) {
    argv.push(`--${k}`, String(v));
  }
  const { stdout } = await run(process.execPath, argv, { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop());
}

export function table(rows, columns) {
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const line = (cells) => `| ${cells.map((c, i) => String(c ?? '').padEnd(widths[i])).join(' | ')} |`;
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(columns.map((c) => r[c])))].join('\n');
}

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: Infinity });

/** One JSON (or text) HTTP exchange over a shared keep-alive agent: `{ status, body }`. */
export function request(base, method, path, body, headers = {}, timeoutMs = 60_000) {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { hostname: url.hostname, port: url.port, agent: keepAlive, method, path, timeout: timeoutMs, headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers } : headers },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let parsed = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // text body (metrics)
          }
          resolve({ status: res.statusCode, body: parsed });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

/** Memory of a process from /proc/<pid>/status, KiB: resident (anon/file/shmem), peak, threads, fds. */
export function procStatus(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  let fds = NaN;
  try {
    fds = readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    // not ours to read
  }
  return { rssKiB: kib('VmRSS'), anonKiB: kib('RssAnon'), fileKiB: kib('RssFile'), hwmKiB: kib('VmHWM'), threads: kib('Threads'), fds };
}

/**
 * CPU time of a process, ms, from /proc/<pid>/task/<tid>/schedstat (nanoseconds on a CPU, unaffected
 * by other processes' load): `{ main, others, total }`. Node 24 names every thread `node`, so the
 * main (JavaScript) thread is told apart from the rest (libuv pool: keygen, V8 workers: GC) only.
 */
export function threadCpuMs(pid) {
  const out = { main: 0, others: 0, total: 0 };
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let ns;
    try {
      ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
    } catch {
      continue; // the thread ended meanwhile
    }
    out[tid === String(pid) ? 'main' : 'others'] += ns;
    out.total += ns;
  }
  return out;
}

/**
 * Raises this process's open-file limit to `n` when it is lower (`prlimit --pid`, needs
 * CAP_SYS_RESOURCE to pass the hard limit; Node already raises the soft limit to the hard one), so
 * it and the processes it starts can hold `n` sockets each. Returns the limit it has.
 */
export function ensureFdLimit(n) {
  const read = () => {
    const [, soft] = /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8')) ?? [];
    return soft === 'unlimited' ? Infinity : Number(soft);
  };
  if (read() >= n) {
    return read();
  }
  const r = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${n}:${n}`], { encoding: 'utf8' });
  const has = read();
  if (has < n) {
    process.stderr.write(`open-file limit ${has} < ${n} and not raised (${(r.stderr || r.error?.message || '').trim()})\n`);
  }
  return has;
}

/** q-quantile (0..1) of an ascending array, rounded to 0.01 ms; null when empty. */
export function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] * 100) / 100;
}

export function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** Every sample of a Prometheus text exposition as `name{labels}` → number (first series of a name also as `name`). */
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m) continue;
    out[`${m[1]}${m[2] ?? ''}`] = Number(m[3]);
    if (!(m[1] in out)) out[m[1]] = Number(m[3]);
  }
  return out;
}

/**
 * Self time of a .cpuprofile (Node --cpu-prof) by package and by function, as printable lines, and
 * the total sampled ms.
 */
export function summariseProfile(file, top = 25) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = profile.timeDeltas;
  for (let i = 0; i < profile.samples.length; i += 1) {
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (dt[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const fn = new Map();
  const pkg = new Map();
  for (const [id, us] of self) {
    const { callFrame } = byId.get(id);
    const where = callFrame.url.replace(/^file:\/\//, '').replace(/.*node_modules\//, 'nm:').replace(/.*\/dist\//, 'dist/');
    const name = `${callFrame.functionName || '(anonymous)'} ${where}:${callFrame.lineNumber + 1}`;
    fn.set(name, (fn.get(name) ?? 0) + us);
    const group = where.startsWith('nm:') ? where.split('/').slice(0, where.startsWith('nm:@') ? 2 : 1).join('/') : where.startsWith('dist/') ? 'dist (relay code)' : callFrame.url ? 'node:internal' : callFrame.functionName || '(native)';
    pkg.set(group, (pkg.get(group) ?? 0) + us);
  }
  const pct = (us) => `${((us / total) * 100).toFixed(1)}%`.padStart(6);
  const lines = ['self time by package:'];
  for (const [k, v] of [...pkg].sort((a, b) => b[1] - a[1]).slice(0, 15)) lines.push(`  ${pct(v)}  ${k}`);
  lines.push('', 'top functions (self time):');
  for (const [k, v] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(v)}  ${k}`);
  return { totalMs: total / 1000, lines, byPackage: Object.fromEntries([...pkg].map(([k, v]) => [k, v / 1000])), byFunction: fn };
}

/**
 * 32 RSA-2048 private keys in one PEM file, made once per machine: BENCH_PROBE_KEYS for
 * bench/relay-probe.cjs, which hands them out instead of generating keys (held chats, bursts).
 */
export function premadeKeys() {
  const file = join(tmpdir(), 'tokenplace-bench-rsa2048-x32.pem');
  if (!existsSync(file)) {
    const pems = Array.from({ length: 32 }, () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(`${file}.${process.pid}`, pems.join(''));
    renameSync(`${file}.${process.pid}`, file);
  }
  return file;
}

/**
 * `count` distinct node public keys as the relay admits them (RSA-2048 SPKI PEM, base64), generated
 * once on the libuv pool and kept in the temp directory, so benches need not pay keygen each run.
 */
const NODE_KEYS_FILE = join(tmpdir(), 'tokenplace-bench-rsa2048-public.json');

/** The cached node keys, synchronously (forked helpers; after `nodePublicKeys` made enough). */
export function cachedNodePublicKeys() {
  return existsSync(NODE_KEYS_FILE) ? JSON.parse(readFileSync(NODE_KEYS_FILE, 'utf8')) : [];
}

export async function nodePublicKeys(count) {
  const file = NODE_KEYS_FILE;
  let keys = cachedNodePublicKeys();
  if (keys.length < count) {
    const more = await Promise.all(
      Array.from({ length: count - keys.length }, () =>
        promisify(generateKeyPair)('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } }),
      ),
    );
    keys = [...keys, ...more.map((k) => Buffer.from(k.publicKey).toString('base64'))];
    writeFileSync(`${file}.${process.pid}`, JSON.stringify(keys));
    renameSync(`${file}.${process.pid}`, file);
  }
  return keys.slice(0, count);
}

/**
 * The relay's environment in the Helm chart for a memory limit (`512Mi`): `helm template` of
 * helm/tokenplace-relay (HELM_BIN, else .tools/bin/helm from scripts/install-tools.sh), so
 * NODE_OPTIONS, TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES and the caps are the chart's. `sets`: more
 * `--set` values (`state.store=redis`).
 */
export async function chartEnv(limit, sets = []) {
  const { parseAllDocuments } = await import('yaml');
  const [, num, unit] = /^(\d+)(Ki|Mi|Gi|)$/.exec(limit) ?? [];
  const limitBytes = Number(num) * { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, '': 1 }[unit];
  const helm = process.env.HELM_BIN ?? join(ROOT, '.tools/bin/helm');
  const r = spawnSync(helm, ['template', 'relay', join(ROOT, 'helm/tokenplace-relay'), '--set', `resources.limits.memory=${limit}`, ...sets.flatMap((v) => ['--set', v])], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`helm template failed (bash scripts/install-tools.sh, or HELM_BIN): ${r.stderr ?? r.error?.message}`);
  }
  const deployment = parseAllDocuments(r.stdout).map((d) => d.toJSON()).find((d) => d?.kind === 'Deployment');
  const env = {};
  for (const e of deployment.spec.template.spec.containers[0].env) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.resourceFieldRef?.resource === 'limits.memory') env[e.name] = String(limitBytes);
  }
  return env;
}

/** A TCP port free on loopback right now (for a bench's own redis-server or relay). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts a redis-server of its own (REDIS_SERVER_BIN or redis-server) on a free loopback port, without
 * snapshots; `appendonly`: 'no', or an appendfsync policy. `{ url, admin (ioredis), pid, stop }`.
 */
export async function startRedis(appendonly = 'no') {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tp-bench-redis-'));
  const aof = appendonly === 'no' ? ['--appendonly', 'no'] : ['--appendonly', 'yes', '--appendfsync', appendonly];
  const child = spawn(process.env.REDIS_SERVER_BIN || 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, ...aof], { stdio: 'ignore' });
  const { Redis } = await import('ioredis');
  const admin = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => 100, maxRetriesPerRequest: 0 });
  admin.on('error', () => {});
  for (let i = 0; i < 100; i += 1) {
    try {
      await admin.connect();
      await admin.ping();
      return {
        url: `redis://127.0.0.1:${port}`,
        admin,
        pid: child.pid,
        stop: async () => {
          admin.disconnect();
          child.kill('SIGKILL');
          rmSync(dir, { recursive: true, force: true });
        },
      };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  child.kill('SIGKILL');
  throw new Error('redis-server did not start');
}
