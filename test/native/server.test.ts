// `moe-studio serve` as a browser meets it: the HTTP side (renderer files with the CSP, nothing outside the folder,
// only 127.0.0.1) and the WebSocket side (the contract's wire format to the real services and engine worker,
// malformed payloads rejected, foreign origins refused, events to every client). Needs `npx tsc` (the engine
// worker runs from out/); the renderer is a small stand-in folder so these tests do not need `vite build`.
import { request } from "node:http";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startServer, type RunningServer } from "../../electron/server/server.js";
import { DEFAULT_MAX_PAYLOAD } from "../../electron/server/ws-transport.js";
import type { WireMessage } from "../../electron/contract.js";
import { MODELS } from "./fixtures.js";

const MODEL = join(MODELS, "qwen3_moe");
const SECRET = "top secret: must never be served";

let tmp: string;
let staticDir: string;
let server: RunningServer;
let origin: string;

function get(path: string, headers: Record<string, string> = {}, method = "GET"): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    // a raw path: http.request sends it as given (no URL normalisation of "..")
    const req = request({ host: "127.0.0.1", port: server.port, path, method, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** A WebSocket client speaking the wire format: call() resolves with the result message; events are collected. */
class Client {
  readonly ws: WebSocket;
  readonly events: Extract<WireMessage, { t: "event" }>[] = [];
  private nextId = 1;
  private waiting = new Map<number, (m: WireMessage) => void>();
  private eventWaiters: (() => void)[] = [];
  readonly opened: Promise<void>;

  constructor(url: string, opts: { origin?: string } = {}) {
    this.ws = new WebSocket(url, opts.origin === undefined ? {} : { origin: opts.origin });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
      this.ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    this.ws.on("message", (data) => {
      const m = JSON.parse(data.toString()) as WireMessage;
      if (m.t === "result") {
        this.waiting.get(m.id)?.(m);
        this.waiting.delete(m.id);
      } else if (m.t === "event") {
        this.events.push(m);
        for (const w of this.eventWaiters.splice(0)) w();
      }
    });
  }

  /** Sends a raw frame and waits for the result with that id. */
  raw(frame: string, id: number): Promise<WireMessage> {
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.ws.send(frame);
    });
  }

  call(name: string, input: unknown): Promise<WireMessage> {
    const id = this.nextId++;
    return this.raw(JSON.stringify({ t: "call", id, name, input }), id);
  }

  async ok<T = any>(name: string, input: unknown): Promise<T> {
    const r = await this.call(name, input);
    if (r.t !== "result" || !r.ok) throw new Error(`${name} failed: ${JSON.stringify(r)}`);
    return r.output as T;
  }

  async waitEvent(pred: (e: Extract<WireMessage, { t: "event" }>) => boolean, timeoutMs = 60_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(pred);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no such event; got ${this.events.map((e) => e.name).join(", ")}`);
      await new Promise<void>((resolve) => {
        this.eventWaiters.push(resolve);
        setTimeout(resolve, 500);
      });
    }
  }

  close() {
    this.ws.close();
  }
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "moe-server-"));
  staticDir = join(tmp, "dist");
  mkdirSync(join(staticDir, "assets"), { recursive: true });
  writeFileSync(join(staticDir, "index.html"), "<!doctype html><title>MoE Studio</title><script type=module src=./assets/app.js></script>");
  writeFileSync(join(staticDir, "assets", "app.js"), "console.log('app');");
  writeFileSync(join(staticDir, "assets", "app.css"), "body{}");
  writeFileSync(join(tmp, "secret.txt"), SECRET);
  symlinkSync(join(tmp, "secret.txt"), join(staticDir, "assets", "link.txt"));
  server = await startServer({ port: 0, host: "127.0.0.1", dataDir: join(tmp, "data"), model: MODEL, staticDir });
  origin = `http://127.0.0.1:${server.port}`;
});

