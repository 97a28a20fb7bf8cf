// The app's services end to end through the dispatcher, with the real engine worker on a fixture model: open a
// model, chat with streamed deltas, stop mid-reply, regenerate, edit and resend, KV-cache reuse across turns,
// sampling overrides, restart, and a worker killed mid-reply (the reply is saved as an error, the worker restarts
// and reloads the model, the next message works). Every call's output and every event is checked against the contract.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { events as eventSchemas, type CallName, type CallOutput, type EventName, type EventPayload, type Message } from "../../electron/contract.js";
import { createDispatcher, type Dispatch } from "../../electron/rpc.js";
import { createAppServices, type AppServices } from "../../electron/services/app.js";
import { fixtureNames, modelDir } from "./fixtures.js";

const names = fixtureNames();
const MODEL = modelDir(names.includes("qwen3_moe") ? "qwen3_moe" : names[0]);
const OTHER = modelDir(names.includes("mixtral") ? "mixtral" : names[names.length - 1]);

type Ev = { name: EventName; payload: unknown };
let dataDir: string;
let services: AppServices;
let dispatch: Dispatch;
let log: Ev[] = [];
let listeners: Array<(e: Ev) => void> = [];
/** What the services report about the engine worker (`serve` prints these on stderr). */
const workerLog: string[] = [];

function emit(name: EventName, payload: unknown) {
  const parsed = eventSchemas[name].safeParse(payload);
  if (!parsed.success) throw new Error(`event ${name} off-contract: ${parsed.error.message}`);
  const e = { name, payload };
  log.push(e);
  for (const l of [...listeners]) l(e);
}

async function start() {
  services = await createAppServices({ dataDir, emit, transport: "ws", engine: { threads: 2 }, log: (line) => workerLog.push(line) });
  dispatch = createDispatcher(services.handlers, { validateOutput: true });
}

function call<N extends CallName>(name: N, input: unknown): Promise<CallOutput<N>> {
  return dispatch(name, input) as Promise<CallOutput<N>>;
}

