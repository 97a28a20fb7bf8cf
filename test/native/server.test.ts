// `moe-studio serve` as a browser meets it: the HTTP side (renderer files with the CSP, nothing outside the folder,
// only 127.0.0.1), the token (nothing without it, the exchange for a cookie), the WebSocket side (the contract's
// wire format to the real services and engine worker, malformed payloads rejected, foreign origins refused,
// events to every client), and paths from clients kept to the allowed folders. Needs `npx tsc` (the engine
// worker runs from out/); the renderer is a small stand-in folder so these tests do not need `vite build`.
import { request } from "node:http";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
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
let dataDir: string;
/** "moe-studio-token-PORT=..." as the token exchange set it */
let cookie: string;

type Reply = { status: number; headers: Record<string, string | string[] | undefined>; body: string };

/** A request as the signed-in page makes it (with the cookie). */
function get(path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Reply> {
  return anon(path, { Cookie: cookie, ...headers }, method);
}

/** A request with only the headers given (no cookie). */
function anon(path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Reply> {
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

  /** `headers` default to the signed-in cookie; pass {} for none. */
  constructor(url: string, opts: { origin?: string; headers?: Record<string, string> } = {}) {
    this.ws = new WebSocket(url, { ...(opts.origin === undefined ? {} : { origin: opts.origin }), headers: opts.headers ?? { Cookie: cookie } });
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
  dataDir = join(tmp, "data");
  server = await startServer({ port: 0, host: "127.0.0.1", dataDir, model: MODEL, staticDir });
  origin = `http://127.0.0.1:${server.port}`;
  // sign in as the page does: the printed URL, traded for a cookie
  const r = await anon(`/?token=${server.token}`);
  expect(r.status).toBe(302);
  cookie = String(r.headers["set-cookie"]).split(";")[0];
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

describe("serve: the token", () => {
  it("answers 401 to every HTTP request without the token or cookie, the UI's files included", async () => {
    for (const path of ["/", "/index.html", "/assets/app.js", "/models", "/api", "/nope.js"]) {
      for (const method of ["GET", "HEAD", "POST"]) {
        const r = await anon(path, {}, method);
        expect(r.status, `${method} ${path}`).toBe(401);
        expect(r.body, `${method} ${path}`).not.toContain("<title>MoE Studio</title>");
        expect(r.headers["www-authenticate"]).toMatch(/^Bearer/);
        expect(r.headers["set-cookie"]).toBeUndefined();
      }
    }
    // the same with this server's own Origin, as a page (or a process pretending to be one) would send
    expect((await anon("/", { Origin: origin })).status).toBe(401);
    expect((await anon("/", {})).body).toMatch(/\?token=/); // says what to do
  });

  it("answers 401 to a wrong token, in the URL, a cookie or a header, and to another port's cookie", async () => {
    const wrong = `${server.token.slice(0, -1)}${server.token.endsWith("A") ? "B" : "A"}`;
    for (const [path, headers] of [
      [`/?token=${wrong}`, {}],
      ["/?token=", {}],
      [`/?token=${server.token}x`, {}],
      ["/", { Cookie: `moe-studio-token-${server.port}=${wrong}` }],
      ["/", { Cookie: `moe-studio-token-${server.port + 1}=${server.token}` }],
      ["/", { Authorization: `Bearer ${wrong}` }],
      ["/", { Authorization: `Basic ${Buffer.from(`x:${server.token}`).toString("base64")}` }],
    ] as const) {
      const r = await anon(path, headers);
      expect(r.status, `${path} ${JSON.stringify(headers)}`).toBe(401);
      expect(r.headers["set-cookie"]).toBeUndefined();
    }
  });

  it("trades the token for an HttpOnly, SameSite=Strict cookie and redirects to the same URL without it", async () => {
    const r = await anon(`/?token=${server.token}`);
    expect(r.status).toBe(302);
    expect(r.headers.location).toBe("/");
    expect(r.headers["cache-control"]).toBe("no-store");
    const set = String(r.headers["set-cookie"]);
    expect(set).toMatch(new RegExp(`^moe-studio-token-${server.port}=${server.token};`));
    expect(set).toMatch(/; HttpOnly/);
    expect(set).toMatch(/; SameSite=Strict/);
    expect(set).toMatch(/; Path=\//);
    // other query parameters and the path stay; only the token goes
    expect((await anon(`/models?lang=zh&token=${server.token}&x=1`)).headers.location).toBe("/models?lang=zh&x=1");
    // a path that would make Location point at another site goes to "/"
    expect((await anon(`//evil.example/?token=${server.token}`)).headers.location).toBe("/");
    // the cookie, or the token as a bearer header (scripts), lets requests in
    expect((await anon("/", { Cookie: `other=1; ${set.split(";")[0]}` })).status).toBe(200);
    expect((await anon("/assets/app.js", { Authorization: `Bearer ${server.token}` })).status).toBe(200);
  });

  it("answers 401 to a WebSocket without the token, also from the right Origin; lets one in with it", async () => {
    const url = `ws://127.0.0.1:${server.port}/api`;
    for (const headers of [{}, { Cookie: `moe-studio-token-${server.port}=nope-nope-nope-nope` }, { Authorization: "Bearer nope-nope-nope-nope" }]) {
      const c = new Client(url, { origin, headers });
      await expect(c.opened, JSON.stringify(headers)).rejects.toThrow(/401/);
    }
    await expect(new Client(`${url}?token=wrong`, { origin, headers: {} }).opened).rejects.toThrow(/401/);
    await expect(new Client(`ws://127.0.0.1:${server.port}/elsewhere`, { origin, headers: {} }).opened).rejects.toThrow(/401/);
    // the token but a foreign origin: still refused (403), the Origin check stays
    await expect(new Client(url, { origin: "https://evil.example" }).opened).rejects.toThrow(/403/);
    for (const c of [
      new Client(url, { origin }),
      new Client(url, { origin, headers: { Authorization: `Bearer ${server.token}` } }),
      new Client(`${url}?token=${server.token}`, { origin, headers: {} }),
    ]) {
      await c.opened;
      expect((await c.ok("app.info", {})).transport).toBe("ws");
      c.close();
    }
  });
});

describe("serve: paths from clients stay in the allowed folders", () => {
  let c: Client;
  let outsideDir: string;
  beforeAll(async () => {
    c = new Client(`ws://127.0.0.1:${server.port}/api`, { origin });
    await c.opened;
    outsideDir = join(tmp, "outside"); // beside the data folder, not in it
    mkdirSync(outsideDir);
    writeFileSync(join(outsideDir, "secret.jsonl"), `${JSON.stringify({ messages: [{ role: "user", content: SECRET }, { role: "assistant", content: "x" }] })}\n`);
    mkdirSync(dataDir, { recursive: true });
    symlinkSync(outsideDir, join(dataDir, "escape"));
  });
  afterAll(() => c?.close());

  const refused = async (name: string, input: unknown, ...says: (string | RegExp)[]) => {
    const r = await c.call(name, input);
    if (r.t !== "result" || r.ok) throw new Error(`${name} was not refused: ${JSON.stringify(r)}`);
    expect(r.error.code, name).toBe("invalid_input");
    for (const s of says) expect(r.error.message, name).toMatch(s);
    return r.error.message;
  };

  /** A dataset made the browser's way: an upload (the file the user picked) scanned and committed. */
  async function uploadDataset(name: string): Promise<string> {
    const lines = [0, 1, 2].map((i) => JSON.stringify({ messages: [{ role: "user", content: `question ${i}` }, { role: "assistant", content: `answer ${i}` }] })).join("\n") + "\n";
    const bytes = Buffer.from(lines);
    const { uploadId } = await c.ok("datasets.upload.begin", { fileName: `${name}.jsonl`, size: bytes.length });
    await c.ok("datasets.upload.chunk", { uploadId, offset: 0, data: bytes.toString("base64") });
    const { importId } = await c.ok("datasets.import.scan", { source: { kind: "upload", uploadId } });
    for (let i = 0; ; i++) {
      const st = await c.ok("datasets.import.status", { importId });
      if (st.state === "ready") break;
      if (i > 600 || st.state === "failed") throw new Error(`scan: ${JSON.stringify(st)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const ds = await c.ok("datasets.import.commit", { importId, name });
    expect(ds.sampleCount).toBe(3);
    return ds.id;
  }

  it("refuses to scan /etc/passwd or a file outside, directly or through a link; scans a file in the data folder", async () => {
    await refused("datasets.import.scan", { source: { kind: "path", path: "/etc/passwd" } }, /^dataset file: "\/etc\/passwd" is outside the folders this server may read/, /--allow-dir/);
    await refused("datasets.import.scan", { source: { kind: "path", path: join(outsideDir, "secret.jsonl") } }, /outside/);
    await refused("datasets.import.scan", { source: { kind: "path", path: join(dataDir, "escape", "secret.jsonl") } }, /it leads to/);
    await refused("datasets.import.scan", { source: { kind: "path", path: `${dataDir}/../outside/secret.jsonl` } }, /"\.\."/);
    await refused("datasets.import.scan", { source: { kind: "path", path: "outside/secret.jsonl" } }, /not an absolute path/);
    // nothing was read: no import began, so no progress event names the file
    expect(c.events.filter((e) => e.name.startsWith("datasets.import") || e.name.startsWith("jobs.")).map((e) => JSON.stringify(e.payload)).join("")).not.toContain("secret");
    const inside = join(dataDir, "picked.jsonl");
    writeFileSync(inside, `${JSON.stringify({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }] })}\n`);
    const scan = await c.ok("datasets.import.scan", { source: { kind: "path", path: inside } });
    expect(scan.fileName).toBe("picked.jsonl");
    await c.ok("datasets.import.cancel", { importId: scan.importId });
  });

  it("refuses to export outside the allowed folders and writes nothing there; uploads and exports inside work", async () => {
    const id = await uploadDataset("uploaded");
    const targets = [join(outsideDir, "outside-file"), join(tmp, "outside-file"), join(dataDir, "escape", "outside-file")];
    for (const path of targets) await refused("datasets.export", { id, path }, /^export file: .* is outside the folders this server may write to/);
    for (const path of targets) expect(existsSync(path), path).toBe(false);
    await refused("datasets.export", { id, path: join(dataDir, "moe-studio.db") }, /is one of the app's own files/);
    expect(readFileSync(join(outsideDir, "secret.jsonl"), "utf8")).toContain(SECRET); // untouched
    const target = join(dataDir, "exports", "uploaded.jsonl");
    mkdirSync(join(dataDir, "exports"));
    const out = await c.ok("datasets.export", { id, path: target });
    expect(out.path).toBe(realpathSync(target));
    expect(readFileSync(target, "utf8").trim().split("\n")).toHaveLength(3);
  });

  it("refuses a models folder, model folder, tokenizer folder or quantize source outside", async () => {
    await refused("settings.set", { modelsDir: "/" }, /^modelsDir \(the models folder\): "\/" is outside the folders this server may write to/);
    expect((await c.ok("settings.get", {})).modelsDir).toBe("");
    // the --model folder is allowed for reading only: not as a place to write models into
    await refused("settings.set", { modelsDir: MODEL }, /may write to/);
    const mine = join(dataDir, "my-models");
    expect((await c.ok("settings.set", { modelsDir: mine })).modelsDir).toBe(realpathSync(dataDir) + "/my-models");
    expect((await c.ok("settings.set", { modelsDir: "" })).modelsDir).toBe("");
    await refused("models.open", { dir: "/etc" }, /^model folder: "\/etc" is outside/);
    await refused("quantize.start", { dir: "/etc", target: "gguf", format: "q8_0", name: "x" }, /^model folder to quantize: "\/etc" is outside/);
    const id = await uploadDataset("for-tokens");
    const [sample] = (await c.ok("samples.list", { datasetId: id, offset: 0, limit: 1 })).items;
    await refused("samples.get", { id: sample.id, tokenizer: { modelDir: "/etc" } }, /^tokenizer\.modelDir \(a model folder\): "\/etc" is outside/);
    await refused("samples.list", { datasetId: id, offset: 0, limit: 1, tokenizer: { modelDir: outsideDir } }, /outside/);
    await refused("datasets.tokens.count", { datasetId: id, tokenizer: { modelDir: "/" } }, /outside/);
    // the --model folder's tokenizer is fine
    const counted = await c.ok("samples.get", { id: sample.id, tokenizer: { modelDir: MODEL } });
    expect(counted.tokens).toBeGreaterThan(0);
  });
});
