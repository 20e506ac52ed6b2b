import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOAD_SCORE_SCALE } from '../scheduler';
import {
  CONTEXT_TIERS,
  EVICTION_REASONS,
  outcomeOf,
  REQUEST_OUTCOMES,
  TERMINAL_REASONS,
  TERMINAL_STATUSES,
} from '../state.types';
import * as answers from '../transitions/answers.redis';
import * as nodes from '../transitions/nodes.redis';
import * as upkeep from '../transitions/upkeep.redis';
import * as work from '../transitions/work.redis';
import type { RedisScript } from './script-call';

/** Layout of the relay's keys; replicas that speak another layout refuse to serve. */
export const SCHEMA_VERSION = 'tokenplace-relay/2';

/**
 * Earlier layouts this release upgrades in place at boot: `/1` kept no placement view, which
 * {@link nodes.rebuildPlacementView} writes from the nodes' own keys (docs/redis.md, "Upgrading").
 */
export const UPGRADABLE_LAYOUTS: readonly string[] = ['tokenplace-relay/1'];

/** The script that upgrades an earlier layout: the only one that runs on one. */
export const LAYOUT_UPGRADE_SCRIPT = nodes.rebuildPlacementView.name;

/** The Lua of the Redis store, beside its in-memory twins (`*.memory.ts`), shipped as assets. */
export const LUA_DIR = join(__dirname, '..', 'transitions');
/** The shared helpers, prepended to every script. */
export const LIFECYCLE_FILE = 'lifecycle.redis.lua';

/**
 * The script groups: each `transitions/<group>.redis.ts` declares the scripts of its `.lua` file
 * (name, arguments, reply). Everything below is derived from them.
 */
const GROUPS = [nodes, work, answers, upkeep];

/** Files holding scripts, each a sequence of `--[[ script <name> ... ]]` sections. */
export const SCRIPT_FILES = GROUPS.map((g) => g.LUA_FILE);

/** Every script the store calls, by ioredis command name. */
export const RELAY_SCRIPTS: ReadonlyMap<string, RedisScript> = new Map(
  GROUPS.flatMap((g) => g.SCRIPTS as readonly RedisScript[]).map((s) => [s.name, s]),
);
export const RELAY_SCRIPT_NAMES = [...RELAY_SCRIPTS.keys()];
const FILE_OF = new Map(
  GROUPS.flatMap((g) => g.SCRIPTS.map((s): [string, string] => [s.name, g.LUA_FILE])),
);

/** Redis TTL margin past a key's own lifetime: a safety net that never decides anything. */
export const TTL_SAFETY_MS = 86_400_000;

/**
 * The constants the scripts read as `K`, written from the TypeScript vocabularies at load time so
 * they exist once: the context tiers, the load-score rounding, the outcome and eviction
 * vocabularies (the scripts refuse any other name), and the outcome of every terminal (status,
 * reason).
 */
export function scriptConstants(): Record<string, unknown> {
  const outcomeOfTerminal: Record<string, string> = {};
  for (const status of TERMINAL_STATUSES) {
    for (const reason of TERMINAL_REASONS) {
      outcomeOfTerminal[`${status}\n${reason}`] = outcomeOf(status, reason);
    }
  }
  return {
    LAYOUT: SCHEMA_VERSION,
    SAFETY_MS: TTL_SAFETY_MS,
    TIERS: CONTEXT_TIERS,
    LOAD_SCORE_SCALE,
    OUTCOMES: Object.fromEntries(REQUEST_OUTCOMES.map((o) => [o, true])),
    EVICTIONS: Object.fromEntries(EVICTION_REASONS.map((r) => [r, true])),
    OUTCOME_OF: outcomeOfTerminal,
  };
}

