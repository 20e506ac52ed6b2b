import {
  Inject,
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RelayConfig } from '../config/relay-config';
import { LifecycleService } from '../lifecycle/lifecycle.service';
import { RegistryService } from '../registry/registry.service';
import { TokenService } from '../registry/token.service';
import { DemoNode, newDemoNodeKey } from './demo.node';
import type { RsaKey } from '../common/hybrid.crypto';

/**
 * The demo compute node's life inside the relay process (`--use_mock_llm`, `USE_MOCK_LLM=1`):
 * its key is made while the app boots, readiness is held until it has registered, it starts the
 * moment the HTTP server listens (it is a client of that listener), it stops when the drain starts,
 * and the app's shutdown waits for it before the server closes.
 */
@Injectable()
export class DemoNodeService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('DemoNode');
  private readonly key: Promise<RsaKey> | null;
  private node: DemoNode | null = null;
  private stopped: Promise<void> | null = null;

  constructor(
    private readonly config: RelayConfig,
    private readonly lifecycle: LifecycleService,
    private readonly registry: RegistryService,
    private readonly tokens: TokenService,
    @Inject(HttpAdapterHost) private readonly adapter: HttpAdapterHost,
  ) {
    this.key = config.gateway.mockNode ? newDemoNodeKey() : null;
    this.key?.catch(() => undefined); // a failure surfaces in start(), not as an unhandled rejection
  }

  onApplicationBootstrap(): void {
    if (this.key === null) {
      return;
    }
    const key = this.key;
    // Not ready until the demo node has registered: a chat at the first 200 must find it.
    const registered = this.lifecycle.holdReadiness('demo compute node');
    const server = this.adapter.httpAdapter.getHttpServer() as Server;
    server.once('listening', () => {
      void this.start(server, key, registered);
    });
    this.lifecycle.onDrain(() => {
      this.stopped ??= this.node?.stop() ?? Promise.resolve();
    });
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped ??= this.node?.stop() ?? Promise.resolve();
    await this.stopped;
  }

  private async start(server: Server, key: Promise<RsaKey>, registered: () => void): Promise<void> {
    if (this.lifecycle.draining) {
      return;
    }
    const { port } = server.address() as AddressInfo;
    const host = this.config.host;
    const loopback = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    const node = new DemoNode({
      baseUrl: `http://${loopback.includes(':') ? `[${loopback}]` : loopback}:${port}`,
      token: this.tokens.anyToken(),
      key,
    });
    try {
      this.registry.markFallback((await key).publicKeyB64);
      await node.start();
      registered();
      this.node = node;
      if (this.lifecycle.draining) {
        this.stopped = node.stop(); // a signal arrived while it was registering
      }
    } catch (error) {
      this.logger.error({
        msg: 'demo compute node failed to start',
        reason: (error as Error).message,
      });
    }
  }
}
