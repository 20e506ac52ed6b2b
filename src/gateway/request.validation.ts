import { isPlainObject } from '../common/envelope-body';
import { echo, OpenAiError } from '../common/relay-error';
import { isTruthy, nestedDeeperThan } from '../common/validators';
import { MODEL_ALIASES } from '../registry/capabilities';
import { GatewayErrors } from './gateway.errors';
import { isStrictBase64, type Sealed } from '../common/hybrid.crypto';

/**
 * The gateway's request checks in the existing relay's order (gateway.md §3.4, §3.5, §6.2, §6.4):
 * the first failing check decides, with its exact body. Pure functions over parsed JSON.
 */
export type ApiVersion = 'v1' | 'v2';

/** OpenAI options forwarded to the node when non-null (gateway.md §3.4). */
export const OPTION_KEYS = [
  'temperature',
  'top_p',
  'max_tokens',
  'frequency_penalty',
  'presence_penalty',
  'stop',
  'tools',
  'tool_choice',
  'response_format',
  'seed',
] as const;

/** Bodies nest at most this deep (hostile nesting is refused before anything walks it). */
export const MAX_BODY_DEPTH = 64;

const ROLES = new Set(['system', 'user', 'assistant', 'function']);
const TEXT_BLOCKS = new Set(['text', 'input_text']);
const IMAGE_BLOCKS = new Set(['image_url', 'input_image', 'image']);
const SEALED_FIELDS = ['ciphertext', 'cipherkey', 'iv'] as const;

/** A validated chat message as forwarded to the node (content blocks kept, extra keys dropped). */
export interface ChatMessage {
  role: string;
  content: string | Array<{ type: string; text: string }>;
  name?: string;
}

/** What a chat body says before its messages are decrypted and checked. */
export interface ChatEnvelope {
  model: string;
  encrypted: boolean;
  /** Encrypted mode: where the reply goes (empty: a plaintext reply, as upstream). */
  clientPublicKey: string;
  sealed: Sealed | null;
  messages: unknown;
  options: Record<string, unknown>;
  metadata: Record<string, unknown> | null;
  stream: boolean;
}

/** Canonical model id: the alias table, exact and case-sensitive (gateway.md §2.5). */
export function canonicalModel(id: string): string {
  return Object.hasOwn(MODEL_ALIASES, id) ? (MODEL_ALIASES[id] as string) : id;
}

function options(body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of OPTION_KEYS) {
    const value = body[key];
    if (value !== undefined && value !== null) {
      out[key] = value;
    }
  }
  return out;
}

function metadataOf(body: Record<string, unknown>): Record<string, unknown> | null {
  const m = body.metadata;
  return isPlainObject(m) && Object.keys(m).length > 0 ? m : null;
}

function tooDeep(): OpenAiError {
  return new OpenAiError(
    400,
    `Invalid request body: nested deeper than ${MAX_BODY_DEPTH} levels`,
    'invalid_request_error',
  );
}

function checkSealed(body: Record<string, unknown>): Sealed {
  for (const field of ['client_public_key', 'messages']) {
    if (!Object.hasOwn(body, field)) {
      throw GatewayErrors.missing(field);
    }
  }
  if (typeof body.client_public_key !== 'string') {
    throw GatewayErrors.wrongType('client_public_key', 'str');
  }
  const sealed = body.messages;
  if (!isPlainObject(sealed)) {
    throw GatewayErrors.messages('messages must be an object for encrypted requests');
  }
  for (const field of SEALED_FIELDS) {
    if (!Object.hasOwn(sealed, field)) {
      throw GatewayErrors.missing(field);
    }
  }
  for (const field of SEALED_FIELDS) {
    const value = sealed[field];
    if (typeof value !== 'string') {
      throw GatewayErrors.wrongType(field, 'str');
    }
    if (!isStrictBase64(value)) {
      throw GatewayErrors.badBase64(field);
    }
  }
  return {
    ciphertext: sealed.ciphertext as string,
    cipherkey: sealed.cipherkey as string,
    iv: sealed.iv as string,
  };
}

/**
 * `POST /chat/completions` up to the messages: body, model, `stream` (v1 refuses it), model type,
 * then the encrypted envelope or the plain `messages` list (§3.4 rows 1–5).
 */
export function checkChatEnvelope(
  body: unknown,
  api: ApiVersion,
  knownToV2: (id: string) => boolean = () => true,
): ChatEnvelope {
  if (!isTruthy(body)) {
    throw GatewayErrors.emptyChatBody();
  }
  if (nestedDeeperThan(body, MAX_BODY_DEPTH)) {
    throw tooDeep();
  }
  if (!isPlainObject(body) || !Object.hasOwn(body, 'model')) {
    throw GatewayErrors.missing('model');
  }
  const stream = isTruthy(body.stream);
  if (api === 'v1' && stream) {
    throw GatewayErrors.chatStream();
  }
  if (api === 'v2' && (typeof body.model !== 'string' || !knownToV2(body.model))) {
    // API v2 checks the model against its catalogue right after its presence (§6.1).
    throw GatewayErrors.v2ModelNotFound(pythonRepr(body.model));
  }
  if (typeof body.model !== 'string') {
    throw GatewayErrors.wrongType('model', 'str');
  }
  const encrypted = isTruthy(body.encrypted);
  const common = {
    model: body.model,
    encrypted,
    options: options(body),
    metadata: metadataOf(body),
    stream,
  };
  if (encrypted) {
    const sealed = checkSealed(body);
    return {
      ...common,
      clientPublicKey: body.client_public_key as string,
      sealed,
      messages: null,
    };
  }
  if (!Object.hasOwn(body, 'messages')) {
    throw GatewayErrors.missing('messages');
  }
  if (!Array.isArray(body.messages)) {
    throw GatewayErrors.wrongType('messages', 'list');
  }
  return { ...common, clientPublicKey: '', sealed: null, messages: body.messages };
}

