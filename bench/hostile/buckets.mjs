// Issue 18 item 4: a full rate-limit table. 1,000 distinct forwarded addresses (a trusted loopback
// proxy) each make two public calls, filling a table capped at 2,000 buckets (hourly and daily
// windows); then newcomers: clients on /requests, /v1/models and a gateway chat, and a node
// holding the valid token.
import { V1, capabilities, fakeKey, gatewayChat, post, firstChat } from '../hostile-lib.mjs';

export default {
  name: 'buckets',
  about: 'a rate-limit table filled by 1,000 forwarded addresses (cap 2,000): what newcomers and a token-holding node get',
  async run(ctx) {
    const relay = await ctx.startRelay({
      API_RATE_LIMIT: '60/hour',
      API_DAILY_QUOTA: '1000/day',
      TOKENPLACE_RELAY_MAX_RATE_LIMIT_BUCKETS: '2000',
      TOKENPLACE_RELAY_TRUST_PROXY: 'loopback',
      TOKENPLACE_RELAY_SERVER_TOKEN: 'node-token',
      USE_MOCK_LLM: '1',
    });
    try {
      const base = relay.base;
      const warm = await firstChat(base);
      const fill = [];
      for (let i = 0; i < 1000; i += 25) {
        fill.push(
          ...(await Promise.all(
            Array.from({ length: 25 }, (_, j) => {
              const ip = `10.${Math.floor((i + j) / 250)}.${(i + j) % 250}.1`;
              return post(base, `${V1}/requests`, {}, { 'X-Forwarded-For': ip });
            }),
          )),
        );
      }
      const newcomers = { requests: [], models: [], chat: [] };
      for (let i = 0; i < 10; i += 1) {
        const ip = { 'X-Forwarded-For': `203.0.113.${i + 1}` };
        newcomers.requests.push((await post(base, `${V1}/requests`, {}, ip)).status);
        newcomers.models.push((await fetch(`${base}/v1/models`, { headers: ip })).status);
        newcomers.chat.push((await gatewayChat(base, { headers: ip, timeoutMs: 10_000 })).status);
      }
      const node = await post(
        base,
        `${V1}/servers/register`,
        { server_public_key: fakeKey('node'), capabilities: capabilities() },
        { 'X-Relay-Server-Token': 'node-token', 'X-Forwarded-For': '192.0.2.77' },
      );
      const refused = (list) => list.filter((s) => s === 429).length;
      ctx.log(`warm-up chat ${warm?.status}; filling calls answered ${[...new Set(fill.map((r) => r.status))].join(',')}`);
      return [
        { figure: 'newcomer clients on /requests refused with 429', value: refused(newcomers.requests), unit: 'of 10' },
        { figure: 'newcomer clients on /v1/models refused with 429', value: refused(newcomers.models), unit: 'of 10' },
        { figure: 'newcomer gateway chats refused with 429', value: refused(newcomers.chat), unit: 'of 10' },
        { figure: 'token-holding node registering', value: node.status, unit: '' },
      ];
    } finally {
      await relay.stop();
    }
  },
};
