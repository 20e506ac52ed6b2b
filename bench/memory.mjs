#!/usr/bin/env node
// Memory figures behind the OOM-safe caps (docs/operations.md "Memory", docs/decisions.md): runs the
// built relay with the chart's environment for a memory limit (helm template of helm/tokenplace-relay,
// so NODE_OPTIONS and TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES are the chart's), inside a memory cgroup
// with that limit when this machine allows one (root, cgroup v1 or delegated v2), then fills the
// queue (API v1 /requests) or the answer store (legacy /source) with maximum-size envelopes until
// the relay refuses, and prints what it held, what it used and whether the kernel had to step in.
// usage: node bench/memory.mjs [--limit 512Mi] [--fill queue|answers] [--concurrency 4]
//        [--raw]   (no chart env: the relay's own defaults and V8's default heap; with
//                   BENCH_RELAY_ROOT=<checkout of an older build> it shows the old failure mode)
// Run it with the Node you want measured: /path/to/node bench/memory.mjs ...  (needs npm run build)
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chartEnv, cli, peerLibrary, ROOT } from './lib.mjs';

const values = cli('usage: node bench/memory.mjs [--limit 512Mi] [--fill queue|answers] [--concurrency 4] [--raw]', {
  limit: { type: 'string', default: '512Mi' },
  fill: { type: 'string', default: 'queue' },
  concurrency: { type: 'string', default: '4' },
  raw: { type: 'boolean', default: false },
});
const { PROTOCOL_ID } = peerLibrary();
const MiB = 1024 * 1024;
const units = { Ki: 1024, Mi: MiB, Gi: 1024 * MiB, '': 1 };
const [, num, unit] = /^(\d+)(Ki|Mi|Gi|)$/.exec(values.limit);
const limitBytes = Number(num) * units[unit];
const mib = (b) => (b / MiB).toFixed(1);

function cgroup() {
  try {
    const own = readFileSync('/proc/self/cgroup', 'utf8').split('\n').map((l) => l.split(':'));
    const v1 = own.find(([, c]) => c?.split(',').includes('memory'))?.[2];
    if (v1 !== undefined && existsSync(`/sys/fs/cgroup/memory${v1}`)) {
      const dir = `/sys/fs/cgroup/memory${v1}/tokenplace-bench-memory-${process.pid}`;
      mkdirSync(dir);
      writeFileSync(`${dir}/memory.limit_in_bytes`, String(limitBytes));
      const n = (f) => Number(readFileSync(`${dir}/${f}`, 'utf8').trim().split('\n').find((l) => !l.includes(' ')) ?? 0);
      return { dir, version: 'v1', peak: () => n('memory.max_usage_in_bytes'), hits: () => n('memory.failcnt'), kills: () => Number(/oom_kill (\d+)/.exec(readFileSync(`${dir}/memory.oom_control`, 'utf8'))?.[1] ?? 0) };
    }
    const v2 = own.find(([h, c]) => h === '0' && c === '')?.[2];
    const base = `/sys/fs/cgroup${v2}`;
    writeFileSync(`${base}/cgroup.subtree_control`, '+memory');
    const dir = `${base}/tokenplace-bench-memory-${process.pid}`;
    mkdirSync(dir);
    writeFileSync(`${dir}/memory.max`, String(limitBytes));
    const ev = (k) => Number(new RegExp(`^${k} (\\d+)$`, 'm').exec(readFileSync(`${dir}/memory.events`, 'utf8'))?.[1] ?? 0);
    return { dir, version: 'v2', peak: () => Number(readFileSync(`${dir}/memory.peak`, 'utf8')), hits: () => ev('max'), kills: () => ev('oom_kill') };
  } catch {
    return null;
  }
}

