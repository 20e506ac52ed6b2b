import { Module } from '@nestjs/common';
import { MetricsModule } from '../metrics/metrics.module';
import { StateModule } from '../state/state.module';
import { NodeTokenGuard } from './node-token.guard';
import { OperatorService } from './operator.service';
import { RegistryService } from './registry.service';
import { SweepService } from './sweep.service';
import { TokenService } from './token.service';

@Module({
  imports: [StateModule, MetricsModule],
  providers: [RegistryService, TokenService, NodeTokenGuard, SweepService, OperatorService],
  exports: [RegistryService, TokenService, NodeTokenGuard, OperatorService],
})
export class RegistryModule {}
