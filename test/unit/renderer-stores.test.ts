// The renderer's stores: pure reducers, then the real thing — the stores driven over the renderer's own WebSocket
// transport against `moe-studio serve`'s server (real services, SQLite and engine worker with a fixture model).
import { copyFileSync, mkdirSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket, { WebSocketServer } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Message } from "../../electron/contract.js";
import { startServer, type RunningServer } from "../../electron/server/server.js";
import { ipcTransport, setApi } from "../../renderer/src/api/index.js";
import { WebSocketTransport, wsUrlFor } from "../../renderer/src/api/ws.js";
import { appendDelta, applyDone, contextMeter, contextUsed, dropLastAssistant, isStreaming, messageRows, truncateAfter, useChat } from "../../renderer/src/stores/chat.js";
import { useConversations } from "../../renderer/src/stores/conversations.js";
import { folderName, formatBytes, formatParams, useModels } from "../../renderer/src/stores/models.js";
import { resolveLang, resolveTheme, useSettings } from "../../renderer/src/stores/settings.js";
import { bannerForError, useUi } from "../../renderer/src/stores/ui.js";
import { connectStores, refreshAll } from "../../renderer/src/stores/wiring.js";

const root = fileURLToPath(new URL("../../", import.meta.url));

function msg(id: string, role: "user" | "assistant", content: string, status: Message["status"] = "complete"): Message {
  return { id, conversationId: "c1", role, content, createdAt: 0, status, error: null, stats: null, compare: null };
}

/** A copy of a fixture with a long context and no EOS, so a reply runs until stopped (random weights are fast). */
function longReplyCopy(name: string, into: string): string {
  const src = join(root, "test/fixtures/models", name);
  const dir = join(into, name);
  mkdirSync(dir);
  for (const f of readdirSync(src)) copyFileSync(join(src, f), join(dir, f));
  const edit = (file: string, change: (j: Record<string, unknown>) => void) => {
    const p = join(dir, file);
    if (!existsSync(p)) return;
    const j = JSON.parse(readFileSync(p, "utf8")) as Record<string, unknown>;
    change(j);
    writeFileSync(p, JSON.stringify(j));
  };
  edit("config.json", (j) => {
    j.max_position_embeddings = 32768;
    j.eos_token_id = null;
  });
  edit("generation_config.json", (j) => {
    j.eos_token_id = null;
  });
  edit("tokenizer_config.json", (j) => {
    j.model_max_length = 32768;
  });
  return dir;
}

