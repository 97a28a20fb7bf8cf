// App settings (language, theme, the model library's source, the KV cache models load with), one JSON value per key
// in the settings table.
import { Settings } from "../contract.js";
import type { HandlerInput } from "../rpc.js";
import type { Repositories } from "../store/repositories.js";
import { APP_KV_CACHE } from "../engine/load-options.js";

export const DEFAULT_SETTINGS: Settings = { language: "system", theme: "system", hubSource: "hf", hubEndpoint: "", modelsDir: "", kvCache: APP_KV_CACHE };

export class SettingsService {
  constructor(private readonly repos: Repositories) {}

  get(): Settings {
    const out: Record<string, unknown> = { ...DEFAULT_SETTINGS };
    for (const key of Object.keys(DEFAULT_SETTINGS) as (keyof Settings)[]) {
      const v = this.repos.settings.get<unknown>(key);
      const field = Settings.shape[key].safeParse(v);
      if (field.success) out[key] = field.data;
    }
    return out as Settings;
  }

  set(input: HandlerInput<"settings.set">): Settings {
    this.repos.db.transaction(() => {
      for (const [k, v] of Object.entries(input)) if (v !== undefined) this.repos.settings.set(k, v);
    })();
    return this.get();
  }
}
