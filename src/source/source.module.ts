import { Module } from '@nestjs/common';
import { RateLimitModule } from '../edge/rate-limit.module';
import { MetricsModule } from '../metrics/metrics.module';
import { RegistryModule } from '../registry/registry.module';
import { StateModule } from '../state/state.module';
import { LegacySourceController, V1SourceController } from './source.controller';
import { SourceService } from './source.service';

@Module({
  imports: [StateModule, MetricsModule, RegistryModule, RateLimitModule],
  controllers: [V1SourceController, LegacySourceController],
  providers: [SourceService],
})
export class SourceModule {}
