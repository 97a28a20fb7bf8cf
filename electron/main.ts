// The Electron main process: one window showing the renderer (renderer/dist) from the app:// scheme, the
// contract's calls over IPC to the app services, their events back to the window. It does no heavy work itself:
// the engine runs in a utilityProcess (electron-worker.ts), so a crash there never takes the window down.
//
// Security: the renderer is a sandboxed page with context isolation and no Node (window-options.ts); every app
// file is served with a strict CSP; navigation, new windows, <webview>, and permission requests are refused;
// IPC is answered only for the app's own frames, and every call is validated against the contract by the
// dispatcher before a service sees it.
import { app, BrowserWindow, dialog, ipcMain, nativeTheme, protocol, session, shell, type IpcMainInvokeEvent, type WebContents } from "electron";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { IPC_CALL_CHANNEL, IPC_EVENT_CHANNEL, RpcError, type EventName, type WireMessage } from "./contract.js";
import { createDispatcher, toWireError } from "./rpc.js";
import { createAppServices } from "./services/app.js";
import { defaultDataDir } from "./services/paths.js";
import { utilityTextSpawner, utilityWorkerSpawner } from "./electron-worker.js";
import { safeTokenStore } from "./electron-token-store.js";
import { API_KEY_FILE, ENDPOINT_KEYS_FILE } from "./library/token-store.js";
import { readStatic } from "./server/static.js";
import { APP_HOST, APP_SCHEME, APP_START_URL, externalUrl, isAppUrl, securityHeaders, windowOptions } from "./window-options.js";

const here = dirname(fileURLToPath(import.meta.url)); // out/electron
const ROOT = resolve(here, "../..");
const STATIC_DIR = join(ROOT, "renderer", "dist");
const PRELOAD = join(here, "preload.cjs");

app.setName("MoE Studio");
// The same data folder as `moe-studio serve` and the CLI (defaultDataDir: ~/.config/moe-studio on Linux, or
// MOE_STUDIO_DATA), so the desktop app and the browser UI share one database of conversations. Electron's own
// default would be <appData>/MoE Studio, a second, empty history on Linux. Must be set before "ready".
app.setPath("userData", defaultDataDir());
app.enableSandbox();

// Before "ready": app:// behaves like https (secure context, fetch, relative URLs), so 'self' in the CSP means it.
protocol.registerSchemesAsPrivileged([
  { scheme: APP_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true, codeCache: true } },
]);

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  start();
}

