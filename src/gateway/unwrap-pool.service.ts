import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { Piscina } from 'piscina';
import { keyIdOf, type OffLoopUnwrap, type Padding } from '../common/hybrid.crypto';
import type { unwrapTask } from '../common/rsa-private.cjs';
import { RelayConfig } from '../config/relay-config';
import { GatewayErrors } from './gateway.errors';

/** Threads left without work this long exit; the pool starts them again on demand. */
const IDLE_THREAD_MS = 30_000;

/**
 * Worker threads for the gateway's PKCS#1 v1.5 unwraps (today's nodes answer with that padding,
 * and an encrypted-mode client may send it): ~0.7 ms of CPU each on Node 24, ~30–40 ms in
 * node-forge on Node 20/22, which would otherwise stall every connection of the process. OAEP
 * needs none of it (WebCrypto runs it on the libuv pool).
 *
 * No thread starts until the first such unwrap, and idle ones exit, so a process that never sees
 * one (tests, a relay without the gateway) holds none. `TOKENPLACE_GATEWAY_UNWRAP_THREADS=0` keeps
 * the unwrap on the event loop. What waits for a thread is bounded: a chat has at most one unwrap
 * pending (its answer or a progress report), so chats add at most `TOKENPLACE_GATEWAY_MAX_CONCURRENT`,
 * and an encrypted-mode request is refused 503 `gateway_busy` while that many already wait.
 */
@Injectable()
export class UnwrapPoolService implements OnApplicationShutdown {
  private pool: Piscina<Parameters<typeof unwrapTask>[0], Uint8Array | null> | null = null;

  constructor(private readonly config: RelayConfig) {}

  /** Unwraps of node answers and progress: undefined when they stay on the event loop. */
  get forAnswers(): OffLoopUnwrap | undefined {
    return this.config.gateway.unwrapThreads === 0 ? undefined : this.unwrap;
  }

  /**
   * Unwraps of encrypted-mode requests: refused with 503 `gateway_busy` while
   * `TOKENPLACE_GATEWAY_MAX_CONCURRENT` unwraps already wait for a thread, so new work never
   * delays or displaces the answers of chats already running.
   */
  get forRequests(): OffLoopUnwrap | undefined {
    return this.config.gateway.unwrapThreads === 0 ? undefined : this.admit;
  }

  /** Worker threads running now (0 until the first off-loop unwrap, and after idling). */
  get threads(): number {
    return this.pool?.threads.length ?? 0;
  }

  /** Unwraps waiting for a thread. */
  get waiting(): number {
    return this.pool?.queueSize ?? 0;
  }

  private readonly admit: OffLoopUnwrap = (privateKey, wrapped, padding) => {
    if (this.waiting >= this.config.gateway.maxConcurrent) {
      return Promise.reject(GatewayErrors.busy());
    }
    return this.unwrap(privateKey, wrapped, padding);
  };

  private readonly unwrap = async (
    privateKey: KeyObject,
    wrapped: Buffer,
    padding: Padding,
  ): Promise<Buffer | null> => {
    this.pool ??= new Piscina({
      filename: join(__dirname, '..', 'common', 'rsa-private.cjs'),
      name: 'unwrapTask',
      minThreads: 0,
      maxThreads: this.config.gateway.unwrapThreads,
      idleTimeout: IDLE_THREAD_MS,
    });
    const text = await this.pool.run({
      key: privateKey,
      keyId: keyIdOf(privateKey),
      wrapped,
      padding,
    });
    return text === null ? null : Buffer.from(text.buffer, text.byteOffset, text.length);
  };

  /** Lets the unwraps already queued finish (their chats are answered), then stops the threads. */
  async onApplicationShutdown(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    await pool?.close();
  }
}
