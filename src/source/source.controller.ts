import { Body, Controller, HttpCode, Post, UseGuards } from '@nestjs/common';
import { BodyOf } from '../common/body.pipe';
import { TextErrors } from '../edge/error-style.decorator';
import { LegacyGateGuard } from '../common/legacy-gate.guard';
import { ControlRateLimit, RateLimitGuard } from '../edge/rate-limit.guard';
import { CallerOrigin } from '../registry/node-address';
import { NodeTokenGuard } from '../registry/node-token.guard';
import type { NodeOrigin } from '../state/state.types';
import { ProgressDto, ResponsesDto, SourceDto, StreamSourceDto } from './source.dto';
import { SourceService } from './source.service';

/** Legacy answers: `/source` (gated) and `/stream/source` (not gated, as upstream). */
@Controller()
@TextErrors()
export class LegacySourceController {
  constructor(private readonly source: SourceService) {}

  @Post('source')
  @HttpCode(200)
  @UseGuards(LegacyGateGuard, NodeTokenGuard, RateLimitGuard)
  @ControlRateLimit('response', 'client_public_key')
  answer(@Body(new BodyOf(SourceDto)) dto: SourceDto): Promise<object> {
    return this.source.legacySource(dto);
  }

  @Post('stream/source')
  @HttpCode(200)
  @UseGuards(NodeTokenGuard, RateLimitGuard)
  @ControlRateLimit('progress', 'client_public_key')
  chunk(@Body(new BodyOf(StreamSourceDto)) dto: StreamSourceDto): Promise<object> {
    return this.source.streamChunk(dto);
  }
}

/** API v1 answers and progress (spec §4.4.7, §4.4.10). */
@Controller('api/v1/relay')
@UseGuards(NodeTokenGuard, RateLimitGuard)
export class V1SourceController {
  constructor(private readonly source: SourceService) {}

  @Post('responses')
  @HttpCode(200)
  @ControlRateLimit('response', 'client_public_key')
  answer(
    @Body(new BodyOf(ResponsesDto)) dto: ResponsesDto,
    @CallerOrigin() origin: NodeOrigin,
  ): Promise<object> {
    return this.source.responses(dto, origin.owner);
  }

  @Post('progress')
  @HttpCode(202)
  @ControlRateLimit('progress')
  progress(@Body(new BodyOf(ProgressDto)) dto: ProgressDto): Promise<object> {
    return this.source.progress(dto);
  }
}
