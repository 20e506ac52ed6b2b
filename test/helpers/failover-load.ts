import { V1ClientSim, V1NodeSim, type V1Work } from './simulators';
import { call } from './test-app';

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A simulated node that opens the poll answers it gets itself (to count every status). */
class LoadNode extends V1NodeSim {
  openWork(raw: Record<string, unknown>): V1Work | null {
    return this.open(raw);
  }
}

/** What a steady load saw across a Redis fault. */
export interface LoadTally {
  /** API v1 requests answered 200 at submission, by request id, with the time they were accepted. */
  accepted: Map<string, number>;
  /** Of those, the ones whose answer reached their client (decrypted and checked). */
  answered: Set<string>;
  /** Accepted requests the relay later called unknown or terminal (what a lost write looks like). */
  gone: Map<string, number>;
  /** Every HTTP status seen, by route. */
  statuses: Map<string, Map<number, number>>;
  /** Network errors (no HTTP answer at all), by route. */
  networkErrors: Map<string, number>;
  /** When each end-to-end success (v1 answer retrieved, gateway chat answered) happened. */
  completions: number[];
  gatewayAnswered: number;
  /** Request ids a node received, and those whose answer the relay took (200). */
  delivered: Set<string>;
  responded: Set<string>;
}

export function newTally(): LoadTally {
  return {
    accepted: new Map(),
    answered: new Set(),
    gone: new Map(),
    statuses: new Map(),
    networkErrors: new Map(),
    completions: [],
    gatewayAnswered: 0,
    delivered: new Set(),
    responded: new Set(),
  };
}

function count(tally: LoadTally, route: string, status: number): void {
  let byStatus = tally.statuses.get(route);
  if (!byStatus) {
    byStatus = new Map();
    tally.statuses.set(route, byStatus);
  }
  byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
}

async function observed<T extends { status: number }>(
  tally: LoadTally,
  route: string,
  request: () => Promise<T>,
): Promise<T | null> {
  try {
    const res = await request();
    count(tally, route, res.status);
    return res;
  } catch {
    tally.networkErrors.set(route, (tally.networkErrors.get(route) ?? 0) + 1);
    return null;
  }
}

/** Every status of every route that is a 5xx other than 503 (and 504 for the gateway's deadline). */
export function serverErrors(tally: LoadTally): string[] {
  const out: string[] = [];
  for (const [route, byStatus] of tally.statuses) {
    for (const [status, n] of byStatus) {
      if (status >= 500 && status !== 503 && status !== 504) {
        out.push(`${route} ${status} x${n}`);
      }
    }
  }
  return out;
}

export function statusCount(tally: LoadTally, status: number): number {
  let n = 0;
  for (const byStatus of tally.statuses.values()) {
    n += byStatus.get(status) ?? 0;
  }
  return n;
}

/** Longest time between two end-to-end successes inside [from, to]. */
export function longestStall(tally: LoadTally, from: number, to: number): number {
  const points = [from, ...tally.completions.filter((t) => t > from && t < to).sort(), to];
  let longest = 0;
  for (let i = 1; i < points.length; i += 1) {
    longest = Math.max(longest, (points[i] as number) - (points[i - 1] as number));
  }
  return longest;
}

/**
 * Steady API v1 and gateway load across two relays: compute nodes long-poll `nodeRelay`, clients
 * submit and retrieve on `clientRelay`, gateway chats go to `clientRelay` too. Every loop stops at
 * `stop()`; accepted requests are then followed until answered or `settleMs` passes.
 */
export class FailoverLoad {
  readonly tally = newTally();
  /** Clients stop at `stop()`; nodes keep serving until every accepted request is settled. */
  private stopped = false;
  private nodesStopped = false;
  private readonly loops: Array<Promise<void>> = [];
  private readonly nodeLoops: Array<Promise<void>> = [];
  private readonly nodes: LoadNode[] = [];
  private readonly pending = new Map<string, V1ClientSim>();

  constructor(
    private readonly nodeRelay: string,
    private readonly clientRelay: string,
    private readonly shape = { nodes: 3, clients: 3, gatewayClients: 1 },
  ) {}

  async start(): Promise<void> {
    for (let i = 0; i < this.shape.nodes; i += 1) {
      const node = new LoadNode(this.nodeRelay);
      const res = await node.register();
      if (res.status !== 200) {
        throw new Error(`register answered ${res.status}`);
      }
      this.nodes.push(node);
      this.nodeLoops.push(this.nodeLoop(node));
    }
    for (let i = 0; i < this.shape.clients; i += 1) {
      this.loops.push(this.clientLoop(i));
    }
    for (let i = 0; i < this.shape.gatewayClients; i += 1) {
      this.loops.push(this.gatewayLoop(i));
    }
  }

