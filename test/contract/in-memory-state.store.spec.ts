import { InMemoryStateStore } from '../../src/state/in-memory-state.store';
import { runStateStoreContract } from './state-store.contract';

runStateStoreContract(InMemoryStateStore.name, (limits, clock) =>
  Promise.resolve({ store: new InMemoryStateStore(limits, clock) }),
);
