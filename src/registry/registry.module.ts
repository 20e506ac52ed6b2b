import { Module } from '@nestjs/common';
import { MetricsModule } from '../metrics/metrics.module';
import { StateModule } from '../state/state.module';
import { NodeTokenGuard } from './node-token.guard';
import { OperatorService } from './operator.service';
import { RegistryViewService } from './registry-view.service';
import { RegistryService } from './registry.service';
import { SweepService } from './sweep.service';
import { TokenService } from './token.service';

@Module({
  imports: [StateModule, MetricsModule],
  providers: [
    RegistryService,
    RegistryViewService,
    TokenService,
    NodeTokenGuard,
    SweepService,
    OperatorService,
  ],
  exports: [RegistryService, RegistryViewService, TokenService, NodeTokenGuard, OperatorService],
})
export class RegistryModule {}
