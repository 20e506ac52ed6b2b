// Issue 18 item 3: 1,024 maximum-size junk nodes (from 128 addresses, 8 each), then 8 readers of
// /relay/diagnostics (from 8 addresses, back to back) for 15 s while /healthz is probed every 50 ms
// as a readiness probe would: its latency and size, and what the readers got.
import { call, closeAgents, flood, largestKey, loopback, percentile, round } from '../hostile-nodes.mjs';

const DURATION_MS = 15_000;

export default {
  name: 'public-reads',
  about: '1,024 max-size junk nodes and 8 /relay/diagnostics readers for 15 s: /healthz p50/p99 and size, diagnostics size and answers',
  async run(ctx) {
    const relay = await ctx.startRelay();
    try {
      const base = relay.base;
      const junk = await flood(base, { count: 1024, perAddress: 8, keys: await largestKey(base, loopback(1000)) });
      ctx.log(`registrations: ${junk.statuses}`);
      const quiet = await call(base, 'GET', '/healthz');
      const until = Date.now() + DURATION_MS;
      const diag = { statuses: new Map(), bytes: 0, ms: [] };
      const readers = Array.from({ length: 8 }, async (_, i) => {
        while (Date.now() < until) {
          const res = await call(base, 'GET', '/relay/diagnostics', undefined, { from: loopback(600 + i), timeoutMs: 20_000, parse: false });
          diag.statuses.set(res.status, (diag.statuses.get(res.status) ?? 0) + 1);
          if (res.status === 200) {
            diag.bytes = Math.max(diag.bytes, res.bytes);
            diag.ms.push(res.ms);
          }
        }
      });
      const health = { ms: [], bytes: 0, failures: 0 };
      const probe = (async () => {
        while (Date.now() < until) {
          const res = await call(base, 'GET', '/healthz', undefined, { from: loopback(700), timeoutMs: 5000 });
          health.ms.push(res.ms);
          health.bytes = Math.max(health.bytes, res.bytes);
          health.failures += res.status === 200 ? 0 : 1;
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      await Promise.all([...readers, probe]);
      const summary = await call(base, 'GET', '/relay/diagnostics?summary=1');
      return [
        { figure: 'junk nodes registered', value: junk.accepted.length, unit: '' },
        { figure: '/healthz size', value: round(health.bytes / 1024, 1), unit: 'KiB' },
        { figure: '/healthz alone (no readers)', value: round(quiet.ms, 1), unit: 'ms' },
        { figure: '/healthz p50 with 8 readers', value: round(percentile(health.ms, 50), 1), unit: 'ms' },
        { figure: '/healthz p99 with 8 readers', value: round(percentile(health.ms, 99), 1), unit: 'ms' },
        { figure: '/healthz probes failed (not 200)', value: `${health.failures} of ${health.ms.length}`, unit: '' },
        { figure: '/relay/diagnostics size', value: round(diag.bytes / 1024, 1), unit: 'KiB' },
        { figure: '/relay/diagnostics p50 (answered 200)', value: round(percentile(diag.ms, 50), 1), unit: 'ms' },
        { figure: '/relay/diagnostics answers to the 8 readers', value: [...diag.statuses].map(([s, n]) => `${s}×${n}`).join(' '), unit: '' },
        { figure: '/relay/diagnostics?summary=1 size', value: summary.status === 200 ? summary.bytes : `${summary.status}`, unit: summary.status === 200 ? 'B' : '' },
      ];
    } finally {
      closeAgents();
      await relay.stop();
    }
  },
};
