// Issue 18 item 5: one registration with the key `junk` (as the issue's outsider sent it), next to
// an honest node (this checkout's demo node code, run here as an ordinary node from 127.0.0.1),
// then next to the relay's own demo node (--use_mock_llm, the fallback tier): 20 gateway chats and
// 20 /servers/next picks each.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ROOT } from '../lib.mjs';
import { V1, call, capabilities, closeAgents, loopback } from '../hostile-nodes.mjs';

const require = createRequire(join(ROOT, 'package.json'));
const { DemoNode } = require(join(ROOT, 'dist', 'demo', 'demo.node.js'));
require('@nestjs/common').Logger.overrideLogger(false); // the honest node's own log lines

const chat = (base) =>
  call(base, 'POST', '/v1/chat/completions', { model: 'qwen3-8b-instruct', messages: [{ role: 'user', content: 'What is the capital of France?' }] }, { timeoutMs: 60_000 });

async function attack(ctx, base, label, rows) {
  const junk = await call(base, 'POST', `${V1}/servers/register`, { server_public_key: 'junk', capabilities: capabilities() }, { from: loopback(1) });
  const outcomes = new Map();
  for (let i = 0; i < 20; i += 1) {
    const res = await chat(base);
    const key = res.status === 200 ? '200' : `${res.status} ${res.body?.error?.code ?? ''}`.trim();
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  }
  let junkPicks = 0;
  for (let i = 0; i < 20; i += 1) {
    const next = await call(base, 'GET', `${V1}/servers/next?model=qwen3-8b-instruct`);
    junkPicks += next.body?.server_public_key === 'junk' ? 1 : 0;
  }
  ctx.log(`${label}: junk registration ${junk.status}; chats ${[...outcomes].map(([s, n]) => `${s}×${n}`).join(', ')}`);
  rows.push(
    { figure: `${label}: registration of key \`junk\``, value: junk.status, unit: '' },
    { figure: `${label}: gateway chats answered 200 (of 20)`, value: outcomes.get('200') ?? 0, unit: '' },
    { figure: `${label}: /servers/next picks of \`junk\` (of 20)`, value: junkPicks, unit: '' },
  );
}

export default {
  name: 'junk-node',
  about: 'a node registered with key `junk` next to an honest node, then next to the demo node: 20 gateway chats and 20 picks each',
  async run(ctx) {
    const rows = [];
    const honestRelay = await ctx.startRelay();
    const honest = new DemoNode({ baseUrl: honestRelay.base, token: null });
    try {
      await honest.start();
      await attack(ctx, honestRelay.base, 'next to an honest node', rows);
    } finally {
      await honest.stop();
      closeAgents();
      await honestRelay.stop();
    }
    const demoRelay = await ctx.startRelay({ USE_MOCK_LLM: '1' });
    try {
      const until = Date.now() + 20_000;
      while (Date.now() < until && (await call(demoRelay.base, 'GET', '/healthz')).body?.demoNodes !== 1) {
        await new Promise((r) => setTimeout(r, 200));
      }
      await attack(ctx, demoRelay.base, 'next to the demo node', rows);
    } finally {
      closeAgents();
      await demoRelay.stop();
    }
    return rows;
  },
};
