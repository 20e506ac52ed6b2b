// Issue 18 item 7: an honest node registers from 127.0.0.2 and a client queues a request for it;
// an outsider at 127.0.0.3 (no token configured, as the runbook deploys) then re-registers and polls
// with the node's key, answers the request on /responses, and resubmits its (client, request_id)
// to its own node. What each attempt got, and what the node and the client end up with.
import { randomBytes } from 'node:crypto';
import { PROTOCOL, V1, call, capabilities, closeAgents, loopback, requestBody, rsaKey } from '../hostile-nodes.mjs';

const NODE = loopback(0);
const OUTSIDER = loopback(1);

export default {
  name: 'ownership',
  about: "an outsider re-registers, polls and answers with an honest node's key and request, and re-targets the request's id",
  async run(ctx) {
    const relay = await ctx.startRelay({ TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0' });
    try {
      const base = relay.base;
      const key = rsaKey();
      const reg = await call(base, 'POST', `${V1}/servers/register`, { server_public_key: key, capabilities: capabilities({ supported_model_ids: ['model-a'] }) }, { from: NODE });
      const clientKey = rsaKey();
      const request = requestBody(key, clientKey);
      await call(base, 'POST', `${V1}/requests`, request);

      const hijack = await call(base, 'POST', `${V1}/servers/register`, { server_public_key: key, capabilities: capabilities({ supported_model_ids: ['model-evil'] }) }, { from: OUTSIDER });
      const stolen = await call(base, 'POST', `${V1}/servers/poll`, { server_public_key: key }, { from: OUTSIDER });
      const forged = await call(
        base,
        'POST',
        `${V1}/responses`,
        { client_public_key: clientKey, request_id: request.request_id, protocol: PROTOCOL, version: 1, chat_history: 'FORGED', cipherkey: randomBytes(256).toString('base64'), iv: randomBytes(16).toString('base64') },
        { from: OUTSIDER },
      );
      const ownKey = rsaKey();
      await call(base, 'POST', `${V1}/servers/register`, { server_public_key: ownKey, capabilities: capabilities({ supported_model_ids: ['model-a'] }) }, { from: OUTSIDER });
      const retarget = await call(base, 'POST', `${V1}/requests`, { ...requestBody(ownKey, clientKey), request_id: request.request_id }, { from: OUTSIDER });
      const evil = await call(base, 'GET', `${V1}/servers/next?model=model-evil`);
      const nodePoll = await call(base, 'POST', `${V1}/servers/poll`, { server_public_key: key }, { from: NODE });
      const retrieved = await call(base, 'POST', `${V1}/responses/retrieve`, { client_public_key: clientKey, request_id: request.request_id });
      const credentialOk = typeof reg.body?.control_credential === 'string';
      return [
        { figure: "outsider's re-registration of the live key", value: hijack.status, unit: '' },
        { figure: "outsider's poll with the live key", value: `${stolen.status}${stolen.body?.request_id ? ' (took the request)' : ''}${stolen.body?.cancel_token ? ' (saw its cancel token)' : ''}`, unit: '' },
        { figure: "outsider's answer on /responses", value: forged.status, unit: '' },
        { figure: "outsider's resubmission of the (client, request_id) to its own node", value: retarget.status, unit: '' },
        { figure: '/servers/next for model-evil (the hijacker\'s model list)', value: evil.status === 200 && evil.body.server_public_key === key ? '200 (the honest node)' : evil.status, unit: '' },
        { figure: "the honest node's next poll", value: nodePoll.body?.request_id === request.request_id ? 'got the request' : `${nodePoll.status} ${nodePoll.body?.message ?? ''}`.trim(), unit: '' },
        { figure: "the client's retrieve", value: `${retrieved.status}${retrieved.body?.chat_history === 'FORGED' ? ' (the forged answer)' : ''}`, unit: '' },
        { figure: 'node registered with a credential', value: credentialOk ? 'yes' : 'no', unit: '' },
      ];
    } finally {
      closeAgents();
      await relay.stop();
    }
  },
};