async function until(cond: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A real `serve` server in temp folders (data + a one-page static dir; `model` loads at start), with the renderer's
 * WebSocket transport connected to it and the stores wired to that transport. */
async function connectToServer(dirs: string[], model?: string): Promise<{ server: RunningServer; transport: WebSocketTransport; off: () => void }> {
  const dataDir = mkdtempSync(join(tmpdir(), "moe-renderer-data-"));
  const staticDir = mkdtempSync(join(tmpdir(), "moe-renderer-static-"));
  dirs.push(dataDir, staticDir);
  writeFileSync(join(staticDir, "index.html"), "<!doctype html><title>t</title>");
  // the fixture models are opened by path, as a user names a folder they allowed with --allow-dir
  const server = await startServer({ port: 0, dataDir, staticDir, allowDirs: [join(root, "test/fixtures/models")], ...(model ? { model } : {}) });
  const origin = `http://127.0.0.1:${server.port}`;
  class OriginWebSocket extends WebSocket {
    constructor(url: string) {
      // what a signed-in page sends: its own origin, and the token (a browser sends it as the cookie)
      super(url, { origin, headers: { authorization: `Bearer ${server.token}` } });
    }
  }
  const transport = new WebSocketTransport(wsUrlFor({ protocol: "http:", host: `127.0.0.1:${server.port}` }), { WebSocketImpl: OriginWebSocket as unknown as typeof globalThis.WebSocket });
  setApi(transport);
  const off = connectStores(transport);
  await until(() => transport.connection() === "open", "the socket");
  return { server, transport, off };
}

describe("chat reducers", () => {
  const base = [msg("u1", "user", "hi"), msg("a1", "assistant", "Hel", "streaming")];

  it("appends deltas to the streaming message only", () => {
    const next = appendDelta(base, "a1", "lo")!;
    expect(next[1].content).toBe("Hello");
    expect(base[1].content).toBe("Hel"); // immutable
    expect(appendDelta(base, "nope", "x")).toBeNull();
    const done = [base[0], { ...base[1], status: "complete" as const }];
    expect(appendDelta(done, "a1", "late")).toBe(done);
  });

  it("done replaces the message with its final version", () => {
    const final = { ...msg("a1", "assistant", "Hello!"), stats: { promptTokens: 5, reusedTokens: 0, completionTokens: 3, prefillTokensPerSecond: 1, decodeTokensPerSecond: 2, stopReason: "eos" as const, contextTokens: 8, contextLength: 256 } };
    const next = applyDone(base, final)!;
    expect(next[1]).toBe(final);
    expect(isStreaming(next)).toBe(false);
    expect(isStreaming(base)).toBe(true);
    expect(contextUsed(next)).toEqual({ used: 8, total: 256 });
    expect(contextUsed(base)).toBeNull();
    expect(applyDone(base, msg("x", "assistant", ""))).toBeNull();
  });

  it("the context meter's total is the chat session's context, the same before and after a reply", () => {
    const card = { sessionContextLength: 8192 };
    const replied = [msg("u1", "user", "hi"), { ...msg("a1", "assistant", "Hello!"), stats: { promptTokens: 5, reusedTokens: 0, completionTokens: 3, prefillTokensPerSecond: 1, decodeTokensPerSecond: 2, stopReason: "eos" as const, contextTokens: 8, contextLength: 8192 } }];
    expect(contextMeter([], card)).toEqual({ used: 0, total: 8192 });
    expect(contextMeter(base, card)).toEqual({ used: 0, total: 8192 });
    expect(contextMeter(replied, card)).toEqual({ used: 8, total: 8192 });
    expect(contextMeter(replied, null)).toEqual({ used: 8, total: 8192 }); // engine restarting: the reply's own total
    expect(contextMeter([], null)).toBeNull();
  });

  it("editing keeps the messages before the edited one, with the new text, and drops the rest", () => {
    const conv = [msg("u1", "user", "one"), msg("a1", "assistant", "r1"), msg("u2", "user", "two"), msg("a2", "assistant", "r2")];
    expect(truncateAfter(conv, "u1", "uno").map((m) => [m.id, m.content])).toEqual([["u1", "uno"]]);
    expect(truncateAfter(conv, "u2", "dos").map((m) => m.id)).toEqual(["u1", "a1", "u2"]);
    expect(truncateAfter(conv, "missing", "x")).toBe(conv);
    expect(dropLastAssistant(conv).map((m) => m.id)).toEqual(["u1", "a1", "u2"]);
    expect(dropLastAssistant(conv.slice(0, 3))).toHaveLength(3);
  });

  it("a compared turn's two replies are one row, side by side; regenerate drops both", () => {
    const base = { ...msg("b", "assistant", "base says"), compare: "base" as const };
    const adapted = { ...msg("a", "assistant", "adapter says"), compare: "adapter" as const };
    const conv = [msg("u1", "user", "one"), msg("a1", "assistant", "r1"), msg("u2", "user", "two"), base, adapted];
    expect(messageRows(conv).map((r) => (r.kind === "one" ? r.message.id : `${r.base.id}|${r.adapter.id}`))).toEqual(["u1", "a1", "u2", "b|a"]);
    // a base reply without its adapter side (not yet arrived) is shown alone
    expect(messageRows(conv.slice(0, 4)).map((r) => r.kind)).toEqual(["one", "one", "one", "one"]);
    expect(dropLastAssistant(conv).map((m) => m.id)).toEqual(["u1", "a1", "u2"]);
  });
});

describe("formatting and settings", () => {
  it("formats parameters as K/M/B with 3 significant digits (a tiny fixture is 420 K, not 0.00042 B)", () => {
    expect(formatParams(0.7e9)).toBe("700 M");
    expect(formatParams(46.7e9)).toBe("46.7 B");
    expect(formatParams(46_702_792_704)).toBe("46.7 B");
    expect(formatParams(389e9)).toBe("389 B");
    expect(formatParams(1.5e9)).toBe("1.50 B");
    expect(formatParams(169_000_000)).toBe("169 M");
    expect(formatParams(2_690_000)).toBe("2.69 M");
    expect(formatParams(470_000)).toBe("470 K");
    expect(formatParams(420_123)).toBe("420 K");
    expect(formatParams(999_950)).toBe("1.00 M"); // rounds up into the next unit, never "1000 K"
    expect(formatParams(999_499)).toBe("999 K");
    expect(formatParams(1234)).toBe("1.23 K");
    expect(formatParams(999)).toBe("999");
    expect(formatParams(0)).toBe("0");
    expect(formatBytes(1.4 * 1024 * 1024)).toBe("1.40 MB");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(26.5 * 1024 ** 3)).toBe("26.5 GB");
    expect(folderName("/models/Qwen3-30B-A3B/")).toBe("Qwen3-30B-A3B");
    expect(folderName("C:\\m\\olmoe")).toBe("olmoe");
  });

  it("resolves system language and theme", () => {
    expect(resolveLang("system", "zh-CN")).toBe("zh");
    expect(resolveLang("system", "en-GB")).toBe("en");
    expect(resolveLang("en", "zh-CN")).toBe("en");
    expect(resolveTheme("system", true)).toBe("dark");
    expect(resolveTheme("light", true)).toBe("light");
  });
});

