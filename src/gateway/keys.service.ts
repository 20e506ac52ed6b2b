import { createPrivateKey, generateKeyPair } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { fingerprint } from '../common/ids';
import { RelayConfig } from '../config/relay-config';
import { GatewayErrors } from './gateway.errors';
import { identityOf, type RsaKey } from '../common/hybrid.crypto';

function newRsaKey(): Promise<RsaKey> {
  return new Promise((resolve, reject) => {
    // Async keygen runs on the libuv pool, never on the event loop.
    generateKeyPair('rsa', { modulusLength: 2048, publicExponent: 65537 }, (error, _pub, priv) => {
      if (error) {
        reject(error);
      } else {
        resolve(identityOf(priv));
      }
    });
  });
}

/** Most keygens the pool runs at once in the background (the libuv pool has 4 threads). */
const MAX_REFILLS = 2;

/**
 * The gateway's RSA keys: the relay's own key for the encrypted mode (one per process, generated on
 * first use and never persisted, or read from `TOKENPLACE_GATEWAY_KEY_FILE` so replicas share it),
 * and a small pool of one-time client keys for dispatch, refilled in the background so a chat
 * rarely waits for a keygen. Every client key is handed out once.
 */
@Injectable()
export class GatewayKeysService implements OnModuleInit {
  private readonly logger = new Logger('Gateway');
  private relay: Promise<RsaKey> | null = null;
  private fromFile = false;
  private readonly pool: RsaKey[] = [];
  private refilling = 0;

  constructor(private readonly config: RelayConfig) {}

  /** A configured key file is read at boot, so a bad one stops the process (fail fast). */
  onModuleInit(): void {
    const file = this.config.gateway.keyFile;
    if (file === null || !this.config.gateway.enabled) {
      return;
    }
    const key = identityOf(createPrivateKey(readFileSync(file, 'utf8')));
    if (key.privateKey.asymmetricKeyType !== 'rsa') {
      throw new Error(`TOKENPLACE_GATEWAY_KEY_FILE does not hold an RSA key`);
    }
    this.fromFile = true;
    this.relay = Promise.resolve(key);
    this.logger.log({ msg: 'gateway key loaded', key: fingerprint(key.publicKeyB64) });
  }

  /** The relay's own key (encrypted mode and `GET /public-key`). */
  relayKey(): Promise<RsaKey> {
    if (this.relay === null) {
      const pending = newRsaKey();
      this.relay = pending;
      pending.then(
        (key) =>
          this.logger.log({ msg: 'gateway key generated', key: fingerprint(key.publicKeyB64) }),
        () => {
          if (this.relay === pending) {
            this.relay = null; // the next call tries again
          }
        },
      );
    }
    return this.relay;
  }

  /** Replaces the relay's key; ciphertext made for the old one no longer decrypts. */
  async rotate(): Promise<RsaKey> {
    if (this.fromFile) {
      throw GatewayErrors.rotateFromFile();
    }
    let key: RsaKey;
    try {
      key = await newRsaKey();
    } catch {
      throw GatewayErrors.rotateFailed();
    }
    this.relay = Promise.resolve(key);
    this.logger.log({ msg: 'gateway key rotated', key: fingerprint(key.publicKeyB64) });
    return key;
  }

  /** A fresh client key, used for one gateway request only. */
  async clientKey(): Promise<RsaKey> {
    const ready = this.pool.pop();
    this.refill();
    return ready ?? newRsaKey();
  }

  /** Keys ready in the pool (benchmarks and tests). */
  get pooled(): number {
    return this.pool.length;
  }

  private refill(): void {
    const size = this.config.gateway.keyPoolSize;
    while (this.refilling < MAX_REFILLS && this.pool.length + this.refilling < size) {
      this.refilling += 1;
      newRsaKey().then(
        (key) => {
          this.refilling -= 1;
          if (this.pool.length < size) {
            this.pool.push(key);
          }
          this.refill();
        },
        (error: unknown) => {
          this.refilling -= 1;
          this.logger.warn({ msg: 'gateway key generation failed', reason: String(error) });
        },
      );
    }
  }
}
