// Shared helpers for the bench scripts: start relay processes, run the cycle benchmark.
import { spawn, execFile } from 'node:child_process';
import http from 'node:http';
import { existsSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { parseArgs, promisify } from 'node:util';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = promisify(execFile);

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
};

/**
 * Command-line options of a bench script: `--help` prints the usage line and the options with their
 * defaults; an unknown or malformed option prints the problem and the usage line (exit 2).
 */
export function cli(usage, options) {
  const help = () =>
    `${usage}\n${Object.entries(options)
      .map(([name, o]) => `  --${name}${o.default !== undefined ? ` (default ${o.default})` : ''}`)
      .join('\n')}\n`;
  let values;
  try {
    ({ values } = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h' } } }));
  } catch (error) {
    process.stderr.write(`${error.message}\n${help()}`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(help());
    process.exit(0);
  }
  return values;
}

/** Starts `node dist/main.js` on a port and waits until /livez answers. */
export async function startRelay(port, env = {}, nodeArgs = [], script = 'dist/main.js') {
  // BENCH_RELAY_ROOT=<checkout> runs another build of the relay (before/after comparisons).
  const main = join(process.env.BENCH_RELAY_ROOT ?? ROOT, script);
  if (!existsSync(main)) {
    throw new Error(`${main} is missing: run \`npm run build\` first`);
  }
  const child = spawn(process.execPath, [...nodeArgs, main], {
    env: { ...process.env, ...BENCH_ENV, RELAY_HOST: '127.0.0.1', RELAY_PORT: String(port), ...env },
    // BENCH_RELAY_LOGS=<dir> keeps each relay's JSON log in <dir>/relay-<port>.log.
    stdio: ['ignore', process.env.BENCH_RELAY_LOGS ? openSync(join(process.env.BENCH_RELAY_LOGS, `relay-${port}.log`), 'a') : 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i += 1) {
    if (child.exitCode !== null) {
      throw new Error(`relay on ${port} exited with ${child.exitCode}`);
    }
    try {
      const res = await fetch(`${base}/livez`);
      if (res.ok) {
        return { child, base, stop: () => stopProcess(child) };
      }
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`relay on ${port} did not start`);
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
