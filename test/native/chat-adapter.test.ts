// Adapters in chat, through the engine worker and the app's services with a real database: a session with an adapter
// gives the same logits and greedy ids as the model loaded with that adapter (what `moe-studio logits|generate
// --adapter` run), serve's --adapter (initialAdapter) runs the served model with it, a conversation created with
// adapterDir answers differently from the base and both survive a restart of the services, Compare with base writes
// both replies (marked base / adapter, equal to what each side answers alone), and an adapter made for another model
// fails the reply with the engine's message while the conversation stays usable. Needs the compiled worker.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { events as eventSchemas, type CallName, type CallOutput, type EventName, type EventPayload, type Message } from "../../electron/contract.js";
import { EngineHost } from "../../electron/engine/host.js";
import { loadModel } from "../../electron/engine/engine.js";
import { createDispatcher, type Dispatch } from "../../electron/rpc.js";
import { createAppServices, type AppServices } from "../../electron/services/app.js";
import { GOLDENS, modelDir } from "./fixtures.js";

const NAME = "qwen3_moe";
const MODEL = modelDir(NAME);
const ADAPTER = join(GOLDENS, "train", NAME, "adapter");
const FOREIGN = join(GOLDENS, "train", "llama", "adapter");
const GREEDY = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 };
const PROMPT = "Tell me about the sea.";
const MAX = 10;

type Ev = { name: EventName; payload: unknown };
let dataDir: string;
let services: AppServices | null = null;
let dispatch: Dispatch;
let listeners: Array<(e: Ev) => void> = [];

function emit(name: EventName, payload: unknown) {
  const parsed = eventSchemas[name].safeParse(payload);
  if (!parsed.success) throw new Error(`event ${name} off-contract: ${parsed.error.message}`);
  for (const l of [...listeners]) l({ name, payload });
}

async function start(extra: { initialModel?: string; initialAdapter?: string } = {}) {
  services = await createAppServices({ dataDir, emit, transport: "ws", engine: { threads: 2 }, ...extra });
  dispatch = createDispatcher(services.handlers, { validateOutput: true });
  await services.initialLoad;
}

async function stop() {
  await services?.dispose();
  services = null;
}

function call<N extends CallName>(name: N, input: unknown): Promise<CallOutput<N>> {
  return dispatch(name, input) as Promise<CallOutput<N>>;
}

/** Every chat.done of `conversationId` until `count` have come. */
function dones(conversationId: string, count: number): Promise<Message[]> {
  return new Promise((resolve, reject) => {
    const got: Message[] = [];
    const t = setTimeout(() => reject(new Error("timed out waiting for chat.done")), 120_000);
    const l = (e: Ev) => {
      const p = e.payload as EventPayload<"chat.done">;
      if (e.name !== "chat.done" || p.conversationId !== conversationId) return;
      got.push(p.message);
      if (got.length === count) {
        clearTimeout(t);
        listeners = listeners.filter((x) => x !== l);
        resolve(got);
      }
    };
    listeners.push(l);
  });
}

async function greedyConversation(input: Record<string, unknown> = {}) {
  const c = await call("conversations.create", input);
  return call("conversations.update", { id: c.id, sampling: { temperature: 0, maxTokens: MAX } });
}

async function send(conversationId: string, content = PROMPT): Promise<Message> {
  const done = dones(conversationId, 1);
  await call("chat.send", { conversationId, content });
  return (await done)[0];
}

/** What the model loaded in this process with `adapter` (the CLI's --adapter path) answers greedily to PROMPT. */
async function inProcessReply(adapter?: string): Promise<string> {
  const m = await loadModel(MODEL, { threads: 2, ...(adapter ? { adapter } : {}) });
  try {
    const gen = m.chat().generate([{ role: "user", content: PROMPT }], { ...GREEDY, maxTokens: MAX });
    return (await gen.result).text;
  } finally {
    m.close();
  }
}