/** A Lua expression for a JSON-like value (tables for objects and arrays). */
export function luaLiteral(value: unknown): string {
  if (typeof value === 'string') {
    // Lua 5.1 escapes: backslash, quote, and decimal \ddd for control characters.
    const escaped = value.replace(/[\\"\x00-\x1f\x7f]/g, (c) =>
      c === '\\' || c === '"' ? `\\${c}` : `\\${String(c.charCodeAt(0)).padStart(3, '0')}`,
    );
    return `"${escaped}"`;
  }
  if (typeof value === 'number' && Number.isFinite(value)) {
    return String(value);
  }
  if (typeof value === 'boolean') {
    return String(value);
  }
  if (Array.isArray(value)) {
    return `{ ${value.map(luaLiteral).join(', ')} }`;
  }
  if (typeof value === 'object' && value !== null) {
    const fields = Object.entries(value).map(([k, v]) => `[${luaLiteral(k)}] = ${luaLiteral(v)}`);
    return `{ ${fields.join(', ')} }`;
  }
  throw new Error(`no Lua literal for ${typeof value}`);
}

/**
 * What every script starts with: Redis 7 flags (a script that may write is refused up front when
 * Redis is out of memory, instead of failing halfway), the prefix, the layout check (read-only
 * scripts never create the layout key) and the constants.
 */
function header(readOnly: boolean, constants: string, upgrade: boolean): string {
  const accepted = upgrade ? [SCHEMA_VERSION, ...UPGRADABLE_LAYOUTS] : [SCHEMA_VERSION];
  return `#!lua${readOnly ? ' flags=no-writes' : ''}
local P = ARGV[1]
local schema = redis.call('GET', P .. 'schema')
if schema and ${accepted.map((l) => `schema ~= '${l}'`).join(' and ')} then
  return redis.error_reply('TPSCHEMA Redis holds relay state of layout ' .. schema .. '; this replica speaks ${SCHEMA_VERSION}')
end
${readOnly ? '' : `if not schema then redis.call('SET', P .. 'schema', '${SCHEMA_VERSION}') end\n`}local K = ${constants}
`;
}

/** One `--[[ script <name> [(read-only)] ... ]]` section of a `.lua` file. */
export interface ScriptSection {
  name: string;
  file: string;
  readOnly: boolean;
  /** The header comment: KEYS, ARGV and Reply lines. */
  doc: string;
  body: string;
}

const SECTION = /^--\[\[ script (\w+)( \(read-only\))?\n([\s\S]*?)\n\]\]\n/gm;

/** Splits a script file into its sections (what precedes the first one is the file's comment). */
export function parseScriptFile(file: string, text: string): ScriptSection[] {
  const starts = [...text.matchAll(SECTION)];
  return starts.map((m, i) => {
    const next = starts[i + 1];
    const from = (m.index ?? 0) + m[0].length;
    return {
      name: m[1] as string,
      file,
      readOnly: m[2] !== undefined,
      doc: m[3] as string,
      body: text.slice(from, next?.index ?? text.length),
    };
  });
}

function readLua(dir: string, file: string): string {
  return readFileSync(join(dir, file), 'utf8');
}

/** Every section of every script file in `dir`, checked against the script list. */
export function loadScriptSections(dir = LUA_DIR): ScriptSection[] {
  const sections = SCRIPT_FILES.flatMap((file) => parseScriptFile(file, readLua(dir, file)));
  const names = sections.map((s) => s.name);
  for (const section of sections) {
    const declared = RELAY_SCRIPTS.get(section.name);
    if (!declared) {
      throw new Error(`${section.file}: unknown script ${section.name}`);
    }
    if (section.file !== FILE_OF.get(section.name)) {
      throw new Error(
        `${section.file}: ${section.name} is declared in ${FILE_OF.get(section.name)}`,
      );
    }
    if (section.readOnly !== declared.readOnly) {
      throw new Error(
        `${section.file}: ${section.name} read-only flag differs from its declaration`,
      );
    }
  }
  for (const name of RELAY_SCRIPT_NAMES) {
    if (names.filter((n) => n === name).length !== 1) {
      throw new Error(`script ${name} must be defined exactly once in ${SCRIPT_FILES.join(', ')}`);
    }
  }
  return sections;
}

let loaded: Record<string, string> | undefined;

/** The scripts of the built or source tree this module belongs to, read once per process. */
export function relayScripts(): Record<string, string> {
  loaded ??= loadRelayScripts();
  return loaded;
}

/** Full source of every script (header, lifecycle, section), by command name. */
export function loadRelayScripts(dir = LUA_DIR): Record<string, string> {
  const constants = luaLiteral(scriptConstants());
  const lifecycle = readLua(dir, LIFECYCLE_FILE);
  const out: Record<string, string> = {};
  for (const section of loadScriptSections(dir)) {
    const upgrade = section.name === LAYOUT_UPGRADE_SCRIPT;
    out[section.name] =
      `${header(section.readOnly, constants, upgrade)}${lifecycle}\n${section.body}`;
  }
  return out;
}