afterAll(async () => {
  await server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe("serve: HTTP", () => {
  it("listens on 127.0.0.1 and a free port", () => {
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/`);
  });

  it("serves index.html for / with the CSP and nosniff", async () => {
    const r = await get("/");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(r.body).toContain("<title>MoE Studio</title>");
    const csp = String(r.headers["content-security-policy"]);
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("object-src 'none'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain(`ws://127.0.0.1:${server.port}`);
    expect(r.headers["x-content-type-options"]).toBe("nosniff");
  });

  it("gives each file its content type; unknown app routes get index.html, missing assets 404", async () => {
    expect((await get("/assets/app.js")).headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect((await get("/assets/app.css")).headers["content-type"]).toBe("text/css; charset=utf-8");
    const route = await get("/models");
    expect(route.status).toBe(200);
    expect(route.body).toContain("<title>MoE Studio</title>");
    expect((await get("/assets/nope.js")).status).toBe(404);
    const head = await get("/", {}, "HEAD");
    expect(head.status).toBe(200);
    expect(head.body).toBe("");
    expect((await get("/", {}, "POST")).status).toBe(405);
  });

  it("refuses paths that leave the renderer folder", async () => {
    for (const p of ["/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt", "/..%5csecret.txt", "/assets/link.txt", "/%00", "/%zz"]) {
      const r = await get(p);
      expect([400, 403, 404], p).toContain(r.status);
      expect(r.body, p).not.toContain(SECRET);
    }
  });

  it("refuses a foreign Host header (DNS rebinding)", async () => {
    expect((await get("/", { Host: "evil.example" })).status).toBe(421);
    expect((await get("/", { Host: `localhost:${server.port}` })).status).toBe(200);
  });

  it("binds only 127.0.0.1", async () => {
    const tryConnect = (host: string) =>
      new Promise<boolean>((resolve) => {
        const s = connect({ host, port: server.port });
        s.once("connect", () => (s.destroy(), resolve(true)));
        s.once("error", () => resolve(false));
      });
    expect(await tryConnect("127.0.0.1")).toBe(true);
    expect(await tryConnect("127.0.0.2")).toBe(false); // another loopback address: not bound
    const external = Object.values(networkInterfaces()).flat().find((i) => i && i.family === "IPv4" && !i.internal);
    if (external) expect(await tryConnect(external.address)).toBe(false);
  });
});

describe("serve: WebSocket API", () => {
  it("answers a call with the contract's wire format", async () => {
    const c = new Client(`ws://127.0.0.1:${server.port}/api`, { origin });
    await c.opened;
    const info = await c.ok("app.info", {});
    expect(info.transport).toBe("ws");
    expect(info.canPickFolder).toBe(false);
    const conv = await c.ok("conversations.create", { title: "over the wire" });
    const list = await c.ok<{ id: string; title: string }[]>("conversations.list", {});
    expect(list.map((x) => x.id)).toContain(conv.id);
    expect(await c.ok("models.pickFolder", {})).toEqual({ dir: null });
    c.close();
  });

  it("rejects malformed payloads with invalid_input", async () => {
    const c = new Client(`ws://127.0.0.1:${server.port}/api`, { origin });
    await c.opened;
    const bad = async (frame: string, id: number) => {
      const r = await c.raw(frame, id);
      expect(r.t === "result" && !r.ok && r.error.code, frame).toBe("invalid_input");
    };
    await bad(JSON.stringify({ t: "call", id: 7, name: "conversations.get", input: { id: 42 } }), 7);
    await bad(JSON.stringify({ t: "call", id: 8, name: "conversations.create", input: { title: "x", admin: true } }), 8);
    await bad(JSON.stringify({ t: "call", id: 9, name: "chat.send", input: { conversationId: "c", content: "" } }), 9);
    await bad(JSON.stringify({ t: "call", id: 10, name: "models.open", input: null }), 10);
    await bad("this is not JSON", 0);
    await bad(JSON.stringify([1, 2, 3]), 0);
    await bad(JSON.stringify({ t: "result", id: 11, ok: true }), 11);
    await bad(JSON.stringify({ t: "call", id: "12", name: "app.info", input: {} }), 0);
    const unknown = await c.call("fs.readFile", { path: "/etc/passwd" });
    expect(unknown.t === "result" && !unknown.ok && unknown.error.code).toBe("unknown_call");
    // the connection survives all of that
    expect((await c.ok("settings.get", {})).theme).toBeDefined();
    c.close();
  });

  it("refuses connections from another origin, or without one", async () => {
    for (const o of ["https://evil.example", "http://127.0.0.1:1", "null", undefined]) {
      const c = new Client(`ws://127.0.0.1:${server.port}/api`, { origin: o });
      await expect(c.opened, String(o)).rejects.toThrow(/403/);
    }
    // the localhost spelling of the same origin is the same server
    const ok = new Client(`ws://localhost:${server.port}/api`, { origin: `http://localhost:${server.port}` });
    await ok.opened;
    ok.close();
  });

  it("closes a connection that sends an oversized message", async () => {
    const c = new Client(`ws://127.0.0.1:${server.port}/api`, { origin });
    await c.opened;
    const closed = new Promise<number>((resolve) => c.ws.once("close", (code) => resolve(code)));
    c.ws.send(JSON.stringify({ t: "call", id: 1, name: "chat.send", input: { conversationId: "x", content: "a".repeat(DEFAULT_MAX_PAYLOAD) } }));
    expect(await closed).toBe(1009);
  });

  it("streams a reply from the fixture model as events to every client", async () => {
    const a = new Client(`ws://127.0.0.1:${server.port}/api`, { origin });
    const b = new Client(`ws://127.0.0.1:${server.port}/api`, { origin });
    await Promise.all([a.opened, b.opened]);
    // the --model folder loads at start
    const deadline = Date.now() + 120_000;
    let status = await a.ok("models.status", {});
    while (status.state === "loading" || status.state === "idle") {
      if (Date.now() > deadline) throw new Error("model did not load");
      await new Promise((r) => setTimeout(r, 200));
      status = await a.ok("models.status", {});
    }
    expect(status.state).toBe("ready");
    expect(status.model.modelType).toBe("qwen3_moe");
    const conv = await a.ok("conversations.create", {});
    await a.ok("conversations.update", { id: conv.id, sampling: { maxTokens: 8, seed: 1 } });
    const sent = await a.ok("chat.send", { conversationId: conv.id, content: "Hello over the wire" });
    expect(sent.assistantMessage.status).toBe("streaming");
    for (const c of [a, b]) {
      const done = await c.waitEvent((e) => e.name === "chat.done" && (e.payload as { conversationId: string }).conversationId === conv.id);
      const msg = (done.payload as { message: { id: string; status: string; stats: { completionTokens: number } } }).message;
      expect(msg.id).toBe(sent.assistantMessage.id);
      expect(msg.status).toBe("complete");
      expect(msg.stats.completionTokens).toBeGreaterThan(0);
      expect(c.events.some((e) => e.name === "chat.delta")).toBe(true);
    }
    a.close();
    b.close();
  });
});
