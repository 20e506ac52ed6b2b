import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { BodyOf } from '../common/body.pipe';
import { ClientGone, type CallerWatch } from '../common/client-gone.decorator';
import { Cors, ErrorDialect } from '../common/route-facts';
import { ControlRateLimit } from '../edge/rate-limit.guard';
import { CallerOrigin } from '../registry/node-address';
import type { NodeOrigin } from '../state/state.types';
import { SinkDto, UnregisterDto } from './sink.dto';
import { SinkService, type LegacySinkBody } from './sink.service';

/** Legacy compute-node routes: heartbeat + work (`/sink`) and leaving (`/unregister`). */
@Controller()
@ErrorDialect('text')
@Cors('none')
export class LegacySinkController {
  constructor(private readonly sink: SinkService) {}

  @Post('sink')
  @HttpCode(200)
  @ControlRateLimit('poll', { legacyGate: true })
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
  @ControlRateLimit('unregister')
  unregister(@Body(new BodyOf(UnregisterDto)) dto: UnregisterDto): Promise<object> {
    return this.sink.unregister(dto);
  }
}