describe("banners", () => {
  it("call errors become banners in the user's language; the server's text is only a detail", () => {
    expect(bannerForError({ code: "busy", message: "A reply is still being written in this conversation; stop it first." })).toEqual({ kind: "error", key: "error.busyHere", vars: {} });
    expect(bannerForError({ code: "internal", message: "SQLITE_CORRUPT: database disk image is malformed" })).toEqual({ kind: "error", key: "error.internal", detail: "SQLITE_CORRUPT: database disk image is malformed" });
    expect(bannerForError({ code: "no_model", message: "No model is loaded. Open a model folder first." })).toEqual({ kind: "error", key: "error.noModel", source: "model" });
    expect(bannerForError({ code: "disconnected", message: "the connection closed" })).toEqual({ kind: "error", key: "error.disconnected" });
  });

  it("\"load a model first\" goes once a model is ready, however it was loaded (an engine.status event covers serve --model)", () => {
    useUi.setState({ banners: [] });
    const idle = { state: "idle" as const, model: null, dir: null, message: null };
    useUi.getState().notifyError({ code: "no_model", message: "No model is loaded." });
    expect(useUi.getState().banners.map((b) => b.key)).toEqual(["error.noModel"]);
    useModels.getState().setStatus({ ...idle, state: "loading", dir: "/m" });
    expect(useUi.getState().banners.map((b) => b.key)).toEqual(["error.noModel"]); // not yet
    useModels.getState().setStatus({ state: "ready", model: { name: "m", sessionContextLength: 256 } as never, dir: "/m", message: null });
    expect(useUi.getState().banners).toEqual([]);
    useModels.getState().setStatus(idle);
  });
});

describe("IPC transport", () => {
  it("passes calls and events through and recovers the error code from the preload's \"[code] message\"", async () => {
    const listeners: Array<(p: unknown) => void> = [];
    const preload = {
      call: async (name: string) => {
        if (name === "models.status") throw new Error("[no_model] no model is loaded");
        if (name === "app.info") throw new Error("Error invoking remote method 'moe:call': Error: boom");
        return { ok: true };
      },
      on: (_e: string, l: (p: unknown) => void) => {
        listeners.push(l);
        return () => listeners.splice(listeners.indexOf(l), 1);
      },
      pathForFile: () => "/models/x",
    };
    const t = ipcTransport(preload as never);
    expect(t.kind).toBe("ipc");
    expect(t.connection()).toBe("open");
    await expect(t.call("conversations.delete", { id: "x" })).resolves.toEqual({ ok: true });
    await expect(t.call("models.status", {})).rejects.toMatchObject({ code: "no_model", message: "no model is loaded" });
    await expect(t.call("app.info", {})).rejects.toMatchObject({ code: "internal", message: "boom" });
    const seen: unknown[] = [];
    const off = t.on("engine.status", (p) => seen.push(p));
    listeners[0]({ state: "idle" });
    off();
    expect(listeners).toHaveLength(0);
    expect(seen).toEqual([{ state: "idle" }]);
    expect(t.pathForFile?.({} as File)).toBe("/models/x");
  });
});