const port = 5200 + Math.floor(Math.random() * 700);
const env = {
  PATH: process.env.PATH,
  ...(values.raw ? { TOKENPLACE_LOG_LEVEL: 'info', ...(process.env.NODE_OPTIONS ? { NODE_OPTIONS: process.env.NODE_OPTIONS } : {}) } : await chartEnv(values.limit)),
  RELAY_HOST: '127.0.0.1',
  RELAY_PORT: String(port),
  API_RATE_LIMIT: 'off',
  API_DAILY_QUOTA: 'off',
  API_RELAY_CONTROL_PLANE_RATE_LIMIT: 'off',
  API_RELAY_CONTROL_PLANE_IP_RATE_LIMIT: 'off',
  TOKENPLACE_METRICS_DISABLED: '0',
  TOKENPLACE_METRICS_TOKEN: 'scrape',
};
const cg = cgroup();
const main = join(process.env.BENCH_RELAY_ROOT ?? ROOT, 'dist/main.js');
const child = cg
  ? spawn('sh', ['-c', `echo $$ > "${cg.dir}/cgroup.procs" && exec "$0" "$@"`, process.execPath, main], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  : spawn(process.execPath, [main], { env, stdio: ['ignore', 'pipe', 'pipe'] });
let exit = null;
let stderr = '';
let caps = null;
child.on('exit', (code, signal) => { exit = code ?? signal; });
child.stderr.on('data', (c) => { stderr += c; });
let buf = '';
child.stdout.on('data', (c) => {
  buf += c;
  for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    try {
      const entry = JSON.parse(line);
      if (entry.msg === 'memory caps') caps = entry;
    } catch {}
  }
});
const base = `http://127.0.0.1:${port}`;
for (let i = 0; i < 300 && exit === null; i += 1) {
  try { if ((await fetch(`${base}/livez`)).ok) break; } catch {}
  await new Promise((r) => setTimeout(r, 50));
}
const post = (path, body) => fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const scrape = async () => {
  const t = await (await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer scrape' } })).text();
  const g = (n) => Number(new RegExp(`^${n}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(t)?.[1]);
  return { rss: g('process_resident_memory_bytes'), heap: g('nodejs_heap_size_used_bytes'), queued: g('tokenplace_relay_queued_bytes'), stored: g('tokenplace_relay_stored_responses') };
};
const out = { node: process.version, limit: values.limit, chartEnv: !values.raw, nodeOptions: env.NODE_OPTIONS ?? '', cgroup: cg?.version ?? 'none', fill: values.fill };
try {
  const idle = await scrape();
  out.idleRssMiB = mib(idle.rss);
  out.idleHeapMiB = mib(idle.heap);
  await post('/api/v1/relay/servers/register', { server_public_key: 'NODE', capabilities: { supported_model_ids: ['m'] } });
  await post('/sink', { server_public_key: 'LEGACY' });
  const size = Number(env.TOKENPLACE_RELAY_MAX_BODY_BYTES ?? MiB) - 1024;
  const payload = (n) => `${String(n).padStart(12, '0')}${'x'.repeat(size - 12)}`;
  const one = (n) =>
    values.fill === 'answers'
      ? post('/source', { client_public_key: `CLIENT-${n}`, chat_history: payload(n), cipherkey: 'K', iv: 'I' })
      : post('/api/v1/relay/requests', { server_public_key: 'NODE', client_public_key: `CLIENT-${n}`, request_id: `r${n}`, protocol: PROTOCOL_ID, version: 1, ciphertext: payload(n), cipherkey: 'K', iv: 'I' });
  const conc = Number(values.concurrency);
  let accepted = 0;
  let refusal = null;
  let peakRss = idle.rss;
  let peakHeap = idle.heap;
  for (let n = 0; refusal === null && exit === null && n < 4000; n += conc) {
    const answers = await Promise.all(Array.from({ length: conc }, (_, i) => one(n + i).catch((e) => ({ status: `error ${e.cause?.code ?? e.message}` }))));
    for (const a of answers) {
      if (a.status === 200) accepted += 1;
      else if (refusal === null) refusal = { status: a.status, retryAfter: a.headers?.get('retry-after') ?? null, body: a.text ? (await a.text()).slice(0, 160) : '' };
      if (a.arrayBuffer && a.bodyUsed === false) await a.arrayBuffer();
    }
    if (exit === null) {
      const s = await scrape().catch(() => null);
      if (s) { peakRss = Math.max(peakRss, s.rss); peakHeap = Math.max(peakHeap, s.heap); }
    }
  }
  out.accepted = accepted;
  out.envelopeBytes = size;
  out.refusal = refusal;
  if (exit === null) {
    const s = await scrape();
    out.queuedMiB = mib(s.queued);
    out.storedAnswers = s.stored;
    out.rssMiB = mib(s.rss);
    out.heapMiB = mib(s.heap);
    const later = await Promise.all(Array.from({ length: 12 }, (_, i) => one(900_000 + i).then((r) => r.status, (e) => e.message)));
    out.laterStatuses = [...new Set(later)].join(',');
    out.livez = (await fetch(`${base}/livez`)).status;
  }
  out.peakRssMiB = mib(peakRss);
  out.peakHeapMiB = mib(peakHeap);
} catch (e) {
  out.error = String(e.message);
}
await new Promise((r) => setTimeout(r, 300));
out.exit = exit ?? 'running';
if (caps) out.caps = { heapLimitMiB: mib(caps.heapLimitBytes), dataMiB: mib(caps.dataBytes), maxQueuedMiB: mib(caps.maxQueuedBytes), maxAnswerMiB: mib(caps.maxAnswerBytes), maxStoredResponses: caps.maxStoredResponses, derived: caps.derived.join(',') };
if (cg) { out.cgroupPeakMiB = mib(cg.peak()); out.cgroupLimitHits = cg.hits(); out.oomKills = cg.kills(); }
if (exit !== null) out.stderrTail = stderr.split('\n').filter((l) => /FATAL|fatal|heap/.test(l)).slice(0, 2).join(' | ');
child.kill('SIGKILL');
await new Promise((r) => (exit === null ? child.once('exit', r) : r()));
if (cg) { try { rmdirSync(cg.dir); } catch {} }
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
