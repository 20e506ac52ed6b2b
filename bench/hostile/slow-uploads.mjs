// Issue 18 item 1: stalled uploads. Connections from one address (127.0.0.2), or from a few
// forwarded addresses behind a trusted proxy, each declare a 1 MiB JSON body, send all of it but
// one byte, and stall. Meanwhile /healthz is probed every 50 ms and an honest gateway chat is made
// from 127.0.0.1. Run with --pod-shape for the chart's memory shape (512 MiB, heap 384 MiB).
import { MiB, firstChat, gatewayChat, percentile, probe, round, sampleMax, sleep, stalledUploads } from '../hostile-lib.mjs';

/** How long the uploads stay stalled while the relay is probed. */
const HOLD_MS = 10_000;

async function attack(ctx, { count, forwarded = 0 }) {
  const env = { USE_MOCK_LLM: '1', ...(forwarded > 0 ? { TOKENPLACE_RELAY_TRUST_PROXY: 'loopback' } : {}) };
  const relay = await ctx.startRelay(env);
  const label = forwarded > 0 ? `${count} via ${forwarded} forwarded addresses` : `${count} from one address`;
  try {
    const warm = await firstChat(relay.base);
    await sleep(500);
    const rssBefore = relay.rssKiB();
    const peak = sampleMax(() => relay.rssKiB());
    const uploads = await stalledUploads({
      base: relay.base,
      count,
      headers: forwarded > 0 ? (i) => ({ 'X-Forwarded-For': `198.51.100.${(i % forwarded) + 1}` }) : () => ({}),
    });
    const probing = probe(relay.base, '/healthz', { everyMs: 50, durationMs: HOLD_MS });
    await sleep(2000);
    const chat = await gatewayChat(relay.base, { timeoutMs: 8000 });
    const health = await probing;
    const rssPeak = peak.stop();
    const counts = uploads.counts();
    uploads.close();
    ctx.log(`${label}: answers to the uploads ${JSON.stringify(counts)}`);
    return [
      { figure: `${label}: relay alive after ${HOLD_MS / 1000} s`, value: relay.alive() ? 'yes' : `no (${relay.exit()})`, unit: '' },
      { figure: `${label}: RSS growth (peak - before)`, value: round((rssPeak - rssBefore) / 1024), unit: 'MiB' },
      { figure: `${label}: uploads refused at once (503/413)`, value: (counts['503'] ?? 0) + (counts['413'] ?? 0), unit: `of ${count}` },
      { figure: `${label}: uploads still being read`, value: counts.none ?? 0, unit: `of ${count}` },
      { figure: `${label}: /healthz non-200 or no answer`, value: health.failures, unit: `of ${health.count}` },
      { figure: `${label}: /healthz p99`, value: round(percentile(health.latencies, 99)), unit: 'ms' },
      { figure: `${label}: honest chat`, value: `${chat.status}`, unit: `${Math.round(chat.ms)} ms` },
      ...(warm?.status === 200 ? [] : [{ figure: `${label}: warm-up chat failed`, value: warm?.status, unit: '' }]),
    ];
  } finally {
    await relay.stop();
  }
}

export default {
  name: 'slow-uploads',
  about: '300 and 1,000 stalled 1 MiB uploads (one address; then 4 forwarded ones): RSS, /healthz, an honest chat',
  async run(ctx) {
    const rows = [];
    rows.push(...(await attack(ctx, { count: 300 })));
    rows.push(...(await attack(ctx, { count: 1000 })));
    rows.push(...(await attack(ctx, { count: 1000, forwarded: 4 })));
    return rows;
  },
};
