import { Controller, Get, Headers, UseInterceptors } from '@nestjs/common';
import { AccessLog, Cors, ErrorDialect, OwnMetricsLabel } from '../common/route-facts';
import { WireResponse, WireResponseInterceptor } from '../common/wire-response';
import { MetricsService } from './metrics.service';

/** `/metrics` (spec §5.5): scrapes are not logged per hit. */
@Controller()
@ErrorDialect('object')
@Cors('none')
@OwnMetricsLabel()
@AccessLog('quiet')
@UseInterceptors(WireResponseInterceptor)
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  @Get('metrics')
  scrape(@Headers('authorization') authorization: string | undefined): Promise<WireResponse> {
    return this.metrics.scrape(authorization);
  }
}
