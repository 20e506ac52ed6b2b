/**
 * How the store calls the scripts of nodes.redis.lua (the twin of nodes.memory.ts): each one's
 * arguments in ARGV order and the reading of its reply, one declaration per script, same order.
 */
import { bit, opt, script, statusReply } from '../redis/script-call';
import {
  flagReply,
  nodeListSchema,
  nodeSummarySchema,
  nullableTextReply,
  parseJson,
  selectionSchema,
} from '../redis/script-reply';
import {
  UNREGISTER_NODE_STATUSES,
  UPSERT_NODE_STATUSES,
  type SelectNodeCommand,
  type SelectNodeResult,
  type SummarizeNodesCommand,
  type UnregisterNodeCommand,
  type UpsertNodeCommand,
  type UpsertNodeResult,
} from '../state-store';
import type { NodeSummary, NodeView } from '../state.types';

export const LUA_FILE = 'nodes.redis.lua';

export const upsertNode = script('tpUpsertNode', {
  args: [
    'nodeId',
    'dialect',
    'capabilitiesMode',
    'capabilitiesJson',
    'tier',
    'maxTotalContext',
    'maxConcurrency',
    'modelSet',
    'modelIdsJson',
    'newCredentialDigest',
    'requireExisting',
    'pollingUntil',
    'fallback',
    'originOwner',
    'originGroup',
    'presentedCredentialDigest',
    'mostNodesPerOriginGroup',
  ],
  encode: (cmd: UpsertNodeCommand) => {
    const caps = cmd.capabilities;
    return {
      nodeId: cmd.nodeId,
      dialect: cmd.dialect,
      capabilitiesMode: caps === undefined ? 'keep' : caps === null ? 'null' : 'set',
      capabilitiesJson: caps ? JSON.stringify(caps) : '',
      tier: caps ? caps.active_context_tier : '',
      maxTotalContext: caps ? caps.maximum_total_context_tokens : 0,
      maxConcurrency: caps ? caps.max_concurrency : 0,
      modelSet: caps ? `\n${caps.supported_model_ids.join('\n')}\n` : '',
      modelIdsJson: caps ? JSON.stringify(caps.supported_model_ids) : '',
      newCredentialDigest: opt(cmd.newCredentialDigest),
      requireExisting: bit(cmd.requireExisting),
      pollingUntil: opt(cmd.pollingUntil),
      fallback: opt(cmd.fallback === undefined ? undefined : bit(cmd.fallback)),
      originOwner: opt(cmd.origin?.owner),
      originGroup: opt(cmd.origin?.group),
      presentedCredentialDigest: opt(cmd.presentedDigest),
      mostNodesPerOriginGroup: opt(cmd.maxPerGroup),
    };
  },
  idempotent: true,
  acknowledged: true,
  reply: (r): UpsertNodeResult => {
    const status = r.oneOf(UPSERT_NODE_STATUSES, 'status');
    const transitions = r.transitions();
    if (status === 'created' || status === 'renewed') {
      const credentialIssued = r.flag('credential issued');
      r.end();
      return { status, credentialIssued, transitions };
    }
    r.end();
    return { status, transitions };
  },
});

export const unregisterNode = script('tpUnregisterNode', {
  args: ['nodeId', 'credentialDigest', 'force'],
  encode: (cmd: UnregisterNodeCommand) => ({
    nodeId: cmd.nodeId,
    credentialDigest: opt(cmd.credentialDigest),
    force: bit(cmd.force),
  }),
  idempotent: true,
  acknowledged: true,
  reply: statusReply(UNREGISTER_NODE_STATUSES),
});

export const listNodes = script('tpListNodes', {
  readOnly: true,
  args: [],
  encode: (_: void) => ({}),
  idempotent: true,
  acknowledged: false,
  parse: (raw, name): NodeView[] => parseJson(name, nodeListSchema, raw, 'node list'),
});

export const summarizeNodes = script('tpSummarizeNodes', {
  readOnly: true,
  args: ['mostNodesPerList'],
  encode: (cmd: SummarizeNodesCommand) => ({ mostNodesPerList: cmd.limit }),
  idempotent: true,
  acknowledged: false,
  parse: (raw, name): NodeSummary => parseJson(name, nodeSummarySchema, raw, 'node summary'),
});

export const markKeyUnusable = script('tpMarkKeyUnusable', {
  args: ['nodeId'],
  encode: (nodeId: string) => ({ nodeId }),
  idempotent: true,
  acknowledged: false,
  parse: (raw, name) => flagReply(name, raw),
});

export const pickLegacyNode = script('tpPickLegacyNode', {
  readOnly: true,
  args: ['random'],
  encode: (_: void) => ({ random: Math.random() }),
  idempotent: true,
  acknowledged: false,
  parse: (raw, name) => nullableTextReply(name, raw),
});

export const selectNode = script('tpSelectNode', {
  args: ['model', 'requestedTier', 'maxQueueDepth', 'atCapacity'],
  encode: (cmd: SelectNodeCommand) => ({
    model: cmd.model,
    requestedTier: cmd.tier,
    maxQueueDepth: cmd.maxQueueDepth,
    atCapacity: cmd.atCapacity ?? 'refuse',
  }),
  rest: { name: 'excludedNodeIds', values: (cmd) => [...(cmd.exclude ?? [])] },
  idempotent: true,
  acknowledged: false,
  parse: (raw, name): SelectNodeResult => parseJson(name, selectionSchema, raw, 'selection'),
});

export const SCRIPTS = [
  upsertNode,
  unregisterNode,
  listNodes,
  summarizeNodes,
  markKeyUnusable,
  pickLegacyNode,
  selectNode,
];