/** Decrypted messages are JSON; anything else is the `encryption_error` of row 7. */
export function parseDecrypted(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw GatewayErrors.decryptedJson();
  }
  if (nestedDeeperThan(value, MAX_BODY_DEPTH)) {
    throw tooDeep();
  }
  return value;
}

/**
 * Row 8: the message list, text only. API v1 refuses an empty list and image blocks with the
 * existing relay's texts; API v2 says `Messages must be an array` and lets an empty list reach the
 * model layer. Image blocks are refused on both: every compute node behind the relay is text-only.
 */
export function checkMessages(messages: unknown, api: ApiVersion): ChatMessage[] {
  if (!Array.isArray(messages)) {
    throw GatewayErrors.messages(
      api === 'v1' ? 'messages must be an array' : 'Messages must be an array',
    );
  }
  if (api === 'v1' && messages.length === 0) {
    throw GatewayErrors.messages('messages must contain at least one item');
  }
  return messages.map((message: unknown, i) => checkMessage(message, i, api));
}

function checkMessage(message: unknown, i: number, api: ApiVersion): ChatMessage {
  if (!isPlainObject(message)) {
    throw GatewayErrors.messages(`messages[${i}] must be an object`);
  }
  for (const field of ['role', 'content']) {
    if (!Object.hasOwn(message, field)) {
      throw GatewayErrors.missing(field);
    }
  }
  const role = message.role;
  if (typeof role !== 'string') {
    throw GatewayErrors.wrongType('role', 'str');
  }
  if (!ROLES.has(role)) {
    throw GatewayErrors.messages(`Invalid role in messages[${i}]: ${echo(role)}`);
  }
  const out: ChatMessage = { role, content: checkContent(message.content, i, api) };
  if (typeof message.name === 'string') {
    out.name = message.name;
  }
  return out;
}

function checkContent(content: unknown, i: number, api: ApiVersion): ChatMessage['content'] {
  if (typeof content === 'string') {
    return content;
  }
  if (!Array.isArray(content)) {
    throw GatewayErrors.messages(
      api === 'v1'
        ? `messages[${i}].content must be a string or array of text content blocks`
        : `messages[${i}].content must be a string or array of content blocks`,
    );
  }
  if (content.length === 0) {
    throw GatewayErrors.messages(`messages[${i}].content must contain at least one item`);
  }
  return content.map((item: unknown, j) => {
    if (!isPlainObject(item)) {
      throw GatewayErrors.messages(`messages[${i}].content[${j}] must be an object`);
    }
    const type = item.type;
    if (typeof type === 'string' && TEXT_BLOCKS.has(type)) {
      if (typeof item.text !== 'string' || item.text === '') {
        throw GatewayErrors.messages(
          `messages[${i}].content[${j}].text must be a non-empty string`,
        );
      }
      return { type, text: item.text };
    }
    if (typeof type === 'string' && IMAGE_BLOCKS.has(type)) {
      throw api === 'v1'
        ? GatewayErrors.messages(
            'API v1 chat completions are text-only and do not support image content',
          )
        : GatewayErrors.imageContent();
    }
    throw GatewayErrors.messages(
      `Unsupported content type in messages[${i}]: ${echo(pythonRepr(type))}`,
    );
  });
}

/** Every text a moderation policy looks at. */
export function textsOf(messages: readonly ChatMessage[]): string[] {
  return messages.flatMap((m) =>
    typeof m.content === 'string' ? [m.content] : m.content.map((b) => b.text),
  );
}

/** What `POST /completions` asks for. */
export interface CompletionRequest {
  model: string;
  prompt: string;
  /** Reply encrypted to this key (v1: `encrypted` truthy and a non-empty key). */
  clientPublicKey: string;
  options: Record<string, unknown>;
}

/** `POST /completions` (gateway.md §3.5 for v1, §6.4 for v2). */
export function checkCompletion(body: unknown, api: ApiVersion): CompletionRequest {
  if (!isTruthy(body)) {
    throw GatewayErrors.emptyBody();
  }
  if (nestedDeeperThan(body, MAX_BODY_DEPTH)) {
    throw tooDeep();
  }
  if (api === 'v2') {
    if (!isPlainObject(body) || !isTruthy(body.model)) {
      throw GatewayErrors.missingNoCode('model');
    }
    if (typeof body.model !== 'string') {
      throw GatewayErrors.v2ModelNotFound(pythonRepr(body.model));
    }
  } else {
    if (!isPlainObject(body) || !Object.hasOwn(body, 'model')) {
      throw GatewayErrors.missing('model');
    }
    if (typeof body.model !== 'string') {
      throw GatewayErrors.wrongType('model', 'str');
    }
    if (isTruthy(body.stream)) {
      throw GatewayErrors.completionsStream();
    }
    if (body.model === '') {
      throw GatewayErrors.missingNoCode('model');
    }
  }
  const prompt = body.prompt ?? '';
  if (Array.isArray(prompt)) {
    throw GatewayErrors.promptBlocks();
  }
  if (typeof prompt !== 'string') {
    throw GatewayErrors.promptNotText();
  }
  const key = body.client_public_key;
  return {
    model: body.model,
    prompt,
    clientPublicKey: isTruthy(body.encrypted) && typeof key === 'string' ? key : '',
    options: options(body),
  };
}

/** How the existing relay prints a value in its messages (`None` for a missing type). */
function pythonRepr(value: unknown): string {
  if (value === undefined || value === null) {
    return 'None';
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}
