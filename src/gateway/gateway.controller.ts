import { Body, Controller, Get, Headers, HttpCode, Param, Post } from '@nestjs/common';
import { ClientGone, type CallerWatch } from '../common/client-gone.decorator';
import { Cors, ErrorDialect } from '../common/route-facts';
import { EndpointRateLimit } from '../edge/rate-limit.guard';
import { Reply, type WireReply } from '../common/wire-response';
import { CatalogService } from './catalog.service';
import { ChatService } from './chat.service';
import type { ApiVersion } from './request.validation';

/** Browsers may call the gateway on the API v1 prefixes only (gateway.md §1). */
const V1_PREFIXES = ['/api/v1', '/v1'];

/**
 * The routes API v1 and v2 share (models, public key, rotate, health, completions), for a
 * controller mounted on both of a version's prefixes. Each path is its own rate-limit bucket, as
 * the existing relay's per-endpoint buckets.
 */
function sharedRoutes(api: ApiVersion) {
  @ErrorDialect('openai')
  @Cors('public', { under: V1_PREFIXES })
  class SharedRoutes {
    constructor(
      readonly catalog: CatalogService,
      readonly chat: ChatService,
    ) {}

    @Get('models')
    @Cors('public', { under: V1_PREFIXES, subPaths: true })
    @EndpointRateLimit()
    models(): Promise<object> {
      return this.catalog.list(api);
    }

    @Get('models/:id')
    @EndpointRateLimit()
    model(@Param('id') id: string): Promise<object> {
      return this.catalog.one(api, id);
    }

    @Get('public-key')
    @EndpointRateLimit()
    publicKey(): Promise<object> {
      return this.catalog.publicKey();
    }

    @Post('public-key/rotate')
    @HttpCode(200)
    @Cors('none')
    @EndpointRateLimit()
    rotate(
      @Headers('x-token-place-operator') operator: string | undefined,
      @Headers('authorization') authorization: string | undefined,
    ): Promise<object> {
      return this.catalog.rotate(operator, authorization);
    }

    @Get('health')
    @EndpointRateLimit()
    health(@Reply() reply: WireReply): unknown {
      return reply.send(this.catalog.health(api));
    }

    @Post('completions')
    @EndpointRateLimit()
    completions(
      @Body() body: unknown,
      @ClientGone() caller: CallerWatch,
      @Reply() reply: WireReply,
    ): Promise<unknown> {
      return this.chat.completion(api, body, caller).then((r) => reply.send(r));
    }
  }
  return SharedRoutes;
}

/** The OpenAI-compatible API v1 (gateway.md §3) on `/api/v1` and its `/v1` alias. */
@Controller(['api/v1', 'v1'])
export class GatewayV1Controller extends sharedRoutes('v1') {
  @Post('chat/completions')
  @EndpointRateLimit()
  chatCompletions(
    @Body() body: unknown,
    @ClientGone() caller: CallerWatch,
    @Reply() reply: WireReply,
  ): Promise<unknown> {
    // A callback, not an async frame: a held chat keeps less alive while it waits.
    return this.chat.v1Chat(body, caller).then((r) => reply.send(r));
  }

  @Post('images/generations')
  @EndpointRateLimit()
  images(@Body() body: unknown): never {
    return this.catalog.images(body);
  }
}

/** API v2 (gateway.md §6) on `/api/v2` and `/v2`: the same nodes, SSE when `stream` is set. */
@Controller(['api/v2', 'v2'])
export class GatewayV2Controller extends sharedRoutes('v2') {
  @Post('chat/completions')
  @EndpointRateLimit({ stream: true })
  chatCompletions(
    @Body() body: unknown,
    @ClientGone() caller: CallerWatch,
    @Reply() reply: WireReply,
  ): Promise<unknown> {
    return this.chat.v2Chat(body, caller).then((r) => reply.send(r));
  }
}

/** Directory routes the existing relay serves under `/api/v1` (some also `/api/v2`) only. */
@Controller()
@ErrorDialect('openai')
@Cors('public', { under: ['/api/v1'] })
export class GatewayDirectoryController {
  constructor(private readonly catalog: CatalogService) {}

  @Get(['api/v1/server-providers', 'api/v2/server-providers'])
  @EndpointRateLimit()
  serverProviders(): object {
    return this.catalog.providers();
  }

  @Get(['api/v1/community/providers', 'api/v2/community/providers'])
  @EndpointRateLimit()
  communityProviders(): object {
    return this.catalog.providers();
  }

  @Get(['api/v1/community/leaderboard', 'api/v1/community/contributions/summary'])
  @EndpointRateLimit()
  communityReads(): never {
    return this.catalog.community();
  }

  @Post('api/v1/community/contributions')
  @EndpointRateLimit()
  contributions(): never {
    return this.catalog.community();
  }
}
