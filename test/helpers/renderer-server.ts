// The renderer's stores wired to `serve`'s real server (real services, a fresh data folder and database file) over
// the renderer's own WebSocket transport, as a browser tab is: used by the store tests in test/unit/renderer-*.
//   const s = await rendererOnServer("moe-renderer-jobs-");   ... stores call the server ...   await s.close();
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { startServer, type RunningServer } from "../../electron/server/server.js";
import { setApi } from "../../renderer/src/api/index.js";
import { WebSocketTransport, wsUrlFor } from "../../renderer/src/api/ws.js";
import { connectStores } from "../../renderer/src/stores/wiring.js";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Polls `cond` every 10 ms. */
export async function until(cond: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A server allowed to read the fixture models, the stores connected to it (setApi + connectStores), the socket open. */
export async function rendererOnServer(prefix: string): Promise<{ server: RunningServer; dataDir: string; close(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), prefix));
  const staticDir = mkdtempSync(join(tmpdir(), "moe-renderer-static-"));
  writeFileSync(join(staticDir, "index.html"), "<!doctype html><title>t</title>");
  const server = await startServer({ port: 0, dataDir, staticDir, allowDirs: [join(ROOT, "test/fixtures/models")] });
  const origin = `http://127.0.0.1:${server.port}`;
  const token = server.token;
  // the server checks the Origin and the bearer token as it does for a browser tab
  class OriginWebSocket extends WebSocket {
    constructor(url: string) {
      super(url, { origin, headers: { authorization: `Bearer ${token}` } });
    }
  }
  const transport = new WebSocketTransport(wsUrlFor({ protocol: "http:", host: `127.0.0.1:${server.port}` }), { WebSocketImpl: OriginWebSocket as unknown as typeof globalThis.WebSocket });
  setApi(transport);
  const off = connectStores(transport);
  await until(() => transport.connection() === "open", "the socket");
  return {
    server,
    dataDir,
    async close() {
      off();
      await server.close();
      for (const d of [dataDir, staticDir]) rmSync(d, { recursive: true, force: true });
    },
  };
}