/** The next event matching `pred` (after now). */
function next<E extends EventName>(name: E, pred: (p: EventPayload<E>) => boolean = () => true, ms = 60_000): Promise<EventPayload<E>> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${name}`)), ms);
    const l = (e: Ev) => {
      if (e.name === name && pred(e.payload as EventPayload<E>)) {
        clearTimeout(t);
        listeners = listeners.filter((x) => x !== l);
        resolve(e.payload as EventPayload<E>);
      }
    };
    listeners.push(l);
  });
}

const doneOf = (conversationId: string) => next("chat.done", (p) => p.conversationId === conversationId);
const deltasOf = (messageId: string) =>
  log.filter((e) => e.name === "chat.delta" && (e.payload as EventPayload<"chat.delta">).messageId === messageId).map((e) => (e.payload as EventPayload<"chat.delta">).delta);

/** A conversation whose replies are short (maxTokens) so several turns fit the fixture's 256-token context. */
async function conversation(sampling: Record<string, unknown> = { maxTokens: 12 }, systemPrompt?: string) {
  const c = await call("conversations.create", systemPrompt === undefined ? {} : { systemPrompt });
  return call("conversations.update", { id: c.id, sampling });
}

async function send(conversationId: string, content: string): Promise<{ user: Message; reply: Message }> {
  const done = doneOf(conversationId);
  const r = await call("chat.send", { conversationId, content });
  expect(r.assistantMessage.status).toBe("streaming");
  const d = await done;
  expect(d.message.id).toBe(r.assistantMessage.id);
  return { user: r.userMessage, reply: d.message };
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "moe-services-native-"));
  await start();
});
afterAll(async () => {
  await services?.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("services with the engine worker", () => {
  it("app.info reports the engine's SIMD path and CUDA state", async () => {
    const info = await call("app.info", {});
    expect(info.transport).toBe("ws");
    expect(info.canPickFolder).toBe(false);
    expect(info.simd.length).toBeGreaterThan(0);
    expect(typeof info.cuda.compiled).toBe("boolean");
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("opens a model: progress, loading -> ready, a model card, and a recent entry", async () => {
    const statuses: string[] = [];
    listeners.push((e) => e.name === "engine.status" && statuses.push((e.payload as EventPayload<"engine.status">).state));
    const card = await call("models.open", { dir: MODEL });
    // kvCache: the settings' default, f16 (engine/load-options.ts APP_KV_CACHE)
    expect(card).toMatchObject({ dir: MODEL, modelType: expect.any(String), device: "cpu", hasChatTemplate: true, kvCache: "f16" });
    expect(card.numExperts).toBeGreaterThan(0);
    expect(card.paramsActive).toBeLessThan(card.paramsTotal);
    expect(card.estimatedMemoryBytes).toBeGreaterThan(card.weightBytes);
    expect(statuses).toEqual(["loading", "ready"]);
    expect(log.some((e) => e.name === "models.progress")).toBe(true);
    expect(await call("models.status", {})).toMatchObject({ state: "ready", model: card });
    expect((await call("models.recent", {}))[0]).toMatchObject({ dir: MODEL, name: card.name, architecture: card.architecture });
    expect(services.enginePid()).toBeGreaterThan(0);
  });

  it("a full chat turn: deltas stream, the reply is saved with statistics, the title comes from the message", async () => {
    const c = await conversation({ maxTokens: 20 }, "You are a pirate.");
    const { user, reply } = await send(c.id, "Where is the treasure?");
    expect(user).toMatchObject({ role: "user", content: "Where is the treasure?", status: "complete" });
    expect(reply.status).toBe("complete");
    expect(reply.error).toBeNull();
    const deltas = deltasOf(reply.id);
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas.join("")).toBe(reply.content);
    const s = reply.stats!;
    expect(s.completionTokens).toBeGreaterThan(0);
    expect(s.completionTokens).toBeLessThanOrEqual(20);
    expect(s.contextTokens).toBe(s.promptTokens + s.completionTokens);
    expect(s.contextLength).toBe(256);
    expect(s.decodeTokensPerSecond).toBeGreaterThan(0);
    const got = await call("conversations.get", { id: c.id });
    expect(got.conversation.title).toBe("Where is the treasure?");
    expect(got.conversation.modelDir).toBe(MODEL);
    expect(got.messages).toEqual([user, reply]);
    expect((await call("conversations.list", { search: "treasure" })).map((x) => x.id)).toContain(c.id);
  });

  it("the second turn reuses the KV cache of the first", async () => {
    const c = await conversation({ maxTokens: 8 });
    const first = await send(c.id, "Count to three.");
    const second = await send(c.id, "And now to four.");
    expect(second.reply.stats!.promptTokens).toBeGreaterThan(first.reply.stats!.promptTokens);
    expect(second.reply.stats!.reusedTokens).toBeGreaterThan(first.reply.stats!.promptTokens / 2);
    expect((await call("conversations.get", { id: c.id })).messages.map((m) => m.role)).toEqual(["user", "assistant", "user", "assistant"]);
  });

  it("sampling overrides apply: the same seed gives the same sampled reply; regenerate replaces the last reply", async () => {
    const c = await conversation({ maxTokens: 16, temperature: 1.5, topK: 0, topP: 1, seed: 1234 });
    const { reply } = await send(c.id, "Tell me something random.");
    const done = doneOf(c.id);
    const r = await call("chat.regenerate", { conversationId: c.id });
    expect(r.assistantMessage.id).not.toBe(reply.id);
    const again = (await done).message;
    expect(again.content).toBe(reply.content);
    const msgs = (await call("conversations.get", { id: c.id })).messages;
    expect(msgs.map((m) => m.id)).toEqual([msgs[0].id, again.id]);

    await call("conversations.update", { id: c.id, sampling: { seed: 99 } });
    const done2 = doneOf(c.id);
    await call("chat.regenerate", { conversationId: c.id });
    expect((await done2).message.content).not.toBe(reply.content);
  });

  it("Stop mid-reply keeps the partial text with status stopped", async () => {
    const c = await conversation({ maxTokens: 200, temperature: 1, seed: 5, topK: 0, topP: 1 });
    const done = doneOf(c.id);
    const firstDelta = next("chat.delta", (p) => p.conversationId === c.id);
    await call("chat.send", { conversationId: c.id, content: "Write a long story." });
    await firstDelta;
    expect(await call("chat.stop", { conversationId: c.id })).toEqual({ ok: true });
    const m = (await done).message;
    expect(m.status).toBe("stopped");
    expect(m.stats!.stopReason).toBe("cancelled");
    expect(m.stats!.completionTokens).toBeLessThan(200);
    expect(m.content).toBe(deltasOf(m.id).join(""));
    expect((await call("conversations.get", { id: c.id })).messages[1]).toEqual(m);
    // the next turn works and sees the stopped reply as history
    const { reply } = await send(c.id, "Go on.");
    expect(reply.status).not.toBe("error");
  });

  it("one reply at a time: a second send while one is streaming is 'busy'", async () => {
    const c = await conversation({ maxTokens: 100, temperature: 1, seed: 3 });
    const done = doneOf(c.id);
    await call("chat.send", { conversationId: c.id, content: "one" });
    await expect(call("chat.send", { conversationId: c.id, content: "two" })).rejects.toMatchObject({ code: "busy" });
    await expect(call("chat.regenerate", { conversationId: c.id })).rejects.toMatchObject({ code: "busy" });
    await done;
    expect((await call("conversations.get", { id: c.id })).messages).toHaveLength(2);
  });

  it("edit and resend replaces every later turn", async () => {
    const c = await conversation({ maxTokens: 6 });
    const t1 = await send(c.id, "first question");
    await send(c.id, "second question");
    const done = doneOf(c.id);
    const r = await call("chat.edit", { conversationId: c.id, messageId: t1.user.id, content: "first question, edited" });
    expect(r.userMessage).toMatchObject({ id: t1.user.id, content: "first question, edited" });
    const reply = (await done).message;
    expect(reply.status).toBe("complete");
    const msgs = (await call("conversations.get", { id: c.id })).messages;
    expect(msgs.map((m) => [m.id, m.content])).toEqual([[t1.user.id, "first question, edited"], [reply.id, reply.content]]);
    await expect(call("chat.edit", { conversationId: c.id, messageId: reply.id, content: "x" })).rejects.toMatchObject({ code: "invalid_input" });
    await expect(call("chat.edit", { conversationId: c.id, messageId: "nope", content: "x" })).rejects.toMatchObject({ code: "not_found" });
  });

  it("a long conversation is trimmed from the oldest turns to fit the context", async () => {
    const c = await conversation({ maxTokens: 40 });
    for (let i = 0; i < 6; i++) {
      const { reply } = await send(c.id, `Turn ${i}: ${"tell me more about mixtures of experts. ".repeat(3)}`);
      expect(reply.status).toBe("complete");
      expect(reply.stats!.contextTokens).toBeLessThanOrEqual(256);
    }
  });

  it("deleting a conversation while it streams stops the reply", async () => {
    const c = await conversation({ maxTokens: 200, temperature: 1, seed: 8 });
    const done = doneOf(c.id);
    const firstDelta = next("chat.delta", (p) => p.conversationId === c.id);
    await call("chat.send", { conversationId: c.id, content: "hello" });
    await firstDelta;
    expect(await call("conversations.delete", { id: c.id })).toEqual({ ok: true });
    await done;
    await expect(call("conversations.get", { id: c.id })).rejects.toMatchObject({ code: "not_found" });
  });

  it("a worker killed mid-reply: the reply is saved as an error, the worker restarts and reloads, the next send works", async () => {
    const c = await conversation({ maxTokens: 200, temperature: 1, seed: 11, topK: 0, topP: 1 });
    const pid = services.enginePid()!;
    const statuses: string[] = [];
    listeners.push((e) => e.name === "engine.status" && statuses.push((e.payload as EventPayload<"engine.status">).state));
    const ready = next("engine.status", (p) => p.state === "ready");
    const done = doneOf(c.id);
    const firstDelta = next("chat.delta", (p) => p.conversationId === c.id);
    await call("chat.send", { conversationId: c.id, content: "Say a lot." });
    await firstDelta;
    workerLog.length = 0;
    process.kill(pid, "SIGKILL");
    const m = (await done).message;
    expect(m.status).toBe("error");
    expect(m.error).toBe("The engine stopped unexpectedly (signal SIGKILL) and this reply was cut off. Send again to retry.");
    expect(m.content).toBe(deltasOf(m.id).join(""));
    expect(m.content.length).toBeGreaterThan(0);
    await ready;
    expect(statuses).toEqual(["crashed", "loading", "ready"]);
    expect(services.enginePid()).not.toBe(pid);
    // one line when it died (what, how, what happens now), one when it is back
    expect(workerLog).toEqual([
      `the engine worker (pid ${pid}) died (signal SIGKILL); restarting it`,
      `the engine worker is back (pid ${services.enginePid()}): ${basename(MODEL)} is loaded again`,
    ]);
    expect(await call("models.status", {})).toMatchObject({ state: "ready", model: { dir: MODEL } });

    const saved = (await call("conversations.get", { id: c.id })).messages;
    expect(saved[1]).toEqual(m);
    const { reply } = await send(c.id, "Again, please.");
    expect(reply.status).toBe("complete");
    expect(reply.content).toBe(deltasOf(reply.id).join(""));
  });

  it("a send right after the crash waits for the reload instead of failing", async () => {
    const c = await conversation({ maxTokens: 4 });
    const ready = next("engine.status", (p) => p.state === "ready");
    process.kill(services.enginePid()!, "SIGKILL");
    await next("engine.status", (p) => p.state === "crashed");
    const { reply } = await send(c.id, "hi");
    expect(reply.status).toBe("complete");
    await ready;
  });

  it("opening another model switches to it, with the KV cache the settings say now; a bad folder leaves the loaded model in place", async () => {
    expect((await call("settings.set", { kvCache: "int8" })).kvCache).toBe("int8");
    expect((await call("models.status", {})).model?.kvCache).toBe("f16"); // the loaded model keeps its cache
    const card = await call("models.open", { dir: OTHER });
    expect(card).toMatchObject({ dir: OTHER, kvCache: "int8" });
    await call("settings.set", { kvCache: "f16" });
    await expect(call("settings.set", { kvCache: "q8_0" })).rejects.toMatchObject({ code: "invalid_input", message: expect.stringContaining("kvCache") });
    await expect(call("models.open", { dir: dataDir })).rejects.toMatchObject({ code: "engine", message: `${dataDir} is not a model folder: config.json not found` });
    expect(await call("models.status", {})).toMatchObject({ state: "ready", model: { dir: OTHER } });
    const c = await conversation({ maxTokens: 4 });
    expect((await send(c.id, "hello")).reply.status).toBe("complete");
    expect((await call("models.recent", {})).map((r) => r.dir)).toEqual([OTHER, MODEL]);
    expect(await call("models.forget", { dir: OTHER })).toEqual({ ok: true });
    expect((await call("models.recent", {})).map((r) => r.dir)).toEqual([MODEL]);
  });

  it("an unsupported model_type is named in the error, and the status says so", async () => {
    const bad = join(dataDir, "bert");
    cpSync(MODEL, bad, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(bad, "config.json"), "utf8"));
    writeFileSync(join(bad, "config.json"), JSON.stringify({ ...cfg, model_type: "bert", architectures: ["BertModel"] }));
    const e = await call("models.open", { dir: bad }).catch((x) => x);
    expect(e).toMatchObject({ code: "engine", message: expect.stringMatching(/ cannot be opened as a model: .*model_type 'bert' is not supported/) });
    expect(e.message.startsWith(`${bad} cannot be opened as a model: `)).toBe(true);
    expect(e.message.split(bad).length - 1, e.message).toBe(1); // the folder's path, once
    expect(await call("models.status", {})).toMatchObject({ state: "error", model: null, dir: bad, message: e.message });
    const c = await conversation({ maxTokens: 4 });
    await expect(call("chat.send", { conversationId: c.id, content: "hi" })).rejects.toMatchObject({ code: "no_model" });
  });

  it("after a restart of the services every conversation and message is intact", async () => {
    const before = await call("conversations.list", {});
    const full = await Promise.all(before.map((s) => call("conversations.get", { id: s.id })));
    await services.dispose();
    log = [];
    await start();
    expect(await call("conversations.list", {})).toEqual(before);
    for (const f of full) expect(await call("conversations.get", { id: f.conversation.id })).toEqual(f);
    expect(await call("models.status", {})).toMatchObject({ state: "idle" });
  });
});
