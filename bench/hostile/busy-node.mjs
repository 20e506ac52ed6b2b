// Issue 18 item 4: one honest node with max_concurrency 128 kept full, behaving as spec §7.4 says
// today's nodes do: a poll per claim, /servers/control at once and every next_poll_seconds per
// request, progress once a second per request, the answer after INFER_MS, a re-registration every
// 24 s. Clients keep its queue fed. Counts its calls per route and every 429 it gets.
import { V1, capabilities, fakeKey, post, requestBody, responseBody, progressBody, round, sleep, tally } from '../hostile-lib.mjs';

const IN_FLIGHT = 128;
/** How long the node "infers" each request. */
const INFER_MS = 5000;
/** How long the node runs. */
const RUN_MS = 120_000;

export default {
  name: 'busy-node',
  about: `a node with ${IN_FLIGHT} requests in flight (${INFER_MS / 1000} s each) for ${RUN_MS / 1000} s with default budgets: calls per route and 429s`,
  async run(ctx) {
    const relay = await ctx.startRelay({ TOKENPLACE_RELAY_MAX_PENDING_PER_CLIENT: '1000' });
    try {
      const base = relay.base;
      const key = fakeKey('busy-node');
      const reg = await post(base, `${V1}/servers/register`, { server_public_key: key, capabilities: capabilities({ max_concurrency: IN_FLIGHT }) });
      const credential = reg.body?.control_credential;
      const routes = Object.fromEntries(['register', 'poll', 'control', 'progress', 'response'].map((r) => [r, tally()]));
      const started = Date.now();
      const until = started + RUN_MS;
      const feed = async () => {
        const client = fakeKey('client');
        const res = await post(base, `${V1}/requests`, requestBody(key, client));
        return res.status;
      };
      const submits = tally();
      for (let i = 0; i < IN_FLIGHT; i += 1) {
        submits.add(await feed());
      }
      const worker = async () => {
        while (Date.now() < until) {
          const work = await post(base, `${V1}/servers/poll`, { server_public_key: key, capabilities: capabilities({ max_concurrency: IN_FLIGHT }) });
          routes.poll.add(work.status);
          if (work.status !== 200 || typeof work.body?.request_id !== 'string') {
            await sleep(work.status === 429 ? 1000 : 50);
            continue;
          }
          const { request_id: requestId, client_public_key: clientKey } = work.body;
          const control = async () => {
            const res = await post(base, `${V1}/servers/control`, { server_public_key: key, request_id: requestId, control_credential: credential, acknowledge: false });
            routes.control.add(res.status);
            return Math.min(10, Math.max(1, Number(res.body?.next_poll_seconds ?? 10))) * 1000;
          };
          const done = Date.now() + INFER_MS;
          let nextControl = Date.now() + (await control());
          let nextProgress = Date.now() + 1000;
          while (Date.now() < done) {
            await sleep(Math.max(0, Math.min(nextControl, nextProgress, done) - Date.now()));
            if (Date.now() >= nextProgress && Date.now() < done) {
              routes.progress.add((await post(base, `${V1}/progress`, progressBody(key, credential, clientKey, requestId))).status);
              nextProgress += 1000;
            }
            if (Date.now() >= nextControl && Date.now() < done) {
              nextControl = Date.now() + (await control());
            }
          }
          routes.response.add((await post(base, `${V1}/responses`, responseBody(clientKey, requestId))).status);
          submits.add(await feed());
        }
      };
      const reRegister = (async () => {
        while (Date.now() + 24_000 < until) {
          await sleep(24_000);
          routes.register.add((await post(base, `${V1}/servers/register`, { server_public_key: key, capabilities: capabilities({ max_concurrency: IN_FLIGHT }) })).status);
        }
      })();
      await Promise.all([...Array.from({ length: IN_FLIGHT }, worker), reRegister]);
      const minutes = (Date.now() - started) / 60_000;
      ctx.log(`submits: ${submits.text()}`);
      const rows = [];
      for (const [route, t] of Object.entries(routes)) {
        rows.push({ figure: `${route}: calls per minute`, value: round(t.total() / minutes, 0), unit: '/min' });
        rows.push({ figure: `${route}: 429 answers`, value: t.of(429), unit: `of ${t.total()}` });
        ctx.log(`${route}: ${t.text()}`);
      }
      return rows;
    } finally {
      await relay.stop();
    }
  },
};
