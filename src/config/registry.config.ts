import { IntEnv, TextEnv } from './env-kinds';

/** Who may register compute nodes, and how many (registry/, the node-token guard, operator routes). */
export class RegistryEnv {
  @TextEnv(
    'TOKENPLACE_RELAY_SERVER_TOKEN',
    'Shared secret compute nodes send in X-Relay-Server-Token (runbook name)',
    4096,
    true,
  )
  serverToken = '';

  @TextEnv(
    'TOKEN_PLACE_RELAY_SERVER_TOKEN',
    "Same, under the existing relay's name; all configured tokens are accepted",
    4096,
    true,
  )
  serverTokenLegacy = '';

  @TextEnv(
    ['TOKEN_PLACE_RELAY_SERVER_TOKENS', 'TOKENPLACE_RELAY_SERVER_TOKENS'],
    'Several node tokens, separated by commas or newlines; any may match',
    65536,
    true,
  )
  serverTokens = '';

  @TextEnv(
    'TOKENPLACE_RELAY_SERVER_TOKENS_FILE',
    'File with node tokens (one per line), re-read when it changes: rotation without restart',
    4096,
  )
  serverTokensFile = '';

  @TextEnv(
    ['TOKEN_PLACE_OPERATOR_TOKEN', 'TOKEN_PLACE_KEY_ROTATION_TOKEN', 'PUBLIC_KEY_ROTATION_TOKEN'],
    'Operator token for POST /api/v1/relay/unregister (unset: operator routes answer 503)',
    4096,
    true,
  )
  operatorToken = '';

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_NODES',
    'Most registered compute nodes (new registrations get 503 beyond; renewals always succeed)',
    1,
    1_000_000,
  )
  maxNodes = 1024;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS',
    'Without a node token: most compute nodes one client address (IPv4, or IPv6 /56) holds; its new keys get 429 beyond',
    1,
    1_000_000,
  )
  maxNodesPerAddress = 8;
}

export interface RegistrySettings {
  /** Tokens from the environment (the token file is read by the token service). */
  readonly serverTokens: string[];
  readonly serverTokensFile: string | null;
  readonly operatorToken: string | null;
  /** Open registration: most nodes one address group holds (TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS). */
  readonly maxNodesPerAddress: number;
}

export function registrySettings(s: RegistryEnv): RegistrySettings {
  return {
    serverTokens: [
      ...new Set(
        [s.serverToken, s.serverTokenLegacy, ...s.serverTokens.split(/[,\n]/)]
          .map((t) => t.trim())
          .filter(Boolean),
      ),
    ],
    serverTokensFile: s.serverTokensFile.trim() || null,
    operatorToken: s.operatorToken.trim() || null,
    maxNodesPerAddress: s.maxNodesPerAddress,
  };
}

/**
 * A node token set to nothing (a Secret with an empty key) must never mean "open" in silence.
 * `raw` and `source` are keyed by schema property (the text set, and the variable that set it).
 */
export function blankTokenProblems(
  raw: Readonly<Record<string, string>>,
  source: Readonly<Record<string, string>>,
): string[] {
  const problems: string[] = [];
  for (const property of ['serverToken', 'serverTokenLegacy', 'serverTokens']) {
    const value = raw[property];
    const parts = property === 'serverTokens' ? (value ?? '').split(/[,\n]/) : [value ?? ''];
    if (value !== undefined && parts.every((t) => t.trim() === '')) {
      problems.push(
        `${source[property]} is set but blank: node routes would be open to anyone. Put the token in it, or unset it to run with open node registration on purpose`,
      );
    }
  }
  return problems;
}
