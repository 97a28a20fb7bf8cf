// The API server's switch, for the app's Settings and for `serve --api`: start it, stop it, say where it listens
// and with which key. The desktop app remembers the switch and the port (settings table) and keeps the key with
// safeStorage (the key store); `serve` passes its flags and keeps the key in memory. Nothing here knows Electron.
import { randomBytes } from "node:crypto";
import type { ApiServerStatus } from "../../contract.js";
import type { Repositories } from "../../store/repositories.js";
import type { TokenStore } from "../../library/token-store.js";
import { DEFAULT_API_PORT, startApiServer, type RunningApiServer } from "./http.js";
import type { OpenAiService } from "./service.js";

const ENABLED_KEY = "api.enabled";
const PORT_KEY = "api.port";

export function newApiKey(): string {
  return "sk-moe-" + randomBytes(24).toString("base64url");
}

export class ApiServerControl {
  private running: RunningApiServer | null = null;
  private error: string | null = null;
  private busy: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly service: OpenAiService,
    private readonly repos: Repositories,
    private readonly keys: TokenStore,
    private readonly log?: (line: string) => void,
  ) {}

  status(): ApiServerStatus {
    return {
      running: this.running !== null,
      baseUrl: this.running?.baseUrl ?? null,
      host: this.running?.host ?? "127.0.0.1",
      port: this.running?.port ?? this.repos.settings.get<number>(PORT_KEY) ?? DEFAULT_API_PORT,
      key: this.keys.get(),
      keyStorage: this.keys.kind,
      error: this.error,
    };
  }

  /** Start where the app left it: the switch was on when it quit. */
  async restore(): Promise<void> {
    if (this.repos.settings.get<boolean>(ENABLED_KEY) === true) await this.set({ enabled: true });
  }

  /**
   * The Settings switch: on (port, a new key if asked or none yet) or off, remembered for the next start. A port in
   * use is reported in `error`, the switch left off.
   */
  set(req: { enabled: boolean; port?: number; newKey?: boolean }): Promise<ApiServerStatus> {
    const next = this.busy.then(async () => {
      if (req.port !== undefined) this.repos.settings.set(PORT_KEY, req.port);
      if (req.newKey || (req.enabled && !this.keys.get())) this.keys.set(newApiKey());
      await this.stop();
      this.repos.settings.set(ENABLED_KEY, req.enabled);
      if (req.enabled) await this.start({ port: this.repos.settings.get<number>(PORT_KEY) ?? DEFAULT_API_PORT, key: this.keys.get() }).catch(() => undefined); // the reason is in status().error
      return this.status();
    });
    this.busy = next.catch(() => undefined);
    return next;
  }

  /** `serve --api`: these flags, nothing remembered. host other than 127.0.0.1 needs a key (startApiServer says so). */
  async start(opts: { host?: string; port: number; key: string | null }): Promise<RunningApiServer> {
    await this.stop();
    this.error = null;
    if (opts.key) this.keys.set(opts.key);
    try {
      this.running = await startApiServer({ service: this.service, port: opts.port, key: opts.key, ...(opts.host ? { host: opts.host } : {}), ...(this.log ? { log: this.log } : {}) });
      return this.running;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      this.error = code === "EADDRINUSE" ? `port ${opts.port} is in use; choose another` : e instanceof Error ? e.message : String(e);
      if (code === "EADDRINUSE") this.repos.settings.set(ENABLED_KEY, false);
      throw Object.assign(new Error(this.error), { code });
    }
  }

  async stop(): Promise<void> {
    const r = this.running;
    this.running = null;
    await r?.close();
  }
}
