import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { BodyOf } from '../common/body.pipe';
import { Errors } from '../common/relay-error';
import { Cors, ErrorDialect, JsonBody, OwnMetricsLabel } from '../common/route-facts';
import { ControlRateLimit } from '../edge/rate-limit.guard';
import { CallerOrigin } from '../registry/node-address';
import type { NodeOrigin } from '../state/state.types';
import { ProgressDto, ResponsesDto, SourceDto, StreamSourceDto } from './source.dto';
import { SourceService } from './source.service';

/** Legacy answers: `/source` (gated) and `/stream/source` (not gated, as upstream). */
@Controller()
@ErrorDialect('text')
@Cors('none')
export class LegacySourceController {
  constructor(private readonly source: SourceService) {}

  @Post('source')
  @HttpCode(200)
  @ControlRateLimit('response', { identity: 'client_public_key', legacyGate: true })
  answer(@Body(new BodyOf(SourceDto)) dto: SourceDto): Promise<object> {
    return this.source.legacySource(dto);
  }

  @Post('stream/source')
  @HttpCode(200)
  @ControlRateLimit('progress', { identity: 'client_public_key' })
  chunk(@Body(new BodyOf(StreamSourceDto)) dto: StreamSourceDto): Promise<object> {
    return this.source.streamChunk(dto);
  }
}

/** API v1 answers and progress (spec §4.4.7, §4.4.10). */
@Controller('api/v1/relay')
@ErrorDialect('object')
@Cors('none')
@OwnMetricsLabel()
export class V1SourceController {
  constructor(private readonly source: SourceService) {}

  @Post('responses')
  @HttpCode(200)
  @ControlRateLimit('response', { identity: 'client_public_key' })
  answer(
    @Body(new BodyOf(ResponsesDto)) dto: ResponsesDto,
    @CallerOrigin() origin: NodeOrigin,
  ): Promise<object> {
    return this.source.responses(dto, origin.owner);
  }

  /** Capped at 16 KiB before parsing and before auth (spec §2.4, §4.4.10). */
  @Post('progress')
  @HttpCode(202)
  @JsonBody({ limit: 16384, tooLarge: () => Errors.progressTooLarge() })
  @ControlRateLimit('progress')
  progress(@Body(new BodyOf(ProgressDto)) dto: ProgressDto): Promise<object> {
    return this.source.progress(dto);
  }
}
