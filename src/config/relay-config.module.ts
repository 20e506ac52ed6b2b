import { Global, Module, type DynamicModule } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { RelayConfig } from './relay-config';

/**
 * The validated {@link RelayConfig}, global (every module reads its slice), held by @nestjs/config's
 * ConfigService, which never reads process.env or .env files here: main.ts and the test helper
 * build it with RelayConfig.load. The bottom of the module graph: it imports nothing of the relay.
 */
@Global()
@Module({})
export class RelayConfigModule {
  static forRoot(config: RelayConfig): DynamicModule {
    return {
      module: RelayConfigModule,
      imports: [
        ConfigModule.forRoot({
          ignoreEnvFile: true,
          skipProcessEnv: true,
          validatePredefined: false,
          load: [() => ({ relay: config })],
        }),
      ],
      providers: [
        {
          provide: RelayConfig,
          inject: [ConfigService],
          useFactory: (service: ConfigService): RelayConfig =>
            service.getOrThrow<RelayConfig>('relay'),
        },
      ],
      exports: [RelayConfig],
    };
  }
}
