// Chat with a remote OpenAI-compatible endpoint, through the app's calls (createAppServices, a real database, the
// contract's validation of input and output) against our own `serve --api` started as a separate process: a real HTTP
// hop to a server this side knows nothing of. Replies stream as chat.delta like local ones and equal what the remote
// answers the same request directly; Stop keeps the text so far; regenerate and edit work; a remote killed mid-reply
// ends it with an error naming the endpoint and the partial text kept; the key is never in the database.
import { readFileSync, mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Conversation, Endpoint, Message } from "../../electron/contract.js";
import { createDispatcher, type Dispatch } from "../../electron/rpc.js";
import { createAppServices, type AppServices } from "../../electron/services/app.js";
import { databaseFile } from "../../electron/services/paths.js";
import { fixtureCopy, serveApi, type Served } from "./serve-api.js";

const KEY = "sk-remote-0123456789abcdef";
let tmp: string;
let remote: Served;
let services: AppServices;
let dispatch: Dispatch;
let dataDir: string;
type Ev = { name: string; payload: any }; // eslint-disable-line @typescript-eslint/no-explicit-any
let events: Ev[] = [];
const call = <T = any>(name: string, input: unknown) => dispatch(name, input) as Promise<T>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The chat.done of a message (waits for it). */
async function done(messageId: string, ms = 60_000): Promise<Message> {
  const end = Date.now() + ms;
  for (;;) {
    const e = events.find((x) => x.name === "chat.done" && x.payload.message.id === messageId);
    if (e) return e.payload.message as Message;
    if (Date.now() > end) throw new Error(`no chat.done for ${messageId}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
const deltas = (messageId: string) => events.filter((x) => x.name === "chat.delta" && x.payload.messageId === messageId).map((x) => x.payload.delta as string);
async function until(cond: () => boolean, ms = 30_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** What the remote answers the same request itself (non-streaming, its own client-facing endpoint). */
async function direct(r: Served, messages: Array<{ role: string; content: string }>, extra: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${r.baseUrl}/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "qwen3_moe", messages, ...extra }) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0].message.content;
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "moe-remote-"));
  // a context of 8192 (the chat cap): a reply long enough (~2 s on the tiny model) to stop or kill mid-stream
  // --kv-cache f32: the Stop test needs its seeded sample (seed 3) to run long enough to be stopped; the random fixture
  // on serve's default f16 cache samples an eos after ~60 tokens, done before Stop could reach it
  remote = await serveApi(tmp, fixtureCopy(join(tmp, "remote", "qwen3_moe"), 8192), ["--api-key", KEY, "--kv-cache", "f32"]);
  dataDir = join(tmp, "local");
  services = await createAppServices({ dataDir, emit: (name, payload) => void events.push({ name, payload }), transport: "ws" });
  dispatch = createDispatcher(services.handlers, { validateOutput: true });
}, 120_000);
afterAll(async () => {
  await services?.dispose();
  await remote?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe("remote endpoints", () => {
  let ep: Endpoint;
  let conv: Conversation;

  it("lists the remote's models, refuses a wrong key, and keeps the key out of the database", async () => {
    expect(await call("endpoints.models", { baseUrl: remote.baseUrl, key: KEY })).toEqual({ models: ["qwen3_moe"] });
    await expect(call("endpoints.models", { baseUrl: remote.baseUrl, key: "sk-wrong-0000000" })).rejects.toThrow(/The endpoint ".*" \(.*\) refused the key \(401\)/);
    await expect(call("endpoints.models", { baseUrl: "ftp://example.com/v1" })).rejects.toMatchObject({ code: "invalid_input" });
    ep = await call<Endpoint>("endpoints.add", { name: "cluster", baseUrl: remote.baseUrl + "/", model: "qwen3_moe", key: KEY });
    expect(ep).toMatchObject({ name: "cluster", baseUrl: remote.baseUrl, model: "qwen3_moe", hasKey: true, keyStorage: "memory", keyEnv: null });
    expect(await call("endpoints.models", { id: ep.id })).toEqual({ models: ["qwen3_moe"] });
    expect(await call("endpoints.list", {})).toEqual([ep]);
    for (const f of [databaseFile(dataDir), databaseFile(dataDir) + "-wal"]) {
      if (existsSync(f)) expect(readFileSync(f).includes(Buffer.from(KEY))).toBe(false);
    }
  });

  it("a conversation with the endpoint streams its replies, equal to what the remote answers directly, with no local model", async () => {
    expect((await call("models.status", {})).state).not.toBe("ready"); // nothing loaded here
    conv = await call<Conversation>("conversations.create", { endpointId: ep.id, systemPrompt: "You are terse." });
    expect(conv.endpointId).toBe(ep.id);
    await call("conversations.update", { id: conv.id, sampling: { temperature: 0, repetitionPenalty: 1, maxTokens: 12 } });
    const r = await call<{ assistantMessage: Message }>("chat.send", { conversationId: conv.id, content: "Tell me about the sea." });
    const m = await done(r.assistantMessage.id);
    expect(m.status, m.error ?? "").toBe("complete");
    expect(m.content.length).toBeGreaterThan(0);
    expect(deltas(m.id).join("")).toBe(m.content);
    const want = await direct(remote, [{ role: "system", content: "You are terse." }, { role: "user", content: "Tell me about the sea." }], { temperature: 0, repetition_penalty: 1, max_tokens: 12 });
    expect(m.content).toBe(want);
    expect(m.stats).toMatchObject({ completionTokens: 12, stopReason: "length" });
    expect(m.stats!.promptTokens).toBeGreaterThan(0);
    // the history goes along: a second turn is answered as the remote answers the whole conversation
    const r2 = await call<{ assistantMessage: Message }>("chat.send", { conversationId: conv.id, content: "And rivers?" });
    const m2 = await done(r2.assistantMessage.id);
    expect(m2.content).toBe(await direct(remote, [{ role: "system", content: "You are terse." }, { role: "user", content: "Tell me about the sea." },
      { role: "assistant", content: m.content }, { role: "user", content: "And rivers?" }], { temperature: 0, repetition_penalty: 1, max_tokens: 12 }));
    // regenerate replaces the last reply with the same (greedy) one
    const again = await call<{ assistantMessage: Message }>("chat.regenerate", { conversationId: conv.id });
    expect((await done(again.assistantMessage.id)).content).toBe(m2.content);
  });

  it("Stop ends a remote reply mid-stream, keeps its text, and the remote stops generating", async () => {
    await call("conversations.update", { id: conv.id, sampling: { temperature: 1, seed: 3, maxTokens: null } });
    const before = remote.err().length;
    const r = await call<{ assistantMessage: Message }>("chat.send", { conversationId: conv.id, content: "tell me a long story" });
    await until(() => deltas(r.assistantMessage.id).length >= 5);
    await call("chat.stop", { conversationId: conv.id });
    const m = await done(r.assistantMessage.id);
    expect(m.status).toBe("stopped");
    expect(m.content.length).toBeGreaterThan(0);
    expect(m.content.startsWith(deltas(m.id).slice(0, 5).join(""))).toBe(true);
    // the remote's log: its generation was cancelled (our client closed the stream), far short of the context
    await until(() => /cancelled/.test(remote.err().slice(before)), 10_000);
    const n = Number(/(\d+) completion tokens, cancelled/.exec(remote.err().slice(before))![1]);
    expect(n).toBeLessThan(4000);
  });

  it("a key in an environment variable that is not set is refused before anything is saved", async () => {
    const env = await call<Endpoint>("endpoints.add", { name: "headless", baseUrl: remote.baseUrl, model: "qwen3_moe", keyEnv: "MOE_TEST_UNSET_KEY_VAR" });
    expect(env).toMatchObject({ hasKey: false, keyEnv: "MOE_TEST_UNSET_KEY_VAR" });
    const c = await call<Conversation>("conversations.create", { endpointId: env.id });
    await expect(call("chat.send", { conversationId: c.id, content: "hi" })).rejects.toThrow(/environment variable MOE_TEST_UNSET_KEY_VAR, which is not set/);
    expect((await call<{ messages: Message[] }>("conversations.get", { id: c.id })).messages).toEqual([]);
    await expect(call("endpoints.add", { name: "x", baseUrl: remote.baseUrl, model: "m", key: KEY, keyEnv: "X" })).rejects.toThrow(/not both/);
  });

  it("a remote that dies mid-reply ends it with an error naming the endpoint; the text so far is kept", async () => {
    const dying = await serveApi(tmp, fixtureCopy(join(tmp, "dying", "qwen3_moe"), 8192), ["--api-key", KEY]);
    const d = await call<Endpoint>("endpoints.add", { name: "flaky", baseUrl: dying.baseUrl, model: "qwen3_moe", key: KEY });
    const c = await call<Conversation>("conversations.create", { endpointId: d.id });
    await call("conversations.update", { id: c.id, sampling: { temperature: 1, seed: 3 } });
    const r = await call<{ assistantMessage: Message }>("chat.send", { conversationId: c.id, content: "tell me a long story" });
    await until(() => deltas(r.assistantMessage.id).length >= 5);
    await dying.kill();
    const m = await done(r.assistantMessage.id);
    expect(m.status).toBe("error");
    expect(m.error).toMatch(/The endpoint "flaky" \(http:\/\/127\.0\.0\.1:\d+\/v1\) (broke off the reply|closed the connection before the reply was finished)/);
    expect(m.content.startsWith(deltas(m.id).slice(0, 5).join(""))).toBe(true);
    // saved as such: the conversation shows the partial reply and the error
    const saved = (await call<{ messages: Message[] }>("conversations.get", { id: c.id })).messages.at(-1)!;
    expect(saved).toMatchObject({ status: "error", content: m.content });
    // and the next message to a dead remote fails at once, saying it cannot be reached
    const r2 = await call<{ assistantMessage: Message }>("chat.send", { conversationId: c.id, content: "still there?" });
    expect((await done(r2.assistantMessage.id)).error).toMatch(/The endpoint "flaky" .* cannot be reached/);
  });

  it("removing an endpoint leaves its conversations (answered locally from then on) and forgets its key", async () => {
    expect(await call("endpoints.delete", { id: ep.id })).toEqual({ ok: true });
    expect((await call<{ conversation: Conversation }>("conversations.get", { id: conv.id })).conversation.endpointId).toBeNull();
    expect((await call<Endpoint[]>("endpoints.list", {})).map((e) => e.name)).toEqual(["headless", "flaky"]);
    await expect(call("endpoints.delete", { id: ep.id })).rejects.toMatchObject({ code: "not_found" });
  });
});
