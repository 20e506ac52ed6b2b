import { Controller, Get, Header, Headers, HttpCode, Post, Query } from '@nestjs/common';
import { PublicRateLimit } from '../edge/rate-limit.guard';
import { RelayError } from '../common/relay-error';
import { AccessLog, Cors, ErrorDialect, OwnMetricsLabel } from '../common/route-facts';
import { CallerOrigin } from '../registry/node-address';
import type { NodeOrigin } from '../state/state.types';
import { DiscoveryService } from './discovery.service';

/** Public read-only routes: diagnostics, the configured upstream pool, release metadata. */
@Controller()
@ErrorDialect('object')
@Cors('none')
export class DiscoveryController {
  constructor(private readonly discovery: DiscoveryService) {}

  /** Sent as the JSON text rendered once for every reader (`?summary=1`: the counts alone). */
  @Get('relay/diagnostics')
  @OwnMetricsLabel()
  @AccessLog('debug') // polled by every open page, once a second per tab
  @Header('Cache-Control', 'no-store')
  @Header('Content-Type', 'application/json; charset=utf-8')
  diagnostics(
    @Query('summary') summary: unknown,
    @CallerOrigin() origin: NodeOrigin,
  ): Promise<string> {
    const asked = typeof summary === 'string' ? summary.trim().toLowerCase() : '';
    return this.discovery.diagnostics(['1', 'true', 'yes', 'on'].includes(asked), origin);
  }

  @Get(['api/v1/relay/server-nodes', 'v1/relay/server-nodes'])
  @PublicRateLimit('server_nodes')
  serverNodes(): object {
    return this.discovery.serverNodes();
  }

  @Get(['api/v1/meta', 'api/v1/version'])
  @Header('Cache-Control', 'no-store')
  meta(@Headers('host') host: string | undefined): object {
    return this.discovery.meta(host);
  }
}

const STUB = (what: string): RelayError =>
  new RelayError(
    503,
    `Distributed relay API v1 ${what} are disabled pending an end-to-end encrypted relay design.`,
    'distributed_api_v1_relay_disabled',
    { type: 'service_unavailable_error' },
  );

/** `/relay/api/v1/*`: fail-closed stubs (spec §4.4.13). */
@Controller('relay/api/v1')
@ErrorDialect('object')
@Cors('none')
export class RelayApiStubController {
  @Post('chat/completions')
  @HttpCode(503)
  @PublicRateLimit('relay_api_v1_chat')
  completions(): never {
    throw STUB('chat completions');
  }

  @Post('source')
  @HttpCode(503)
  @PublicRateLimit('relay_api_v1_source')
  source(): never {
    throw STUB('source dispatch');
  }
}
