import { Body, Controller, Get, Headers, HttpCode, Param, Post, UseGuards } from '@nestjs/common';
import { ClientGone, type CallerWatch } from '../common/client-gone.decorator';
import { OpenAiErrors } from '../common/error-style.decorator';
import { EndpointRateLimit, RateLimitGuard } from '../common/rate-limit.guard';
import { Reply, type WireReply } from '../common/wire-response';
import { CatalogService } from './catalog.service';
import { ChatService } from './chat.service';

/**
 * The OpenAI-compatible API v1 (gateway.md §3) on `/api/v1` and its `/v1` alias: one handler per
 * route, one rate-limit bucket per path (as the existing relay's per-endpoint buckets).
 */
@Controller()
@OpenAiErrors()
@UseGuards(RateLimitGuard)
export class GatewayV1Controller {
  constructor(
    private readonly catalog: CatalogService,
    private readonly chat: ChatService,
  ) {}

  @Get(['api/v1/models', 'v1/models'])
  @EndpointRateLimit()
  models(): Promise<object> {
    return this.catalog.list('v1');
  }

  @Get(['api/v1/models/:id', 'v1/models/:id'])
  @EndpointRateLimit()
  model(@Param('id') id: string): Promise<object> {
    return this.catalog.one('v1', id);
  }

  @Get(['api/v1/public-key', 'v1/public-key'])
  @EndpointRateLimit()
  publicKey(): Promise<object> {
    return this.catalog.publicKey();
  }

  @Post(['api/v1/public-key/rotate', 'v1/public-key/rotate'])
  @HttpCode(200)
  @EndpointRateLimit()
  rotate(
    @Headers('x-token-place-operator') operator: string | undefined,
    @Headers('authorization') authorization: string | undefined,
  ): Promise<object> {
    return this.catalog.rotate(operator, authorization);
  }

  @Get(['api/v1/health', 'v1/health'])
  @EndpointRateLimit()
  health(): object {
    return this.catalog.health('v1');
  }

  @Post(['api/v1/chat/completions', 'v1/chat/completions'])
  @EndpointRateLimit()
  async chatCompletions(
    @Body() body: unknown,
    @ClientGone() caller: CallerWatch,
    @Reply() reply: WireReply,
  ): Promise<unknown> {
    return reply.send(await this.chat.v1Chat(body, caller));
  }

  @Post(['api/v1/completions', 'v1/completions'])
  @EndpointRateLimit()
  async completions(
    @Body() body: unknown,
    @ClientGone() caller: CallerWatch,
    @Reply() reply: WireReply,
  ): Promise<unknown> {
    return reply.send(await this.chat.completion('v1', body, caller));
  }

  @Post(['api/v1/images/generations', 'v1/images/generations'])
  @EndpointRateLimit()
  images(@Body() body: unknown): never {
    return this.catalog.images(body);
  }

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

/** API v2 (gateway.md §6) on `/api/v2` and `/v2`: the same nodes, SSE when `stream` is set. */
@Controller()
@OpenAiErrors()
@UseGuards(RateLimitGuard)
export class GatewayV2Controller {
  constructor(
    private readonly catalog: CatalogService,
    private readonly chat: ChatService,
  ) {}

  @Get(['api/v2/models', 'v2/models'])
  @EndpointRateLimit()
  models(): Promise<object> {
    return this.catalog.list('v2');
  }

  @Get(['api/v2/models/:id', 'v2/models/:id'])
  @EndpointRateLimit()
  model(@Param('id') id: string): Promise<object> {
    return this.catalog.one('v2', id);
  }

  @Get(['api/v2/public-key', 'v2/public-key'])
  @EndpointRateLimit()
  publicKey(): Promise<object> {
    return this.catalog.publicKey();
  }

  @Post(['api/v2/public-key/rotate', 'v2/public-key/rotate'])
  @HttpCode(200)
  @EndpointRateLimit()
  rotate(
    @Headers('x-token-place-operator') operator: string | undefined,
    @Headers('authorization') authorization: string | undefined,
  ): Promise<object> {
    return this.catalog.rotate(operator, authorization);
  }

  @Get(['api/v2/health', 'v2/health'])
  @EndpointRateLimit()
  health(): object {
    return this.catalog.health('v2');
  }

  @Post(['api/v2/chat/completions', 'v2/chat/completions'])
  @EndpointRateLimit({ stream: true })
  async chatCompletions(
    @Body() body: unknown,
    @ClientGone() caller: CallerWatch,
    @Reply() reply: WireReply,
  ): Promise<unknown> {
    return reply.send(await this.chat.v2Chat(body, caller));
  }

  @Post(['api/v2/completions', 'v2/completions'])
  @EndpointRateLimit()
  async completions(
    @Body() body: unknown,
    @ClientGone() caller: CallerWatch,
    @Reply() reply: WireReply,
  ): Promise<unknown> {
    return reply.send(await this.chat.completion('v2', body, caller));
  }
}
