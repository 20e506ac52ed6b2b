/**
 * How the store calls the scripts of nodes.redis.lua (the twin of nodes.memory.ts): each one's
 * arguments in ARGV order and the reading of its reply, one declaration per script, same order.
 */
import { bit, jsonReply, opt, script, statusReply } from '../redis/script-call';
import {
  countReply,
  flagReply,
  nodeListSchema,
  nodeSummarySchema,
  nullableTextReply,
  selectionSchema,
  type ScriptReply,
} from '../redis/script-reply';
import {
  UNREGISTER_NODE_STATUSES,
  UPSERT_NODE_STATUSES,
  type SelectNodeCommand,
  type SummarizeNodesCommand,
  type UnregisterNodeCommand,
  type UpsertNodeCommand,
} from '../state-store';

export const LUA_FILE = 'nodes.redis.lua';

const credentialIssued = (r: ScriptReply) => ({ credentialIssued: r.flag('credential issued') });

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
  reply: statusReply(UPSERT_NODE_STATUSES, {
    created: credentialIssued,
    renewed: credentialIssued,
  }),
});

export const unregisterNode = script('tpUnregisterNode', {
  args: ['nodeId', 'credentialDigest', 'force'],
  encode: (cmd: UnregisterNodeCommand) => ({
    credentialDigest: opt(cmd.credentialDigest),
    force: bit(cmd.force),
  }),
  idempotent: true,
  acknowledged: true,
  reply: statusReply(UNREGISTER_NODE_STATUSES),
});

export const listNodes = script('tpListNodes', {
  readOnly: true,
  parse: jsonReply(nodeListSchema, 'node list'),
});

export const summarizeNodes = script('tpSummarizeNodes', {
  readOnly: true,
  args: ['mostNodesPerList'],
  encode: (cmd: SummarizeNodesCommand) => ({ mostNodesPerList: cmd.limit }),
  parse: jsonReply(nodeSummarySchema, 'node summary'),
});

export const markKeyUnusable = script('tpMarkKeyUnusable', {
  args: ['nodeId'],
  encode: (nodeId: string) => ({ nodeId }),
  idempotent: true,
  acknowledged: false,
  parse: flagReply,
});

export const pickLegacyNode = script('tpPickLegacyNode', {
  readOnly: true,
  args: ['random'],
  encode: (_: void) => ({ random: Math.random() }),
  parse: nullableTextReply,
});

export const selectNode = script('tpSelectNode', {
  args: ['model', 'requestedTier', 'maxQueueDepth', 'atCapacity'],
  encode: (cmd: SelectNodeCommand) => ({
    requestedTier: cmd.tier,
    atCapacity: cmd.atCapacity ?? 'refuse',
  }),
  rest: { name: 'excludedNodeIds', values: (cmd) => [...(cmd.exclude ?? [])] },
  idempotent: true,
  acknowledged: false,
  parse: jsonReply(selectionSchema, 'selection'),
});

/**
 * Writes the placement view again from the nodes' own keys and marks the keys as this layout: the
 * boot's upgrade of an earlier release's layout (ConnectionSupervisor), and the tests' drift check.
 */
export const rebuildPlacementView = script('tpRebuildPlacementView', {
  idempotent: true,
  acknowledged: false,
  parse: countReply,
});

export const SCRIPTS = [
  upsertNode,
  unregisterNode,
  listNodes,
  summarizeNodes,
  markKeyUnusable,
  pickLegacyNode,
  selectNode,
  rebuildPlacementView,
];