  /**
   * Stops the clients, then follows every accepted, unanswered request until `settleMs` while the
   * nodes keep serving (work put back in the queue after a lapsed claim is delivered again), then
   * stops the nodes.
   */
  async stop(settleMs = 20_000): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    const deadline = Date.now() + settleMs;
    while (Date.now() < deadline) {
      const open = [...this.pending].filter(
        ([id]) => !this.tally.answered.has(id) && !this.tally.gone.has(id),
      );
      if (open.length === 0) {
        break;
      }
      await Promise.all(open.map(([id, client]) => this.retrieveOnce(client, id)));
      await delay(100);
    }
    this.nodesStopped = true;
    await Promise.all(this.nodeLoops);
  }

  private async nodeLoop(node: LoadNode): Promise<void> {
    while (!this.nodesStopped) {
      const res = await observed(this.tally, 'poll', () => node.poll());
      if (res === null || res.status === 503) {
        await delay(100);
        continue;
      }
      if (res.status === 404) {
        // The relay lost the registration (an unreplicated write): register again, as nodes do.
        await observed(this.tally, 'register', () => node.register());
        continue;
      }
      if (res.status !== 200 || typeof res.body.chat_history !== 'string') {
        continue;
      }
      const item = node.openWork(res.body);
      if (item === null) {
        continue;
      }
      this.tally.delivered.add(item.requestId);
      for (let attempt = 0; attempt < 50; attempt += 1) {
        const answered = await observed(this.tally, 'respond', () => node.respond(item));
        if (answered !== null && answered.status !== 503) {
          if (answered.status === 200) {
            this.tally.responded.add(item.requestId);
          }
          break;
        }
        await delay(100);
      }
    }
  }

  private async clientLoop(index: number): Promise<void> {
    const client = new V1ClientSim(this.clientRelay);
    let turn = 0;
    let retry: { node: LoadNode; requestId: string } | null = null;
    while (!this.stopped) {
      const node: LoadNode =
        retry?.node ?? (this.nodes[(index + turn) % this.nodes.length] as LoadNode);
      turn += 1;
      let submission: Awaited<ReturnType<V1ClientSim['submit']>>;
      try {
        submission = await client.submit(
          node.key,
          `message ${index}.${turn}`,
          {},
          retry?.requestId,
        );
      } catch {
        this.tally.networkErrors.set('submit', (this.tally.networkErrors.get('submit') ?? 0) + 1);
        await delay(100);
        continue;
      }
      count(this.tally, 'submit', submission.response.status);
      if (submission.response.status !== 200) {
        // A 503 may still have been applied: retry with the same request_id (it supersedes).
        retry =
          submission.response.status === 503 ? { node, requestId: submission.requestId } : null;
        await delay(100);
        continue;
      }
      retry = null;
      const id = submission.requestId;
      this.tally.accepted.set(id, Date.now());
      this.pending.set(id, client);
      while (!this.stopped && !this.tally.answered.has(id) && !this.tally.gone.has(id)) {
        const status = await this.retrieveOnce(client, id, 'wait=5');
        if (status === 503 || status === null) {
          await delay(100);
        }
      }
    }
  }

  private async retrieveOnce(
    client: V1ClientSim,
    id: string,
    wait?: string,
  ): Promise<number | null> {
    const res = await observed(this.tally, 'retrieve', () =>
      client.retrieve(id, wait ? { Prefer: wait } : {}),
    );
    if (res === null) {
      return null;
    }
    if (res.status === 200) {
      client.openResponse(res.body, id);
      if (!this.tally.answered.has(id)) {
        this.tally.answered.add(id);
        this.tally.completions.push(Date.now());
      }
    } else if (res.status === 404 || res.status === 410) {
      this.tally.gone.set(id, res.status);
    }
    return res.status;
  }

  private async gatewayLoop(index: number): Promise<void> {
    let turn = 0;
    while (!this.stopped) {
      turn += 1;
      const res = await observed(this.tally, 'gateway', () =>
        call(this.clientRelay, 'POST', '/api/v1/chat/completions', {
          model: 'gpt-5-chat-latest',
          messages: [{ role: 'user', content: `gateway ${index}.${turn}` }],
        }),
      );
      if (res?.status === 200) {
        this.tally.gatewayAnswered += 1;
        this.tally.completions.push(Date.now());
      } else {
        await delay(100);
      }
    }
  }
}

/** The relay's readiness status code, or null when it does not answer. */
export async function readiness(baseUrl: string): Promise<number | null> {
  try {
    return (await call(baseUrl, 'GET', '/healthz')).status;
  } catch {
    return null;
  }
}
