/**
 * The wire vocabulary both sides of the relay share (spec §3–4, §6.4): the API v1 E2EE protocol
 * id, the routes of both protocols and the node token header. Declared here once; the relay, the
 * browser page and every Node peer (smoke CLI, demo node, test simulators, benches) import it.
 * No imports, so the browser bundle can take it as it is.
 */
export const PROTOCOL_ID = 'tokenplace_api_v1_relay_e2ee';
export const PROTOCOL_VERSION = 1;

/** The header a compute node's calls carry when the relay requires a node token. */
export const NODE_TOKEN_HEADER = 'X-Relay-Server-Token';

/** The legacy protocol (`server.py` / `client.py` of Dec 2025). */
export const LEGACY_ROUTES = {
  sink: '/sink',
  source: '/source',
  unregister: '/unregister',
  nextServer: '/next_server',
  faucet: '/faucet',
  retrieve: '/retrieve',
} as const;

/** API v1 E2EE: the node side under `/servers`, the client side beside it. */
export const V1_ROUTES = {
  register: '/api/v1/relay/servers/register',
  poll: '/api/v1/relay/servers/poll',
  control: '/api/v1/relay/servers/control',
  unregister: '/api/v1/relay/servers/unregister',
  progress: '/api/v1/relay/progress',
  responses: '/api/v1/relay/responses',
  next: '/api/v1/relay/servers/next',
  requests: '/api/v1/relay/requests',
  retrieve: '/api/v1/relay/responses/retrieve',
  cancel: '/api/v1/relay/requests/cancel',
} as const;

export type ChatRole = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}
