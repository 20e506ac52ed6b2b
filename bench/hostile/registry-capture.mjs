// Issue 18 item 2: one address registers 1,024 maximum-size API v1 nodes (the largest key the relay
// accepts, 64 model ids of 128 characters), then an honest node registers from another address and
// a client asks /servers/next 50 times; then the same from 128 addresses (8 nodes each).
import { V1, call, capabilities, closeAgents, flood, largestKey, loopback, rsaKey } from '../hostile-nodes.mjs';

async function honestAfter(base, from) {
  const honest = rsaKey(2048);
  const reg = await call(base, 'POST', `${V1}/servers/register`, { server_public_key: honest, capabilities: capabilities() }, { from });
  let picks = 0;
  for (let i = 0; i < 50; i += 1) {
    const next = await call(base, 'GET', `${V1}/servers/next?model=qwen3-8b-instruct`, undefined, { from: loopback(900) });
    if (next.body?.server_public_key === honest) {
      picks += 1;
    }
  }
  return { status: reg.status, picks };
}

export default {
  name: 'registry-capture',
  about: 'one address (then 128) registers 1,024 maximum-size nodes; does an honest node get in, and how many /servers/next picks does it win?',
  async run(ctx) {
    const rows = [];
    try {
      for (const [label, perAddress] of [
        ['one address', 1024],
        ['128 addresses', 8],
      ]) {
        const relay = await ctx.startRelay();
        try {
          const keys = await largestKey(relay.base, loopback(1000));
          const sample = keys();
          const junk = await flood(relay.base, { count: 1024, perAddress, keys });
          const honest = await honestAfter(relay.base, loopback(800));
          const health = await call(relay.base, 'GET', '/healthz');
          ctx.log(`${label}: registrations ${junk.statuses} in ${junk.seconds.toFixed(1)} s (keys of ${sample.length} chars)`);
          rows.push(
            { figure: `${label}: junk registrations accepted (of 1,024)`, value: junk.accepted.length, unit: '' },
            { figure: `${label}: time for the 1,024 registrations`, value: junk.seconds.toFixed(1), unit: 's' },
            { figure: `${label}: honest node's registration`, value: honest.status, unit: '' },
            { figure: `${label}: /servers/next picks won by the honest node (of 50)`, value: honest.picks, unit: '' },
            { figure: `${label}: /healthz knownServers`, value: health.body?.knownServers ?? health.status, unit: '' },
          );
        } finally {
          closeAgents();
          await relay.stop();
        }
      }
    } finally {
      closeAgents();
    }
    return rows;
  },
};