describe("WebSocket transport", () => {
  it("queues calls until connected, fails calls in flight when the socket drops, reconnects and reports it", async () => {
    const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    await new Promise((r) => wss.once("listening", r));
    const port = (wss.address() as { port: number }).port;
    let answer = true;
    wss.on("connection", (s) => {
      s.on("message", (data) => {
        const m = JSON.parse(String(data));
        if (!answer) return;
        if (m.name === "models.status") s.send(JSON.stringify({ t: "result", id: m.id, ok: false, error: { code: "no_model", message: "no model" } }));
        else s.send(JSON.stringify({ t: "result", id: m.id, ok: true, output: { echo: m.name, input: m.input } }));
        s.send(JSON.stringify({ t: "event", name: "models.progress", payload: { dir: "/m", done: 1, total: 2 } }));
      });
    });
    const t = new WebSocketTransport(wsUrlFor({ protocol: "http:", host: `127.0.0.1:${port}` }), { WebSocketImpl: WebSocket as unknown as typeof globalThis.WebSocket, minDelayMs: 20, maxDelayMs: 50 });
    const states: string[] = [];
    t.onConnection((s) => states.push(s));
    const events: unknown[] = [];
    const off = t.on("models.progress", (p) => events.push(p));
    // called before the socket is open: queued, then sent
    await expect(t.call("settings.get", {})).resolves.toEqual({ echo: "settings.get", input: {} });
    await expect(t.call("models.status", {})).rejects.toMatchObject({ code: "no_model", message: "no model" });
    expect(events).toEqual([{ dir: "/m", done: 1, total: 2 }, { dir: "/m", done: 1, total: 2 }]);
    off();

    answer = false;
    const pending = t.call("app.info", {});
    await new Promise((r) => setTimeout(r, 50));
    for (const c of wss.clients) c.terminate();
    await expect(pending).rejects.toMatchObject({ code: "disconnected" });
    await until(() => states.filter((s) => s === "open").length >= 2, "reconnect", 5000);
    answer = true;
    await expect(t.call("presets.list", {})).resolves.toMatchObject({ echo: "presets.list" });
    expect(states[0]).toBe("open");
    expect(states).toContain("connecting");
    t.close();
    await new Promise((r) => wss.close(r));
  });
});

