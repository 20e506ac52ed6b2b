import { existsSync, readFileSync } from 'node:fs';
import { createMemoryCgroup, type MemoryCgroup } from '../helpers/memory-cgroup';
import { MAIN_JS, startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { describeIf, requirement } from '../helpers/requirements';
import { chartRuntime, helmReady } from './chart.helper';
import { fakeKey, PROTOCOL } from '../e2e/api-v1-fixtures';

/** The one node of these runs: API v1 registration wants a key shaped like an RSA one. */
const NODE = fakeKey('node');

/**
 * Issue 12 item 4: a full queue must be refused with 503 + Retry-After, never end in an OOM kill.
 * The built relay runs with the chart's own environment and memory limit (the default render:
 * resources.limits.memory, NODE_OPTIONS, TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES), inside a memory
 * cgroup with that limit when this machine allows one (else its peak RSS is held to the limit), and
 * its queue is filled with maximum-size envelopes until the relay refuses.
 */
const MiB = 1024 * 1024;

/**
 * What the test changes, none of it about memory: a loopback ephemeral port, no per-address rate
 * limits (one test client would hit 60/hour first), and a scrape token to read the gauges.
 */
const TEST_OVERRIDES = {
  RELAY_HOST: '127.0.0.1',
  RELAY_PORT: '0',
  API_RATE_LIMIT: 'off',
  API_DAILY_QUOTA: 'off',
  TOKENPLACE_METRICS_DISABLED: '0',
  TOKENPLACE_METRICS_TOKEN: 'scrape',
};

function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

async function gauge(relay: RelayProcess, name: string): Promise<number> {
  const text = await fetch(`${relay.baseUrl}/metrics`, {
    headers: { authorization: 'Bearer scrape' },
  }).then((r) => r.text());
  return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1]);
}

const ready =
  helmReady() &&
  requirement(
    'built relay (dist/main.js)',
    existsSync(MAIN_JS),
    'TOKENPLACE_REQUIRE_CHART_TOOLS',
    'run npm run build first',
  );

describeIf(ready)("queue caps under the chart's memory limit (built relay, chart env)", () => {
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

  it('should answer a full queue with 503 + Retry-After and keep serving, well inside the limit', async () => {
    cgroup = createMemoryCgroup(runtime.limitBytes, 'tokenplace-memcap');
    if (!cgroup) {
      process.stderr.write(
        `\n*** memory-cap: no memory cgroup can be created here; holding peak RSS to ${runtime.limit} instead ***\n\n`,
      );
    }
    relay = await startRelayProcess({ ...runtime.env, ...TEST_OVERRIDES }, [], {
      wrap: cgroup?.wrap,
    });
    const caps = relay.logs.find((l) => l.msg === 'memory caps') as {
      limitBytes: number;
      limitSource: string;
      maxQueuedBytes: number;
      derived: string[];
    };
    const maxBody = Number(runtime.env.TOKENPLACE_RELAY_MAX_BODY_BYTES ?? MiB);
    const ciphertext = maxBody - 1024;
    const submit = (n: number): Promise<Response> =>
      fetch(`${relay?.baseUrl}/api/v1/relay/requests`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          server_public_key: NODE,
          client_public_key: `CLIENT-${n}`,
          request_id: `r${n}`,
          protocol: PROTOCOL,
          version: 1,
          ciphertext: `${String(n).padStart(12, '0')}${'x'.repeat(ciphertext - 12)}`,
          cipherkey: 'K',
          iv: 'I',
        }),
      });
    const registered = await fetch(`${relay.baseUrl}/api/v1/relay/servers/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        server_public_key: NODE,
        capabilities: { supported_model_ids: ['m'] },
      }),
    });
    expect(registered.status).toBe(200);

    let accepted = 0;
    let refusal: Response | undefined;
    for (let n = 0; refusal === undefined && n < caps.maxQueuedBytes / ciphertext + 8; n += 4) {
      const answers = await Promise.all([0, 1, 2, 3].map((i) => submit(n + i)));
      accepted += answers.filter((r) => r.status === 200).length;
      refusal = answers.find((r) => r.status !== 200);
      await Promise.all(answers.filter((r) => r !== refusal).map((r) => r.arrayBuffer()));
    }
    const queued = await gauge(relay, 'tokenplace_relay_queued_bytes');
    const later = await Promise.all(Array.from({ length: 12 }, (_, i) => submit(100_000 + i)));
    const livez = await fetch(`${relay.baseUrl}/livez`);
    const rss = await gauge(relay, 'process_resident_memory_bytes');
    const peak = cgroup ? cgroup.peakBytes() : peakRss(relay.child.pid as number);

    expect(caps).toMatchObject({
      limitBytes: runtime.limitBytes,
      limitSource: 'TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES',
    });
    expect(caps.derived).toContain('maxQueuedBytes');
    expect(refusal?.status).toBe(503);
    expect(refusal?.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await refusal?.json()).toMatchObject({ error: { code: 'relay_overloaded' } });
    expect(accepted).toBeGreaterThan(0);
    expect(queued).toBeLessThanOrEqual(caps.maxQueuedBytes);
    expect(caps.maxQueuedBytes - queued).toBeLessThan(ciphertext + 2);
    expect(later.map((r) => r.status)).toEqual(Array.from({ length: 12 }, () => 503));
    expect(livez.status).toBe(200);
    expect(relay.child.exitCode).toBeNull();
    expect(rss).toBeLessThan(0.85 * runtime.limitBytes);
    expect(peak).toBeLessThan(0.85 * runtime.limitBytes);
    if (cgroup) {
      expect(cgroup.oomKills()).toBe(0);
      expect(cgroup.limitHits()).toBe(0);
    }
    relay.child.kill('SIGTERM');
    expect(await relay.exited).toBe(0);
  }, 120_000);

  it('should refuse at boot a queue cap that cannot fit the limit, naming it', async () => {
    const start = startRelayProcess({
      ...runtime.env,
      ...TEST_OVERRIDES,
      TOKENPLACE_RELAY_MAX_QUEUED_BYTES: String(512 * MiB),
    });

    await expect(start).rejects.toThrow(
      /relay exited \(78\) before listening: .*TOKENPLACE_RELAY_MAX_QUEUED_BYTES=536870912 need about 563 MiB of heap when full/,
    );
  });
});
