// Where the app keeps its data (the SQLite database). One folder for every way the app runs: Electron points its
// userData at defaultDataDir() before "ready" (main.ts), the CLI and `moe-studio serve` use it too, tests pass
// their own (--data DIR) or set MOE_STUDIO_DATA.
import { homedir } from "node:os";
import { join } from "node:path";

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env.MOE_STUDIO_DATA) return env.MOE_STUDIO_DATA;
  const home = env.HOME || homedir();
  if (platform === "darwin") return join(home, "Library", "Application Support", "MoE Studio");
  if (platform === "win32") return join(env.APPDATA || join(home, "AppData", "Roaming"), "MoE Studio");
  return join(env.XDG_CONFIG_HOME || join(home, ".config"), "moe-studio");
}

export function databaseFile(dataDir: string): string {
  return join(dataDir, "moe-studio.db");
}