// A first start: `serve` without a model. Sending is refused before anything is created, the text stays with the
// caller (send answers false: the composer keeps it), and the banner goes once a model is opened.
describe("stores against the real server, without a model", () => {
  let server: RunningServer;
  let transport: WebSocketTransport;
  let off: () => void;
  const dirs: string[] = [];

  beforeAll(async () => {
    ({ server, transport, off } = await connectToServer(dirs));
    await refreshAll();
  }, 60_000);

  afterAll(async () => {
    off?.();
    transport?.close();
    await server?.close();
    useChat.getState().setConversation(null, []);
    useConversations.setState({ list: [], currentId: null, search: "" });
    useModels.setState({ status: { state: "idle", model: null, dir: null, message: null }, lastCard: null, openError: null });
    useUi.setState({ banners: [] });
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("send without a model creates no conversation and no message, and says to load a model", async () => {
    useUi.setState({ banners: [] });
    expect(useModels.getState().status.state).toBe("idle");
    expect(useChat.getState().conversation).toBeNull();
    expect(await useChat.getState().send("Hello?")).toBe(false);
    expect(useUi.getState().banners.map((b) => b.key)).toEqual(["error.noModel"]);
    expect(await transport.call("conversations.list", {})).toEqual([]);
    expect(useChat.getState().messages).toEqual([]);
    // with a conversation open, nothing is added to it either
    const id = (await useConversations.getState().create())!;
    expect(await useChat.getState().send("Hello again?")).toBe(false);
    expect((await transport.call("conversations.get", { id })).messages).toEqual([]);
    expect(useChat.getState().messages).toEqual([]);
    await useConversations.getState().remove(id);
  });

  it("opening a model clears the banner, and the same text then sends", async () => {
    expect(useUi.getState().banners.map((b) => b.key)).toEqual(["error.noModel"]);
    expect(await useModels.getState().open(join(root, "test/fixtures/models/qwen3_moe"))).toBeTruthy();
    expect(useUi.getState().banners).toEqual([]);
    expect(await useChat.getState().send("Hello?")).toBe(true);
    await until(() => !isStreaming(useChat.getState().messages) && !useChat.getState().sending, "the reply");
    expect(useChat.getState().messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(await transport.call("conversations.list", {})).toHaveLength(1);
  }, 120_000);
});

describe("stores against the real server", () => {
  let server: RunningServer;
  let transport: WebSocketTransport;
  let off: () => void;
  let modelDir: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    const modelsDir = mkdtempSync(join(tmpdir(), "moe-renderer-model-"));
    dirs.push(modelsDir);
    modelDir = longReplyCopy("qwen3_moe", modelsDir);
    ({ server, transport, off } = await connectToServer(dirs, modelDir));
    await until(() => useUi.getState().connection === "open", "the ui store to see the connection");
    // No refresh here: the "ready" event must win over refreshAll's answer even when that answer (read while the
    // model was loading) arrives after it — the race that once left the UI showing "loading" for good.
    await until(() => useModels.getState().status.state === "ready", "the fixture model", 120_000);
  }, 180_000);

  afterAll(async () => {
    off?.();
    transport?.close();
    await server?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const chat = () => useChat.getState();
  const last = () => chat().messages.at(-1)!;
  const setMax = (n: number) => chat().updateConversation({ sampling: { maxTokens: n } });

  it("loads settings, model status, recent models and app info", async () => {
    await refreshAll();
    expect(useModels.getState().status.model?.modelType).toBe("qwen3_moe");
    expect(useModels.getState().info?.transport).toBe("ws");
    expect(useModels.getState().recent.map((r) => r.dir)).toContain(modelDir);
    await useSettings.getState().update({ language: "zh" });
    expect(useSettings.getState().language).toBe("zh");
    await useSettings.getState().update({ language: "system" });
  });

  it("send: the reply streams in through chat.delta and chat.done finalises it with stats", async () => {
    const id = await useConversations.getState().create();
    expect(id).toBeTruthy();
    expect(useConversations.getState().currentId).toBe(id);
    await setMax(8);
    expect(chat().conversation?.sampling.maxTokens).toBe(8);

    const deltas: string[] = [];
    const offDelta = transport.on("chat.delta", (d) => deltas.push(d.delta));
    expect(await chat().send("Hello there")).toBe(true);
    await until(() => !isStreaming(chat().messages) && !chat().sending, "the reply");
    offDelta();
    const reply = last();
    expect(chat().messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(chat().messages[0].content).toBe("Hello there");
    expect(reply.status).toBe("complete");
    expect(reply.stats?.completionTokens).toBeGreaterThan(0);
    expect(reply.content).toBe(deltas.join(""));
    // what the store shows is what was saved
    const saved = await transport.call("conversations.get", { id: id! });
    expect(saved.messages.at(-1)?.content).toBe(reply.content);
    expect(contextUsed(chat().messages)).toEqual({ used: reply.stats!.contextTokens, total: reply.stats!.contextLength });
    expect(reply.stats!.contextTokens).toBeGreaterThan(8);
    expect(reply.stats?.completionTokens).toBe(8);
    // the card says what the session really got: the model allows 32768, a chat session has 8192, and the memory
    // estimate counts a KV cache of that size (more than the weights alone)
    const card = useModels.getState().status.model!;
    expect(card.contextLength).toBe(32768);
    expect(card.sessionContextLength).toBe(8192);
    expect(reply.stats!.contextLength).toBe(card.sessionContextLength);
    expect(card.estimatedMemoryBytes).toBeGreaterThan(card.weightBytes);
    expect(contextMeter(chat().messages, card)).toEqual({ used: reply.stats!.contextTokens, total: 8192 });
    // the list shows the conversation
    await until(() => useConversations.getState().list.some((c) => c.id === id), "the list");
  });

  it("stop ends a long reply mid-way", async () => {
    await setMax(20_000);
    const sent = chat().send("Tell me a long story");
    await until(() => last().role === "assistant" && last().content.length > 0, "first tokens");
    await chat().stop();
    await sent;
    await until(() => !isStreaming(chat().messages), "the stop");
    expect(last().status).toBe("stopped");
    expect(chat().stopping).toBe(false);
    expect(chat().liveTokens).toEqual({});
  });

  it("regenerate replaces the last reply; edit replaces the later turns", async () => {
    await setMax(6);
    const before = last().id;
    await chat().regenerate();
    await until(() => !isStreaming(chat().messages) && !chat().sending, "the new reply");
    expect(chat().messages).toHaveLength(4);
    expect(last().id).not.toBe(before);
    expect(last().status).toBe("complete");

    const firstUser = chat().messages[0].id;
    expect(await chat().edit(firstUser, "Edited question")).toBe(true);
    await until(() => !isStreaming(chat().messages) && !chat().sending, "the edited reply");
    expect(chat().messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(chat().messages[0].content).toBe("Edited question");
    const saved = await transport.call("conversations.get", { id: chat().conversation!.id });
    expect(saved.messages.map((m) => m.content)).toEqual(chat().messages.map((m) => m.content));
  });

  it("conversations: search, rename, delete (the next one opens)", async () => {
    const first = useConversations.getState().currentId!;
    await useConversations.getState().rename(first, "Pirate talk");
    const second = (await useConversations.getState().create())!;
    await useConversations.getState().refresh();
    expect(useConversations.getState().list.map((c) => c.id)).toEqual(expect.arrayContaining([first, second]));
    useConversations.getState().setSearch("Edited");
    await until(() => useConversations.getState().list.length === 1 && useConversations.getState().list[0].id === first, "the search");
    useConversations.getState().setSearch("");
    await until(() => useConversations.getState().list.length === 2, "the full list");
    expect(chat().conversation?.id).toBe(second);
    await useConversations.getState().remove(second);
    expect(useConversations.getState().currentId).toBe(first);
    expect(chat().conversation?.title).toBe("Pirate talk");
    expect(chat().messages).toHaveLength(2);
  });

  it("after the socket drops, the ui shows it and everything reloads once it is back", async () => {
    const states: string[] = [];
    const offConn = useUi.subscribe((st) => states.push(st.connection));
    const id = useConversations.getState().currentId!;
    useChat.setState({ messages: [] }); // what a reload must bring back
    (transport as unknown as { socket: WebSocket }).socket.terminate();
    await until(() => states.includes("connecting") && useUi.getState().connection === "open", "the reconnect", 30_000);
    await until(() => chat().messages.length === 2, "the conversation reloaded", 30_000);
    offConn();
    expect(useConversations.getState().currentId).toBe(id);
    expect(useUi.getState().everConnected).toBe(true);
  });

  it("an error from a call becomes a banner, not an exception", async () => {
    useUi.setState({ banners: [] });
    await useModels.getState().open("/definitely/not/a/model");
    expect(useModels.getState().openError?.message).toMatch(/not/i);
    await useConversations.getState().select("does-not-exist");
    expect(useUi.getState().banners.length).toBeGreaterThan(0);
  });

  it("a killed worker is reported once: the cut-off reply carries the error, one banner says it restarts until ready", async () => {
    useUi.setState({ banners: [] });
    // (statuses and chat.done as the server sends them when the worker is killed; test/native/services.test.ts kills a real one)
    const idle = { state: "idle" as const, model: null, dir: null, message: null };
    const conv = { id: "c1", title: "t", createdAt: 0, updatedAt: 0, systemPrompt: "", presetId: null, sampling: {} as never, modelDir: null };
    useChat.getState().setConversation(conv, [msg("u1", "user", "hi"), msg("a1", "assistant", "Once upon", "streaming")]);
    useModels.getState().setStatus({ ...idle, state: "crashed", dir: "/m", message: "The engine stopped unexpectedly (signal SIGKILL); restarting it." });
    useModels.getState().setStatus({ ...idle, state: "crashed", dir: "/m", message: "The engine stopped unexpectedly (signal SIGKILL); restarting it." });
    const error = "The engine stopped unexpectedly (signal SIGKILL) and this reply was cut off. Send again to retry.";
    useChat.getState().onDone({ conversationId: "c1", message: { ...msg("a1", "assistant", "Once upon", "error"), error } });
    expect(useChat.getState().messages.at(-1)?.error).toBe(error); // the reply's note
    useModels.getState().setStatus({ ...idle, state: "loading", dir: "/m" });
    expect(useUi.getState().banners.map((b) => b.key)).toEqual(["banner.engineCrashed"]); // only this, still there while loading
    useUi.getState().notifyError({ code: "busy", message: "x" });
    useModels.getState().setStatus({ state: "ready", model: { name: "m", sessionContextLength: 256 } as never, dir: "/m", message: null });
    expect(useUi.getState().banners.map((b) => b.key)).toEqual(["error.busy"]);

    // a restart that fails replaces "restarting" with why (translated), once
    useUi.setState({ banners: [] });
    useModels.getState().setStatus({ ...idle, state: "crashed", dir: "/m", message: "x" });
    useModels.getState().setStatus({ ...idle, state: "error", dir: "/m", message: "The engine stopped unexpectedly (code 1) 4 times within a minute. Open the model again to retry." });
    expect(useUi.getState().banners.map((b) => [b.key, b.vars])).toEqual([["error.crashLoop", { why: "code 1", n: "4" }]]);
    useUi.setState({ banners: [] });
    // back to the server's real state
    await useModels.getState().refresh();
    await useConversations.getState().refresh();
    expect(useUi.getState().banners).toEqual([]);
  });
});
