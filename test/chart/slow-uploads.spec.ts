import { existsSync, readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createMemoryCgroup, type MemoryCgroup } from '../helpers/memory-cgroup';
import { MAIN_JS, startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { describeIf, requirement } from '../helpers/requirements';
import { chartRuntime, helmReady } from './chart.helper';

/**
 * Issue 18 item 1: stalled uploads in the chart's memory shape. The built relay runs with the
 * chart's environment (NODE_OPTIONS, memory limit) inside a memory cgroup of the chart's limit
 * when this machine allows one. One address (127.0.0.2) opens 300, then 1,000 connections that
 * each declare a 1 MiB body, send all of it but one byte, and stall. While they are stalled,
 * /healthz (probed every 20 ms) must stay 200 and well inside the readiness timeout, an honest chat from 127.0.0.1
 * must complete, and RSS may grow by at most 100 MiB; while the connections arrive, every probe
 * must answer 200 within the chart's 2 s readiness timeout. On the relay before issue 18 the
 * process died with "JavaScript heap out of memory".
 */
const MiB = 1024 * 1024;

function rssBytes(pid: number, field = 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(
    readFileSync(`/proc/${pid}/status`, 'utf8'),
  );
  return Number(m?.[1] ?? 0) * 1024;
}

/**
 * The attacker, in its own process (so the probes measure the relay, not this test's event loop):
 * opens `count` connections from `from`, each declaring 1 MiB and sending all of it but one byte.
 * Prints `stalled` once every upload is either answered or fully sent and waiting, holds them
 * `holdMs` longer, prints a JSON line with what the relay answered, closes them all and exits.
 */
const ATTACKER = `
const net = require('node:net');
const [port, count, from, holdMs] = process.argv.slice(1);
const MiB = 1024 * 1024;
const body = Buffer.alloc(MiB - 1, 0x61);
body.write('{"x":"');
const statuses = new Array(Number(count)).fill('none');
const sockets = [];
let settled = 0;
const settle = () => {
  settled += 1;
  if (settled === Number(count)) {
    process.stdout.write('stalled\\n');
    setTimeout(finish, Number(holdMs));
  }
};
for (let i = 0; i < Number(count); i += 1) {
  const socket = net.connect({ host: '127.0.0.1', port: Number(port), localAddress: from });
  sockets.push(socket);
  let done = false;
  const once = () => { if (!done) { done = true; settle(); } };
  socket.on('error', once);
  socket.on('close', once);
  socket.on('data', (chunk) => {
    const m = /^HTTP\\/1\\.1 (\\d{3})/.exec(chunk.toString('latin1'));
    if (m && statuses[i] === 'none') statuses[i] = m[1];
    once();
  });
  socket.once('connect', () => {
    socket.write('POST /api/v1/relay/requests HTTP/1.1\\r\\nHost: relay.test\\r\\nContent-Type: application/json\\r\\nContent-Length: ' + MiB + '\\r\\n\\r\\n');
    socket.write(body, once);
  });
}
function finish() {
  const counts = {};
  for (const s of statuses) counts[s] = (counts[s] || 0) + 1;
  process.stdout.write(JSON.stringify(counts) + '\\n');
  for (const s of sockets) s.destroy();
  process.exit(0);
}
`;

function stallUploads(
  baseUrl: string,
  count: number,
  from: string,
  holdMs: number,
): { stalled: Promise<void>; done: Promise<Record<string, number>> } {
  const port = new URL(baseUrl).port;
  const child = spawn(process.execPath, [
    '-e',
    ATTACKER,
    port,
    String(count),
    from,
    String(holdMs),
  ]);
  let out = '';
  let onStalled: () => void = () => undefined;
  const stalled = new Promise<void>((resolve) => (onStalled = resolve));
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    if (out.includes('stalled\n')) {
      onStalled();
    }
  });
  const done = new Promise<Record<string, number>>((resolve, reject) => {
    child.once('exit', () => {
      onStalled();
      try {
        resolve(JSON.parse(out.replace('stalled\n', '')) as Record<string, number>);
      } catch {
        reject(new Error(`attacker printed ${out}`));
      }
    });
  });
  return { stalled, done };
}

async function chat(baseUrl: string): Promise<number> {
  const res = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'qwen3-8b-instruct',
      messages: [{ role: 'user', content: 'hello' }],
    }),
    signal: AbortSignal.timeout(10_000),
  });
  await res.arrayBuffer();
  return res.status;
}

/** Probes /healthz every 20 ms for `ms`: statuses and the 99th percentile latency. */
async function probeHealth(baseUrl: string, ms: number) {
  const statuses: number[] = [];
  const latencies: number[] = [];
  const until = Date.now() + ms;
  // At least one probe, however short the window (a 1 ms window once measured nothing: NaN).
  do {
    const started = performance.now();
    const res = await fetch(`${baseUrl}/healthz`, { signal: AbortSignal.timeout(5000) }).catch(
      () => null,
    );
    await res?.arrayBuffer();
    latencies.push(performance.now() - started);
    statuses.push(res?.status ?? 0);
    await new Promise((r) => setTimeout(r, 20));
  } while (Date.now() < until);
  latencies.sort((a, b) => a - b);
  return { statuses, p99: latencies[Math.ceil(0.99 * latencies.length) - 1] as number };
}

