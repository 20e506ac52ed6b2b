#!/usr/bin/env node
// End-to-end chat latency of the legacy protocol with simulated peers that behave like the real
// ones (spec §7.1, §7.3): the compute node sleeps `next_ping_in_x_seconds` between /sink calls, the
// client polls /retrieve every 2 s; both use real RSA-OAEP + AES-256-CBC crypto. Runs the relay
// twice: with default settings, and with the low-latency settings (bounded holds on /sink and
// /retrieve, ping 0), and prints send-to-decrypted-answer latency for each.
//
// usage: node bench/legacy-latency.mjs [--chats 12] [--pairs 4]   (needs `npm run build`)
import { peerLibrary, relaySend, startRelay, table, cli } from './lib.mjs';

const values = cli(
  'usage: node bench/legacy-latency.mjs [--chats N] [--pairs N]',
  { chats: { type: 'string', default: '12' }, pairs: { type: 'string', default: '4' } },
);
const { LegacyClient, LegacyNode, newIdentity } = peerLibrary();
const CHATS = Number(values.chats);
const PAIRS = Number(values.pairs);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** server.py's loop: /sink, answer any work, sleep next_ping_in_x_seconds. */
async function nodeLoop(node, stop) {
  while (!stop.done) {
    let wait = 10;
    try {
      const { body } = await node.sink();
      wait = body.next_ping_in_x_seconds;
      const work = node.openWork(body);
      if (work !== null) {
        await node.source(work.clientKey, [...work.history, { role: 'assistant', content: 'ok' }]);
      }
    } catch {
      wait = 10;
    }
    await sleep(wait * 1000);
  }
}

/** client.py: /faucet, then /retrieve every 2 s until the answer decrypts. */
async function chat(client, nodeKey) {
  const started = performance.now();
  await client.faucet(nodeKey, [{ role: 'user', content: 'hello' }]);
  for (let i = 0; i < 60; i += 1) {
    const history = client.openAnswer((await client.retrieve()).body);
    if (history !== null) {
      if (history.at(-1)?.role !== 'assistant') throw new Error('bad answer');
      return performance.now() - started;
    }
    await sleep(2000);
  }
  throw new Error('no answer in 120 s');
}

async function scenario(name, port, env) {
  const relay = await startRelay(port, env);
  const stop = { done: false };
  const send = relaySend(relay.base, { timeoutMs: 10_000 });
  const pairs = Array.from({ length: PAIRS }, () => ({ node: new LegacyNode(send, newIdentity()), client: new LegacyClient(send, newIdentity()) }));
  const loops = pairs.map((p) => nodeLoop(p.node, stop));
  await sleep(300);
  const latencies = [];
  try {
    await Promise.all(
      pairs.map(async (p, i) => {
        for (let n = i; n < CHATS; n += PAIRS) {
          // Send at a random point of the node's ping cycle, as real users do.
          await sleep(Math.random() * 3000);
          latencies.push(await chat(p.client, p.node.key));
        }
      }),
    );
  } finally {
    stop.done = true;
    await relay.stop();
    await Promise.race([Promise.allSettled(loops), sleep(100)]);
  }
  latencies.sort((a, b) => a - b);
  const q = (p) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]);
  const mean = Math.round(latencies.reduce((a, b) => a + b, 0) / latencies.length);
  return { settings: name, chats: latencies.length, meanMs: mean, p50Ms: q(0.5), p90Ms: q(0.9), maxMs: Math.round(latencies.at(-1)) };
}

const rows = [];
rows.push(await scenario('default (ping 10 s, no holds)', 5093, {}));
rows.push(
  await scenario('low-latency (sink hold 8 s, ping 0, retrieve hold 8 s)', 5094, {
    TOKENPLACE_RELAY_SINK_HOLD_SECONDS: '8',
    TOKENPLACE_RELAY_SINK_PING_SECONDS: '0',
    TOKENPLACE_RELAY_RETRIEVE_HOLD_SECONDS: '8',
  }),
);
for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
process.stdout.write(`\n${table(rows, ['settings', 'chats', 'meanMs', 'p50Ms', 'p90Ms', 'maxMs'])}\n`);
process.exit(0);
