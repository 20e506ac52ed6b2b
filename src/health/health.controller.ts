import { Controller, Get, Header, HttpException, UseInterceptors } from '@nestjs/common';
import { HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { fingerprint } from '../common/ids';
import { WireResponse, WireResponseInterceptor } from '../common/wire-response';
import { RelayConfig } from '../config/relay-config';
import { describeNode, DiscoveryService } from '../client/discovery.service';
import { RegistryViewService } from '../registry/registry-view.service';
import { LifecycleService } from '../lifecycle/lifecycle.service';
import { RelayHealthIndicators } from './store.health';

const NO_STORE = { 'Cache-Control': 'no-store' };
/** Nodes `/healthz` lists (it counts them all): it is probed often and must stay small. */
const HEALTH_LISTED = 16;
/** Model ids shown per listed node (`/relay/diagnostics` shows more). */
const HEALTH_MODELS = 8;

/** `/livez` touches nothing; `/healthz` is readiness: draining flag, state store, optional DNS. */
@Controller()
@UseInterceptors(WireResponseInterceptor)
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicators: RelayHealthIndicators,
    private readonly lifecycle: LifecycleService,
    private readonly views: RegistryViewService,
    private readonly discovery: DiscoveryService,
    private readonly config: RelayConfig,
  ) {}

  @Get('livez')
  @Header('Cache-Control', 'no-store')
  livez(): object {
    return { status: 'alive' };
  }

  @Get('healthz')
  async healthz(): Promise<WireResponse> {
    const c = this.config;
    const up = this.discovery.upstream();
    // Only what is configured: no made-up default upstream (the existing relay reported
    // http://gpu-server:3000 and https://token.place when nothing was set).
    const body: Record<string, unknown> = {
      status: 'ok',
      ...(c.upstreamReported ? { upstream: c.upstreamUrl, gpuHost: c.gpuHost } : {}),
      upstreamHealthRequired: c.requireUpstreamHealth,
      relayOnly: up.relayOnly,
      activeUpstreamServers: up.active,
      requiredUpstreamServers: up.required,
      configuredUpstreamServers: up.configured,
      store: c.stateStore,
      ...(c.publicUrl ? { publicUrl: c.publicUrl, publicBaseUrl: c.publicUrl } : {}),
    };
    const details: Record<string, unknown> = {};
    if (this.lifecycle.draining) {
      details.shutdown = true;
      return new WireResponse(
        503,
        { ...body, status: 'draining', details },
        { ...NO_STORE, 'Retry-After': '0' },
      );
    }
    const starting = this.lifecycle.starting;
    if (starting.length > 0) {
      // Listening, but not yet able to serve a chat (the demo node has not registered).
      details.startingFor = starting;
      return new WireResponse(
        503,
        { ...body, status: 'starting', details },
        { ...NO_STORE, 'Retry-After': '1' },
      );
    }
    const checks = [() => this.indicators.store_()];
    if (c.requireUpstreamHealth) {
      checks.push(() => this.indicators.upstreamDns());
    }
    let result: HealthCheckResult;
    try {
      result = await this.health.check(checks);
    } catch (error) {
      if (!(error instanceof HttpException)) {
        throw error;
      }
      result = error.getResponse() as HealthCheckResult;
    }
    const failed = result.error ?? {};
    if (failed.store) {
      // The reason (addresses, error texts) goes to the log, never to this public endpoint.
      details.store = 'unreachable';
    }
    if (failed.gpuHost) {
      details.gpuHostResolution = 'failed';
    }
    if (result.status !== 'ok') {
      return new WireResponse(
        503,
        { ...body, status: 'degraded', knownServers: 0, registeredServers: [], details },
        NO_STORE,
      );
    }
    const nodes = await this.nodes();
    if (nodes.knownServers === 0) {
      details.knownServers = 'empty';
    }
    return new WireResponse(
      200,
      { ...body, ...nodes, ...(Object.keys(details).length > 0 ? { details } : {}) },
      NO_STORE,
    );
  }

  /**
   * The node fields of `/healthz`, rendered once per registry reading: every node counted, the
   * first {@link HEALTH_LISTED} listed (fingerprints unless keys are exposed), the demo node apart.
   */
  private async nodes(): Promise<{
    knownServers: number;
    registeredServers: object[];
    registeredServersListed?: number;
    demoNodes?: number;
  }> {
    const view = await this.views.view();
    return view.memo('healthz', () => {
      const { summary: s, at } = view;
      const listed = s.listed
        .slice(0, HEALTH_LISTED)
        .map((n) =>
          describeNode(
            n,
            at,
            this.config.healthExposeKeys ? n.nodeId : fingerprint(n.nodeId),
            HEALTH_MODELS,
          ),
        );
      const known = s.legacy + s.v1;
      return {
        knownServers: known,
        registeredServers: listed,
        ...(known > listed.length ? { registeredServersListed: listed.length } : {}),
        ...(s.fallback > 0 ? { demoNodes: s.fallback } : {}),
      };
    });
  }
}