const ready =
  helmReady() &&
  requirement(
    'built relay (dist/main.js)',
    existsSync(MAIN_JS),
    'TOKENPLACE_REQUIRE_CHART_TOOLS',
    'run npm run build first',
  );

describeIf(ready)("stalled uploads in the chart's memory shape (built relay, chart env)", () => {
  const runtime = ready ? chartRuntime() : { env: {}, limitBytes: 0, limit: '' };
  let cgroup: MemoryCgroup | null = null;
  let relay: RelayProcess | undefined;

  afterEach(async () => {
    if (relay && relay.child.exitCode === null && relay.child.signalCode === null) {
      relay.child.kill('SIGKILL');
      await relay.exited;
    }
    relay = undefined;
    cgroup?.remove();
    cgroup = null;
  });

  it('should keep 300 and then 1,000 stalled 1 MiB uploads from one address within 100 MiB of RSS, /healthz at 200 (p99 inside the readiness timeout) and an honest chat answered', async () => {
    cgroup = createMemoryCgroup(runtime.limitBytes, 'tokenplace-uploads');
    if (!cgroup) {
      process.stderr.write(
        `\n*** slow-uploads: no memory cgroup can be created here; holding RSS growth to 100 MiB without one ***\n\n`,
      );
    }
    relay = await startRelayProcess(
      {
        ...runtime.env,
        RELAY_HOST: '127.0.0.1',
        RELAY_PORT: '0',
        USE_MOCK_LLM: '1',
      },
      [],
      { wrap: cgroup?.wrap },
    );
    const pid = relay.child.pid as number;
    let warm = 0;
    for (let i = 0; i < 80 && warm !== 200; i += 1) {
      warm = await chat(relay.baseUrl).catch(() => 0);
      if (warm !== 200) {
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    await new Promise((r) => setTimeout(r, 500));
    const before = rssBytes(pid);
    const rounds: Array<{
      count: number;
      uploads: Record<string, number>;
      storm: { statuses: number[]; max: number };
      health: number[];
      p99: number;
      chat: number;
      rss: number;
    }> = [];
    for (const count of [300, 1000]) {
      let peak = rssBytes(pid);
      const sampler = setInterval(() => {
        peak = Math.max(peak, rssBytes(pid));
      }, 100);
      const attack = stallUploads(relay.baseUrl, count, '127.0.0.2', 7000);
      // While the connections arrive (a connection flood, not yet stalled uploads): every probe
      // must still answer 200 within the chart's 2 s readiness timeout.
      let arriving = true;
      const storm = (async () => {
        const out: { statuses: number[]; max: number } = { statuses: [], max: 0 };
        while (arriving) {
          const probe = await probeHealth(relay.baseUrl, 1);
          out.statuses.push(...probe.statuses);
          out.max = Math.max(out.max, probe.p99);
        }
        return out;
      })();
      await attack.stalled;
      arriving = false;
      const during = await storm;
      const probing = probeHealth(relay.baseUrl, 6000);
      await new Promise((r) => setTimeout(r, 1000));
      const honest = await chat(relay.baseUrl).catch(() => 0);
      const health = await probing;
      const uploads = await attack.done;
      clearInterval(sampler);
      rounds.push({
        count,
        uploads,
        storm: during,
        health: health.statuses,
        p99: health.p99,
        chat: honest,
        rss: peak,
      });
      await new Promise((r) => setTimeout(r, 500));
    }

    expect(warm).toBe(200);
    for (const round of rounds) {
      // Refused before their bytes are buffered: 503 at the door, or 408 at the body deadline when
      // a loaded machine let one start reading before its neighbours filled the budget. Left out:
      // the four the address's budget (4 × the 1 MiB body limit) admits, and on a loaded machine a
      // few whose refusal had not arrived when the round ended.
      const refused = (round.uploads['503'] ?? 0) + (round.uploads['408'] ?? 0);
      expect({
        count: round.count,
        uploads: round.uploads,
        refused: refused >= round.count - 8,
      }).toEqual({
        count: round.count,
        uploads: round.uploads,
        refused: true,
      });
      expect(round.storm.statuses.every((s) => s === 200)).toBe(true);
      expect(round.storm.max).toBeLessThan(2000);
      expect(round.health.every((s) => s === 200)).toBe(true);
      // The pod stays ready: well inside the chart's 2 s readiness timeout. The < 100 ms figure of
      // issue 18 is a benchmark's (`npm run bench -- --suite hostile`), not a timed test's.
      expect(round.p99).toBeLessThan(1000);
      expect(round.chat).toBe(200);
      expect(round.rss - before).toBeLessThan(100 * MiB);
    }
    expect(relay.child.exitCode).toBeNull();
    if (cgroup) {
      expect(cgroup.oomKills()).toBe(0);
    }
  }, 120_000);
});
