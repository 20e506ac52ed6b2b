import type { Clock } from '../common/clock';
import type { RelayConfig } from '../config/relay-config';
import type { StateStore } from './state-store';

/** Placeholder until the Redis store lands (issue 4). */
export class RedisStateStore {
  static connect(_config: RelayConfig, _clock: Clock): Promise<StateStore> {
    return Promise.reject(new Error('The redis state store is not available in this build'));
  }
}