function start() {
  let win: BrowserWindow | null = null;
  let services: Awaited<ReturnType<typeof createAppServices>> | null = null;
  let dispatch: ReturnType<typeof createDispatcher> | null = null;

  const emit = (name: EventName, payload: unknown) => {
    if (win && !win.isDestroyed() && !win.webContents.isDestroyed()) {
      win.webContents.send(IPC_EVENT_CHANNEL, { t: "event", name, payload } satisfies WireMessage);
    }
  };

  const pickFolder = async (): Promise<string | null> => {
    const opts = { title: "Open a model folder", properties: ["openDirectory" as const] };
    const r = win && !win.isDestroyed() ? await dialog.showOpenDialog(win, opts) : await dialog.showOpenDialog(opts);
    return r.canceled || r.filePaths.length === 0 ? null : r.filePaths[0];
  };

  // datasets: open a jsonl/json file to import, or choose where an export goes
  const pickDatasetFile = async (purpose: "import" | "export", suggestedName?: string): Promise<string | null> => {
    const filters = [{ name: "JSON Lines / JSON", extensions: ["jsonl", "json"] }];
    const parent = win && !win.isDestroyed() ? win : null;
    if (purpose === "import") {
      const opts = { title: "Import a dataset", properties: ["openFile" as const], filters };
      const r = parent ? await dialog.showOpenDialog(parent, opts) : await dialog.showOpenDialog(opts);
      return r.canceled || r.filePaths.length === 0 ? null : r.filePaths[0];
    }
    const opts = { title: "Export the dataset", defaultPath: suggestedName ?? "dataset.jsonl", filters };
    const r = parent ? await dialog.showSaveDialog(parent, opts) : await dialog.showSaveDialog(opts);
    return r.canceled || !r.filePath ? null : r.filePath;
  };

  // Every web contents (the window, and anything it might try to create) gets the same locks.
  app.on("web-contents-created", (_e, contents: WebContents) => {
    contents.on("will-navigate", (event, url) => {
      if (!isAppUrl(url)) event.preventDefault();
    });
    contents.on("will-redirect", (event, url) => {
      if (!isAppUrl(url)) event.preventDefault();
    });
    contents.on("will-attach-webview", (event) => event.preventDefault());
    contents.setWindowOpenHandler(({ url }) => {
      // a link in a reply: the system browser may open http(s); the app never opens a window
      const ext = externalUrl(url);
      if (ext) void shell.openExternal(ext);
      return { action: "deny" };
    });
  });

  app.on("second-instance", () => {
    if (!win) return;
    if (win.isMinimized()) win.restore();
    win.focus();
  });

  app.whenReady().then(async () => {
    const ses = session.defaultSession;
    ses.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
    ses.setPermissionCheckHandler(() => false);
    ses.setDevicePermissionHandler(() => false);

    // renderer/dist over app://moe-studio/...: the same resolver as `serve` (no path escapes the folder).
    protocol.handle(APP_SCHEME, async (request) => {
      const url = new URL(request.url);
      if (url.host !== APP_HOST) return new Response("not found", { status: 404 });
      const r = await readStatic(STATIC_DIR, url.pathname);
      if (r.status !== 200) return new Response(r.message, { status: r.status, headers: { "Content-Type": "text/plain; charset=utf-8", ...securityHeaders() } });
      return new Response(new Uint8Array(r.body), { status: 200, headers: { "Content-Type": r.type, ...securityHeaders() } });
    });

    services = await createAppServices({
      dataDir: app.getPath("userData"),
      emit,
      spawnWorker: utilityWorkerSpawner(),
      spawnTextProcess: utilityTextSpawner(),
      pickFolder,
      pickDatasetFile,
      transport: "ipc",
      tokenStore: safeTokenStore(app.getPath("userData")),
      apiKeyStore: safeTokenStore(app.getPath("userData"), API_KEY_FILE),
      endpointKeyStore: safeTokenStore(app.getPath("userData"), ENDPOINT_KEYS_FILE),
      restoreApiServer: true,
    });
    dispatch = createDispatcher(services.handlers);

    ipcMain.handle(IPC_CALL_CHANNEL, async (event: IpcMainInvokeEvent, message: unknown) => {
      // only the app's own top frame may call; the dispatcher validates name and input against the contract
      if (!event.senderFrame || !isAppUrl(event.senderFrame.url) || event.senderFrame.parent !== null) {
        return { ok: false, error: { code: "internal", message: "calls are accepted from the app's own page only" } };
      }
      const m = message as { name?: unknown; input?: unknown } | null;
      try {
        if (!m || typeof m !== "object") throw new RpcError("invalid_input", "a call is { name, input }");
        const output = await dispatch!(m.name, m.input);
        return { ok: true, output };
      } catch (e) {
        return { ok: false, error: toWireError(e) };
      }
    });

    win = createWindow();
    app.on("activate", () => {
      if (BrowserWindow.getAllWindows().length === 0) win = createWindow();
    });
  }).catch((e) => {
    dialog.showErrorBox("MoE Studio could not start", e instanceof Error ? e.message : String(e));
    app.exit(1);
  });

  function createWindow(): BrowserWindow {
    const w = new BrowserWindow(windowOptions(PRELOAD, { dark: nativeTheme.shouldUseDarkColors }));
    w.once("ready-to-show", () => w.show());
    // A renderer crash (not the engine's: that is a separate process the services restart) reloads the page.
    w.webContents.on("render-process-gone", (_e, details) => {
      if (details.reason !== "clean-exit" && !w.isDestroyed()) w.webContents.reload();
    });
    w.on("closed", () => {
      if (win === w) win = null;
    });
    void w.loadURL(APP_START_URL);
    return w;
  }

  // The engine worker (utilityProcess) dying is reported and recovered by the services (engine.status: crashed,
  // then a fresh worker); here it is only logged. The window is a different process and stays up.
  app.on("child-process-gone", (_e, details) => {
    console.error(`moe-studio: ${details.name ?? details.type} process gone (${details.reason}, exit code ${details.exitCode})`);
  });

  app.on("window-all-closed", () => {
    if (process.platform !== "darwin") app.quit();
  });

  // Dispose the services (engine worker stopped, database closed) before quitting.
  let disposed = false;
  app.on("will-quit", (event) => {
    if (disposed || !services) return;
    event.preventDefault();
    disposed = true;
    Promise.resolve(services.dispose()).finally(() => app.quit());
  });
}
