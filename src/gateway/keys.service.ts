import { createPrivateKey, generateKeyPair } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
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

/**
 * The gateway's RSA keys, each made once and reused, never persisted:
 * - the relay's own key for the encrypted mode (one per process, generated on first use, or read
 *   from `TOKENPLACE_GATEWAY_KEY_FILE` so replicas share it);
 * - the client key every gateway chat of this process is sealed for the node under (docs/decisions.md,
 *   "One client key per gateway process"). It is made once, on the first chat, and replaced in the
 *   background once it is older than `TOKENPLACE_GATEWAY_CLIENT_KEY_ROTATE_SECONDS`: the chat that
 *   notices the age still gets the current key, later chats get the new one when it is ready. A chat
 *   keeps the key it started with until it ends, so rotation never strands an answer.
 */
@Injectable()
export class GatewayKeysService implements OnModuleInit {
  private readonly logger = new Logger('Gateway');
  private relay: Promise<RsaKey> | null = null;
  private fromFile = false;
  /** The first client key while it is being made; then the current one. */
  private client: Promise<RsaKey> | null = null;
  private clientSince = 0;
  private replacing = false;
  private made = 0;

  constructor(
    private readonly config: RelayConfig,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

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

  /**
   * The client key a new gateway chat is sealed under. Only the very first chats of a process wait
   * for a keygen (they share it); a key past its age starts its replacement in the background.
   */
  clientKey(): Promise<RsaKey> {
    if (this.client === null) {
      const pending = newRsaKey();
      this.client = pending;
      this.clientSince = this.clock.now();
      pending.then(
        (key) => this.adopted(key, false),
        () => {
          if (this.client === pending) {
            this.client = null; // the next chat tries again
          }
        },
      );
      return pending;
    }
    if (
      !this.replacing &&
      this.clock.now() - this.clientSince >= this.config.gateway.clientKeyRotateMs
    ) {
      this.replace();
    }
    return this.client;
  }

  /** Client keys made by this process so far (tests, benchmarks). */
  get clientKeysMade(): number {
    return this.made;
  }

  private replace(): void {
    this.replacing = true;
    newRsaKey().then(
      (key) => {
        this.replacing = false;
        this.client = Promise.resolve(key);
        this.clientSince = this.clock.now();
        this.adopted(key, true);
      },
      (error: unknown) => {
        // The current key stays in use; the next chat past the age tries again.
        this.replacing = false;
        this.logger.warn({ msg: 'gateway client key generation failed', reason: String(error) });
      },
    );
  }

  private adopted(key: RsaKey, rotated: boolean): void {
    this.made += 1;
    this.logger.log({
      msg: rotated ? 'gateway client key rotated' : 'gateway client key generated',
      key: fingerprint(key.publicKeyB64),
    });
  }
}
