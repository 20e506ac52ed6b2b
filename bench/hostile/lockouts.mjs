// Issue 18 item 4: the three identity lock-outs of the issue, in open mode, from a stranger's
// address (198.51.100.66 through a trusted loopback proxy) against a node at 203.0.113.10.
//   /sink with the victim node's key x1,200, then the victim's /servers/poll;
//   /servers/control with a wrong credential x1,200, then the owner's correct call;
//   239 registrations of the victim's key, then the victim's re-registration.
import { V1, capabilities, fakeKey, post } from '../hostile-lib.mjs';

const STRANGER = { 'X-Forwarded-For': '198.51.100.66' };
const VICTIM = { 'X-Forwarded-For': '203.0.113.10' };

async function burst(count, send) {
  const statuses = new Map();
  for (let i = 0; i < count; i += 16) {
    const batch = await Promise.all(Array.from({ length: Math.min(16, count - i) }, send));
    for (const res of batch) {
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    }
  }
  return [...statuses].map(([s, n]) => `${s}×${n}`).join(' ');
}

export default {
  name: 'lockouts',
  about: "a stranger spends a node's identity budgets (/sink, /servers/control, /servers/register) in open mode; what the node then gets",
  async run(ctx) {
    const relay = await ctx.startRelay({ TOKENPLACE_RELAY_TRUST_PROXY: 'loopback', TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0' });
    try {
      const base = relay.base;
      const key = fakeKey('victim');
      const hello = { server_public_key: key, capabilities: capabilities() };
      const reg = await post(base, `${V1}/servers/register`, hello, VICTIM);
      const credential = reg.body?.control_credential;

      const sinks = await burst(1200, () => post(base, '/sink', { server_public_key: key }, STRANGER));
      const poll = await post(base, `${V1}/servers/poll`, hello, VICTIM);

      const wrong = await burst(1200, () =>
        post(base, `${V1}/servers/control`, { server_public_key: key, request_id: 'r1', control_credential: 'wrong', acknowledge: false }, STRANGER),
      );
      const control = await post(base, `${V1}/servers/control`, { server_public_key: key, request_id: 'r1', control_credential: credential, acknowledge: false }, VICTIM);

      const regs = await burst(239, () => post(base, `${V1}/servers/register`, hello, STRANGER));
      const again = await post(base, `${V1}/servers/register`, hello, VICTIM);
      ctx.log(`stranger's /sink: ${sinks}; /servers/control: ${wrong}; /servers/register: ${regs}`);
      const shown = (res) => `${res.status}${res.headers.get('retry-after') ? ` (Retry-After ${res.headers.get('retry-after')})` : ''}`;
      return [
        { figure: "after 1,200 /sink with its key: the node's /servers/poll", value: shown(poll), unit: '' },
        { figure: "after 1,200 wrong-credential /servers/control: the owner's call", value: shown(control), unit: '' },
        { figure: "after 239 registrations of its key: the node's re-registration", value: shown(again), unit: '' },
      ];
    } finally {
      await relay.stop();
    }
  },
};
