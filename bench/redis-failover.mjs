#!/usr/bin/env node
// The failover table of docs/redis.md: runs the real-process Sentinel failover test
// (test/process/redis-sentinel.spec.ts: a primary, two replicas, three Sentinels, two relays under
// API v1 and gateway load, kill -9 or SIGSTOP of the primary, WAIT_REPLICAS 1 and 0) and prints
// what each run measured. Needs `npm run build` (the test starts dist/main.js) and redis-server.
//
// usage: node bench/redis-failover.mjs [--runs 1]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, cli, table } from './lib.mjs';

const values = cli('usage: node bench/redis-failover.mjs [--runs N]', { runs: { type: 'string', default: '1' } });
const dir = mkdtempSync(join(tmpdir(), 'tp-failover-'));
const report = join(dir, 'report.jsonl');
let status = 0;
for (let i = 0; i < Number(values.runs); i += 1) {
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'jest', 'bin', 'jest.js'), 'test/process/redis-sentinel.spec.ts'], {
    cwd: ROOT,
    env: { ...process.env, TOKENPLACE_FAILOVER_REPORT: report },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  status ||= r.status ?? 1;
}
const rows = readFileSync(report, 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l))
  .map((f) => ({
    fault: f.fault,
    waitReplicas: f.waitReplicas,
    promotionS: (f.promotionMs / 1000).toFixed(1),
    relaysReadyS: (f.relaysReadyMs / 1000).toFixed(1),
    longestStallS: (f.longestStallMs / 1000).toFixed(1),
    accepted: f.accepted,
    lost: f.lost,
    responses503: f.responses503,
    responses500: f.responses5xxOther.length,
    gatewayAnswered: f.gatewayAnswered,
    oldPrimaryWrites: f.oldPrimaryScriptCallsAsReplica,
  }));
process.stdout.write(`\n${table(rows, Object.keys(rows[0] ?? { fault: '' }))}\n`);
rmSync(dir, { recursive: true, force: true });
process.exit(status);
