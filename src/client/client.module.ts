import { Module } from '@nestjs/common';
import { ClientLifecycleModule } from '../client-lifecycle/client-lifecycle.module';
import { RateLimitModule } from '../edge/rate-limit.module';
import { MetricsModule } from '../metrics/metrics.module';
import { RegistryModule } from '../registry/registry.module';
import { StateModule } from '../state/state.module';
import { LegacyClientController, V1ClientController } from './client.controller';
import { ClientService } from './client.service';
import { DiscoveryController, RelayApiStubController } from './discovery.controller';
import { DiscoveryService } from './discovery.service';

@Module({
  imports: [StateModule, MetricsModule, RegistryModule, ClientLifecycleModule, RateLimitModule],
  controllers: [
    V1ClientController,
    LegacyClientController,
    DiscoveryController,
    RelayApiStubController,
  ],
  providers: [ClientService, DiscoveryService],
  exports: [DiscoveryService],
})
export class ClientModule {}
