import { connect, type Socket } from 'node:net';

/** What came back on a raw connection: status, lower-cased headers, body text, and whether it closed. */
export interface RawAnswer {
  status: number | null;
  headers: Record<string, string>;
  body: string;
  closed: boolean;
  /** Milliseconds from sending the head to the status line (or to giving up). */
  ms: number;
}

/**
 * An HTTP/1.1 request written by hand on its own TCP connection, from a chosen loopback source
 * address (127.0.0.2 and so on are this machine too), so a test can declare a body and send only
 * part of it: what a slow or stalled upload looks like to the relay.
 */
export class RawRequest {
  readonly socket: Socket;
  private data = '';
  private closedAt: number | null = null;
  private readonly started = Date.now();
  private readonly opened: Promise<void>;

  constructor(
    baseUrl: string,
    private readonly head: { method: string; path: string; headers: Record<string, string> },
    localAddress = '127.0.0.1',
  ) {
    const url = new URL(baseUrl);
    this.socket = connect({ host: url.hostname, port: Number(url.port), localAddress });
    this.socket.setEncoding('latin1');
    this.socket.on('data', (chunk: string) => {
      this.data += chunk;
    });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closedAt = Date.now();
    });
    this.opened = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
  }

  /** Sends the request head and `body` (often only part of the declared body). */
  async send(body = ''): Promise<void> {
    await this.opened;
    const lines = [`${this.head.method} ${this.head.path} HTTP/1.1`, 'Host: relay.test'];
    for (const [name, value] of Object.entries(this.head.headers)) {
      lines.push(`${name}: ${value}`);
    }
    await new Promise<void>((resolve) => {
      if (this.socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`)) {
        resolve();
      } else {
        this.socket.once('drain', () => resolve());
      }
    });
  }

  /** Waits up to `ms` for a complete answer (status line, headers, body of its Content-Length). */
  async answer(ms: number): Promise<RawAnswer> {
    const until = Date.now() + ms;
    while (Date.now() < until && !this.complete() && this.closedAt === null) {
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.parse();
  }

  /** Waits up to `ms` for the relay to close the connection. */
  async closed(ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (Date.now() < until && this.closedAt === null) {
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.closedAt !== null;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private complete(): boolean {
    const end = this.data.indexOf('\r\n\r\n');
    if (end < 0) {
      return false;
    }
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(this.data.slice(0, end));
    return length === null || this.data.length - end - 4 >= Number(length[1]);
  }

  private parse(): RawAnswer {
    const end = this.data.indexOf('\r\n\r\n');
    const head = end < 0 ? '' : this.data.slice(0, end);
    const [statusLine = '', ...lines] = head.split('\r\n');
    const status = /^HTTP\/1\.1 (\d{3})/.exec(statusLine);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    return {
      status: status ? Number(status[1]) : null,
      headers,
      body: end < 0 ? '' : this.data.slice(end + 4),
      closed: this.closedAt !== null,
      ms: Date.now() - this.started,
    };
  }
}

/** A JSON POST declaring `declared` bytes of body; `send()` then writes only `sent` of them. */
export function stalledUpload(
  baseUrl: string,
  path: string,
  declared: number,
  localAddress = '127.0.0.1',
  headers: Record<string, string> = {},
): RawRequest {
  return new RawRequest(
    baseUrl,
    {
      method: 'POST',
      path,
      headers: {
        'Content-Type': 'application/json',
        'Content-Length': String(declared),
        ...headers,
      },
    },
    localAddress,
  );
}
