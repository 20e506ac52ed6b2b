import { Module } from '@nestjs/common';
import { LifecycleModule } from '../lifecycle/lifecycle.module';
import { RegistryModule } from '../registry/registry.module';
import { DemoNodeService } from './demo-node.service';

/** The built-in demo compute node (`--use_mock_llm`): idle unless the configuration turns it on. */
@Module({
  imports: [LifecycleModule, RegistryModule],
  providers: [DemoNodeService],
})
export class DemoModule {}
