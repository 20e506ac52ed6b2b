import { Body, Controller, HttpCode, Post, UseGuards } from '@nestjs/common';
import { BodyOf } from '../common/body.pipe';
import { ClientGone, type CallerWatch } from '../common/client-gone.decorator';
import { TextErrors } from '../edge/error-style.decorator';
import { LegacyGateGuard } from '../common/legacy-gate.guard';
import { ControlRateLimit, RateLimitGuard } from '../edge/rate-limit.guard';
import { CallerOrigin } from '../registry/node-address';
import { NodeTokenGuard } from '../registry/node-token.guard';
import { RegistryService } from '../registry/registry.service';
import type { NodeOrigin } from '../state/state.types';
import { SinkDto, UnregisterDto } from './sink.dto';
import { SinkService, type LegacySinkBody } from './sink.service';

/** Legacy compute-node routes: heartbeat + work (`/sink`) and leaving (`/unregister`). */
@Controller()
@TextErrors()
export class LegacySinkController {
  constructor(
    private readonly sink: SinkService,
    private readonly registry: RegistryService,
  ) {}

  @Post('sink')
  @HttpCode(200)
  @UseGuards(LegacyGateGuard, NodeTokenGuard, RateLimitGuard)
  @ControlRateLimit('poll')
  take(
    @Body(new BodyOf(SinkDto)) dto: SinkDto,
    @CallerOrigin() origin: NodeOrigin,
    @ClientGone() gone: CallerWatch,
  ): Promise<LegacySinkBody> {
    return this.sink.sink(dto.server_public_key, dto.max_batch_size ?? 1, origin, gone);
  }

  /** Not gated: today's nodes fall back to it when `/servers/unregister` is missing. */
  @Post('unregister')
  @HttpCode(200)
  @UseGuards(NodeTokenGuard, RateLimitGuard)
  @ControlRateLimit('unregister')
  async unregister(@Body(new BodyOf(UnregisterDto)) dto: UnregisterDto): Promise<object> {
    const removed = await this.registry.unregister(
      dto.server_public_key,
      dto.control_credential ?? null,
    );
    return { message: 'Server unregistered', removed };
  }
}
