import {
  Body,
  Controller,
  Get,
  Header,
  Headers,
  HttpCode,
  Post,
  Query,
  UseGuards,
} from '@nestjs/common';
import { BodyOf } from '../common/body.pipe';
import { ClientGone, type CallerWatch } from '../common/client-gone.decorator';
import { LegacyGateGuard } from '../common/legacy-gate.guard';
import { Cors, ErrorDialect, OwnMetricsLabel } from '../common/route-facts';
import { PublicRateLimit } from '../edge/rate-limit.guard';
import { Reply, type WireReply } from '../common/wire-response';
import { CancelDto, FaucetDto, LegacyRetrieveDto, RequestsDto, RetrieveDto } from './client.dto';
import { ClientService } from './client.service';

/** Parses RFC 7240 `Prefer: wait=N` (seconds); 0 when absent. */
export function preferWait(header: string | undefined): number {
  const m = /(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)/i.exec(header ?? '');
  return m ? Number(m[1]) : 0;
}

/** Legacy client routes (spec §3.3, §3.4, §3.7, §3.8). */
@Controller()
@ErrorDialect('object')
@Cors('none')
export class LegacyClientController {
  constructor(private readonly client: ClientService) {}

  @Get('next_server')
  @PublicRateLimit('next_server', { legacyGate: true })
  nextServer(): Promise<object> {
    return this.client.nextServer();
  }

  @Post('faucet')
  @HttpCode(200)
  @PublicRateLimit('faucet', { legacyGate: true })
  faucet(@Body(new BodyOf(FaucetDto)) dto: FaucetDto): Promise<object> {
    return this.client.faucet(dto);
  }

  @Post('retrieve')
  @HttpCode(200)
  @ErrorDialect('text')
  @UseGuards(LegacyGateGuard)
  retrieve(
    @Body(new BodyOf(LegacyRetrieveDto)) dto: LegacyRetrieveDto,
    @ClientGone() gone: CallerWatch,
  ): Promise<object> {
    return this.client.legacyRetrieve(dto, gone);
  }

  @Post('stream/retrieve')
  @HttpCode(200)
  @ErrorDialect('text')
  streamRetrieve(@Body(new BodyOf(LegacyRetrieveDto)) dto: LegacyRetrieveDto): Promise<object> {
    return this.client.streamRetrieve(dto);
  }
}

/** API v1 client routes (spec §4.4.5, §4.4.6, §4.4.8, §4.4.9). */
@Controller('api/v1/relay')
@ErrorDialect('object')
@Cors('public')
@OwnMetricsLabel()
export class V1ClientController {
  constructor(private readonly client: ClientService) {}

  @Get('servers/next')
  @Header('Cache-Control', 'no-store')
  next(@Query('model') model: unknown, @Query('context_tier') tier: unknown): Promise<object> {
    return this.client.next(model, tier);
  }

  @Post('requests')
  @HttpCode(200)
  @PublicRateLimit('requests')
  submit(@Body(new BodyOf(RequestsDto)) dto: RequestsDto): Promise<object> {
    return this.client.submit(dto);
  }

  @Post('requests/cancel')
  @HttpCode(200)
  @PublicRateLimit('cancel')
  cancel(@Body(new BodyOf(CancelDto)) dto: CancelDto): Promise<object> {
    return this.client.cancel(dto);
  }

  @Post('responses/retrieve')
  @HttpCode(200)
  @Header('Cache-Control', 'no-store')
  retrieve(
    @Body(new BodyOf(RetrieveDto)) dto: RetrieveDto,
    @Headers('prefer') prefer: string | undefined,
    @ClientGone() gone: CallerWatch,
    @Reply() reply: WireReply,
  ): Promise<unknown> {
    // A callback, not an async frame: a held retrieve keeps less alive while it waits.
    return this.client.retrieve(dto, preferWait(prefer), gone).then((r) => reply.send(r));
  }
}