let baseText: string;
let adapterText: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "moe-chat-adapter-"));
  baseText = await inProcessReply();
  adapterText = await inProcessReply(ADAPTER);
});
afterAll(async () => {
  await stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("adapters in the engine worker", () => {
  it("a session with an adapter equals the model loaded with it; the base is untouched; one base serves both", async () => {
    const host = new EngineHost();
    try {
      const ids = [1, 2, 3, 4, 5, 6];
      const withAdapter = await loadModel(MODEL, { threads: 2, adapter: ADAPTER });
      const want = (await withAdapter.logits(ids)).map((r) => Array.from(r));
      const wantIds = (await withAdapter.chat().generate({ ids }, { ...GREEDY, maxTokens: MAX, eosIds: [] }).result).ids;
      withAdapter.close();

      const m = await host.loadModel(MODEL, { threads: 2 });
      expect(m.info.adapter).toBeNull();
      const adapted = await m.logits(ids, { adapter: ADAPTER });
      const base = await m.logits(ids);
      let diff = 0;
      for (let t = 0; t < ids.length; t++) for (let v = 0; v < want[t].length; v++) {
        expect(Math.abs(adapted[t][v] - want[t][v])).toBeLessThan(1e-5);
        diff = Math.max(diff, Math.abs(base[t][v] - want[t][v]));
      }
      expect(diff).toBeGreaterThan(1e-3);
      const s = await m.chat({ adapter: ADAPTER });
      expect((await s.generate({ ids }, { ...GREEDY, maxTokens: MAX, eosIds: [] }).result).ids).toEqual(wantIds);

      // serve --adapter loads the model with the adapter as its own
      await m.close();
      const served = await host.loadModel(MODEL, { threads: 2, adapter: ADAPTER });
      expect(served.info.adapter).toMatchObject({ r: expect.any(Number) });
      const servedRows = await served.logits(ids);
      expect(Math.abs(servedRows[2][7] - want[2][7])).toBeLessThan(1e-5);
      // ... and adapter null still runs the bare base on it (Compare with base under serve --adapter)
      const bare = await served.logits(ids, { adapter: null });
      for (let t = 0; t < ids.length; t++) for (let v = 0; v < base[t].length; v++) expect(Math.abs(bare[t][v] - base[t][v])).toBeLessThan(1e-5);

      // an adapter made for another model: the engine's message names the file and what has no place
      await expect(served.chat({ adapter: FOREIGN })).rejects.toThrow(/adapter_model\.safetensors: .*has no place for/);
    } finally {
      host.shutdown();
    }
  });
});

describe("adapters in chat (services, real database)", () => {
  it("serve --adapter: the served model's replies are the adapter's", async () => {
    await start({ initialModel: MODEL, initialAdapter: ADAPTER });
    const c = await greedyConversation();
    const r = await send(c.id);
    expect(r.status).toBe("complete");
    expect(r.content).toBe(adapterText);
    // Compare with base on the served model: the base side is the bare base, not the served adapter
    const ckpt = await greedyConversation({ adapterDir: ADAPTER });
    const done = dones(ckpt.id, 2);
    await call("chat.compare", { conversationId: ckpt.id, content: PROMPT });
    expect((await done).map((m) => [m.compare, m.content])).toEqual([["base", baseText], ["adapter", adapterText]]);
    await stop();
  });

  it("a conversation with adapterDir replies as the adapter, a base one as the base; both survive a restart", async () => {
    expect(adapterText).not.toBe(baseText); // else the fixture adapter could not tell the two apart
    await start();
    await call("models.open", { dir: MODEL });
    const plain = await greedyConversation({ title: "base" });
    const ckpt = await greedyConversation({ title: "checkpoint", modelDir: MODEL, adapterDir: ADAPTER });
    expect(plain.adapterDir).toBeNull();
    expect(ckpt).toMatchObject({ adapterDir: ADAPTER, modelDir: MODEL });
    const a = await send(ckpt.id);
    const b = await send(plain.id);
    expect(a).toMatchObject({ status: "complete", content: adapterText, compare: null });
    expect(b).toMatchObject({ status: "complete", content: baseText });

    await stop();
    await start();
    const again = await call("conversations.get", { id: ckpt.id });
    expect(again.conversation.adapterDir).toBe(ADAPTER);
    expect(again.messages.map((m) => m.content)).toEqual([PROMPT, adapterText]);
    expect((await call("conversations.get", { id: plain.id })).messages.map((m) => m.content)).toEqual([PROMPT, baseText]);
    // no model is loaded after the restart: the conversation's own base is opened by its next reply
    await call("chat.regenerate", { conversationId: ckpt.id });
    const done = await dones(ckpt.id, 1);
    expect(done[0].content).toBe(adapterText);
  });

  it("Compare with base: both replies, marked, each what its side answers alone, kept across a restart", async () => {
    const c = await greedyConversation({ modelDir: MODEL, adapterDir: ADAPTER });
    const done = dones(c.id, 2);
    const r = await call("chat.compare", { conversationId: c.id, content: PROMPT });
    expect(r.baseMessage.compare).toBe("base");
    expect(r.adapterMessage.compare).toBe("adapter");
    const [first, second] = await done;
    expect(first).toMatchObject({ id: r.baseMessage.id, status: "complete", content: baseText, compare: "base" });
    expect(second).toMatchObject({ id: r.adapterMessage.id, status: "complete", content: adapterText, compare: "adapter" });
    await stop();
    await start();
    const got = await call("conversations.get", { id: c.id });
    expect(got.messages.map((m) => [m.role, m.compare, m.content])).toEqual([
      ["user", null, PROMPT], ["assistant", "base", baseText], ["assistant", "adapter", adapterText],
    ]);
    // a conversation on the base has nothing to compare with
    const plain = await greedyConversation();
    await expect(call("chat.compare", { conversationId: plain.id, content: PROMPT })).rejects.toThrow(/no adapter to compare/);
  });

  it("an adapter for another model: the reply fails with the engine's message, the conversation stays usable", async () => {
    await call("models.open", { dir: MODEL });
    const c = await greedyConversation({ adapterDir: FOREIGN });
    const r = await send(c.id);
    expect(r.status).toBe("error");
    expect(r.error).toMatch(/adapter_model\.safetensors: .*has no place for/);
    const back = await call("conversations.update", { id: c.id, adapterDir: null });
    expect(back.adapterDir).toBeNull();
    const ok = await send(c.id, "Hello again");
    expect(ok.status).toBe("complete");
    // a folder that is no adapter is refused when the conversation is created, naming it
    await expect(call("conversations.create", { adapterDir: MODEL })).rejects.toThrow(/is not a PEFT adapter folder: .*adapter_config\.json is missing/);
  });
});
