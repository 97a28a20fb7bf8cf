// The app's services composed: one database in the data folder, one engine worker, and a handler for every call
// in the contract. The same composition runs inside Electron (IPC transport) and in `moe-studio serve` (WebSocket);
// transports never call handlers directly, only electron/rpc.ts's dispatcher over `handlers`.
//
//   const services = await createAppServices({ dataDir, emit, transport: "ws" });
//   const dispatch = createDispatcher(services.handlers);
//   ...
//   services.enginePid()   // the engine worker's pid (tests kill it to simulate a crash); undefined if none runs
//   await services.dispose();
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AppInfo } from "../contract.js";
import { EngineHost, type WorkerSpawner } from "../engine/host.js";
import type { AsyncHandlers } from "../rpc.js";
import { openDatabase, type Db } from "../store/db.js";
import { repositories, type Repositories } from "../store/repositories.js";
import { ChatService } from "./chat.js";
import { ConversationService } from "./conversations.js";
import { ModelService, type Emit } from "./models.js";
import { databaseFile } from "./paths.js";
import { PresetService } from "./presets.js";
import { QuantizeService } from "./quantize.js";
import { SettingsService } from "./settings.js";

export type { Emit } from "./models.js";

export interface AppServicesOptions {
  /** The app's data folder (Electron: app.getPath("userData"); elsewhere defaultDataDir()). */
  dataDir: string;
  /** Pushes an event to the renderer(s). */
  emit: Emit;
  transport: "ipc" | "ws";
  /** How to start the engine worker (Electron: utilityProcess); default child_process.fork. */
  spawnWorker?: WorkerSpawner;
  /** A native folder dialog (Electron only); without it models.pickFolder answers { dir: null }. */
  pickFolder?: () => Promise<string | null>;
  /** A model folder to open at start (its errors show in engine.status, they do not stop the app). */
  initialModel?: string;
  /** Engine threads (default: the engine's choice). */
  threads?: number;
  presetsDir?: string;
  systemLocale?: string;
  /** The compiled engine worker module (default: next to host.js / out/electron/engine/worker.js). */
  workerPath?: string;
}

export interface AppServices {
  /** One handler per contract call; transports reach them only through createDispatcher(handlers). */
  handlers: AsyncHandlers;
  /** The engine worker's pid, or undefined when none runs. Not part of the contract: for tests and diagnostics. */
  enginePid(): number | undefined;
  /** Resolves once the initial model (if any) has loaded or failed. */
  initialLoad: Promise<void>;
  repos: Repositories;
  db: Db;
  dispose(): Promise<void>;
}

function appVersion(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const p of [join(here, "../../package.json"), join(here, "../../../package.json")]) {
    if (!existsSync(p)) continue;
    try {
      const v = (JSON.parse(readFileSync(p, "utf8")) as { name?: string; version?: string });
      if (v.name === "moe-studio" && v.version) return v.version;
    } catch {
      // keep looking
    }
  }
  return "0.0.0";
}

export async function createAppServices(opts: AppServicesOptions): Promise<AppServices> {
  const db = openDatabase(databaseFile(opts.dataDir));
  const repos = repositories(db);
  repos.messages.markInterrupted("The app closed while this reply was being written.");
  const host = new EngineHost({
    ...(opts.spawnWorker ? { spawnWorker: opts.spawnWorker } : {}),
    ...(opts.workerPath ? { workerPath: opts.workerPath } : {}),
  });
  const conversations = new ConversationService(repos);
  const presets = new PresetService(repos, opts.presetsDir);
  const settings = new SettingsService(repos);
  const models = new ModelService(host, repos, opts.emit, opts.threads ? { threads: opts.threads } : {});
  const chat = new ChatService(repos, conversations, models, opts.emit);
  const quantize = new QuantizeService(opts.dataDir, opts.emit);

  let info: Promise<Pick<AppInfo, "simd" | "cuda">> | null = null;
  const engineInfo = () =>
    (info ??= host.systemInfo().then(
      (s) => ({ simd: s.simd, cuda: s.cuda }),
      (e) => {
        info = null; // ask again next time
        return { simd: "unknown", cuda: { compiled: false, devices: 0, error: e instanceof Error ? e.message : String(e) } };
      },
    ));
  const version = appVersion();

  const handlers: AsyncHandlers = {
    "app.info": async () => ({
      version,
      platform: process.platform,
      transport: opts.transport,
      canPickFolder: !!opts.pickFolder,
      systemLocale: opts.systemLocale ?? Intl.DateTimeFormat().resolvedOptions().locale ?? "en-US",
      ...(await engineInfo()),
    }),
    "settings.get": async () => settings.get(),
    "settings.set": async (i) => settings.set(i),

    "conversations.list": async (i) => conversations.list(i),
    "conversations.get": async (i) => conversations.get(i),
    "conversations.create": async (i) => conversations.create(i, models.current()?.dir ?? null),
    "conversations.rename": async (i) => conversations.rename(i),
    "conversations.update": async (i) => conversations.update(i),
    "conversations.delete": async (i) => {
      await chat.stop({ conversationId: i.id });
      return conversations.delete(i);
    },

    "chat.send": async (i) => chat.send(i),
    "chat.stop": async (i) => chat.stop(i),
    "chat.regenerate": async (i) => chat.regenerate(i),
    "chat.edit": async (i) => chat.edit(i),

    "presets.list": async () => presets.list(),
    "presets.save": async (i) => presets.save(i),
    "presets.delete": async (i) => presets.delete(i),

    "models.open": async (i) => models.open(i.dir),
    "models.recent": async () => models.recent(),
    "models.forget": async (i) => models.forget(i.dir),
    "models.status": async () => models.status(),
    "models.pickFolder": async () => ({ dir: opts.pickFolder ? await opts.pickFolder() : null }),

    // ---------- quantize ----------
    "quantize.start": async (i) => quantize.start(i),
    "quantize.cancel": async (i) => quantize.cancel(i.id),
    "quantize.list": async () => quantize.list(),
    "quantize.folder": async () => ({ dir: quantize.folder() }),
  };

  const initialLoad = opts.initialModel ? models.open(opts.initialModel).then(() => undefined, () => undefined) : Promise.resolve();

  let disposed: Promise<void> | null = null;
  return {
    handlers,
    enginePid: () => host.pid,
    initialLoad,
    repos,
    db,
    dispose: () =>
      (disposed ??= (async () => {
        await chat.dispose().catch(() => undefined);
        quantize.dispose();
        const queued = models.dispose();
        host.shutdown();
        await queued.catch(() => undefined);
        db.close();
      })()),
  };
}
