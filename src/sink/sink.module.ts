import { Module } from '@nestjs/common';
import { RateLimitModule } from '../edge/rate-limit.module';
import { LifecycleModule } from '../lifecycle/lifecycle.module';
import { MetricsModule } from '../metrics/metrics.module';
import { RegistryModule } from '../registry/registry.module';
import { StateModule } from '../state/state.module';
import { LegacySinkController } from './legacy-sink.controller';
import { NodeController, OperatorController } from './node.controller';
import { SinkService } from './sink.service';

@Module({
  imports: [StateModule, MetricsModule, RegistryModule, LifecycleModule, RateLimitModule],
  controllers: [NodeController, LegacySinkController, OperatorController],
  providers: [SinkService],
})
export class SinkModule {}
