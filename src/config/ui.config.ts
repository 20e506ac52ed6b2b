import { BoolEnv } from './env-kinds';

/** The browser page at / (ui/). */
export class UiEnv {
  @BoolEnv('TOKENPLACE_RELAY_UI_ENABLED', 'Serve the browser UI at /')
  uiEnabled = true;
}

export interface UiSettings {
  readonly uiEnabled: boolean;
}
