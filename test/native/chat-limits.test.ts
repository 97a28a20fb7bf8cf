// Untrusted input on the chat path, through the services with the real engine worker: a model folder whose chat
// template loops forever, and a 1M-character message. Each ends in a reply with a clear error well within a second,
// the services keep answering meanwhile (the event loop ticks, other calls return), and the next message works.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CallName, CallOutput, EventName, EventPayload, Message } from "../../electron/contract.js";
import { createDispatcher, type Dispatch } from "../../electron/rpc.js";
import { createAppServices, type AppServices } from "../../electron/services/app.js";
import { fixtureNames, modelDir } from "./fixtures.js";

const names = fixtureNames();
const MODEL = modelDir(names.includes("qwen2") ? "qwen2" : names[0]);

let dataDir: string;
let hostileDir: string;
let services: AppServices;
let dispatch: Dispatch;
let listeners: Array<(name: EventName, payload: unknown) => void> = [];

function call<N extends CallName>(name: N, input: unknown): Promise<CallOutput<N>> {
  return dispatch(name, input) as Promise<CallOutput<N>>;
}

/** Send and wait for the reply's chat.done, counting how often a 10 ms interval fired and timing a call made meanwhile. */
async function sendTimed(conversationId: string, content: string): Promise<{ reply: Message; ms: number; ticks: number; listMs: number }> {
  let ticks = 0;
  const iv = setInterval(() => ticks++, 10);
  const t0 = performance.now();
  const done = new Promise<EventPayload<"chat.done">>((resolve) => {
    const l = (name: EventName, payload: unknown) => {
      const p = payload as EventPayload<"chat.done">;
      if (name === "chat.done" && p.conversationId === conversationId) {
        listeners = listeners.filter((x) => x !== l);
        resolve(p);
      }
    };
    listeners.push(l);
  });
  await call("chat.send", { conversationId, content });
  // While the reply is being prepared, the services answer other calls.
  const l0 = performance.now();
  await call("conversations.list", {});
  const listMs = performance.now() - l0;
  const d = await done;
  const ms = performance.now() - t0;
  clearInterval(iv);
  return { reply: d.message, ms, ticks, listMs };
}

async function conversation(): Promise<string> {
  const c = await call("conversations.create", {});
  await call("conversations.update", { id: c.id, sampling: { maxTokens: 4 } });
  return c.id;
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "moe-chat-limits-"));
  // The fixture model with a chat template that never ends (chat_template.jinja wins over tokenizer_config.json).
  hostileDir = join(dataDir, "hostile-model");
  cpSync(MODEL, hostileDir, { recursive: true });
  writeFileSync(join(hostileDir, "chat_template.jinja"), "{% for i in range(100000000) %}x{% endfor %}");
  services = await createAppServices({ dataDir, emit: (name, payload) => listeners.forEach((l) => l(name, payload)), transport: "ws", engine: { threads: 2 } });
  dispatch = createDispatcher(services.handlers, { validateOutput: true });
});
afterAll(async () => {
  await services?.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("chat with untrusted input", () => {
  it("a 1M-character Chinese message is refused from its size in well under a second, naming the context; nothing is saved; the next message works", async () => {
    await call("models.open", { dir: MODEL });
    const id = await conversation();
    expect((await sendTimed(id, "你好")).reply.status).toBe("complete"); // warm: text process, tokenizer
    const before = await call("conversations.get", { id });

    let ticks = 0;
    const iv = setInterval(() => ticks++, 10);
    const t0 = performance.now();
    const huge = "你".repeat(1_000_000);
    const e = await call("chat.send", { conversationId: id, content: huge }).catch((x) => x);
    const ms = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 30));
    clearInterval(iv);
    expect(e.code).toBe("invalid_input");
    expect(e.message).toMatch(/^This message is 1000000 characters long, at least \d+ tokens, more than this chat's context of 256 tokens\./);
    expect(ms).toBeLessThan(1000);
    expect(ticks).toBeGreaterThan(0);
    expect(await call("conversations.get", { id })).toEqual(before);
    // Editing a message into one that cannot fit is refused the same way.
    const user = before.messages[0];
    await expect(call("chat.edit", { conversationId: id, messageId: user.id, content: huge })).rejects.toMatchObject({ code: "invalid_input" });

    expect((await sendTimed(id, "再见")).reply.status).toBe("complete");
  });

  it("a message the bound lets through is tokenized in the text process and refused with its real count", async () => {
    // 3000 ASCII characters: at least 231 tokens by the bound (under the 256 of the context), 1001 in fact.
    const id = await conversation();
    const r = await sendTimed(id, "hello world ".repeat(250));
    expect(r.reply.status).toBe("error");
    expect(r.reply.error).toMatch(/^This message is \d+ tokens long, more than this chat's context of 256 tokens\./);
    expect(r.ms).toBeLessThan(2000);
    expect(r.listMs).toBeLessThan(200);
  });

  it("a chat template that loops forever ends the reply in a clear error naming the folder; the services keep answering", async () => {
    await call("models.open", { dir: hostileDir });
    const id = await conversation();
    const r = await sendTimed(id, "hello");
    expect(r.reply.status).toBe("error");
    expect(r.reply.error).toBe(`chat template of ${hostileDir} did not finish within 500 ms`);
    expect(r.ms).toBeLessThan(1000);
    expect(r.ticks).toBeGreaterThanOrEqual(Math.floor(r.ms / 40));
    expect(r.listMs).toBeLessThan(200);
    // The message is saved with its error, like any failed reply.
    const saved = await call("conversations.get", { id });
    expect(saved.messages.map((m) => [m.role, m.status])).toEqual([["user", "complete"], ["assistant", "error"]]);

    await call("models.open", { dir: MODEL });
    expect((await sendTimed(await conversation(), "hello")).reply.status).toBe("complete");
  });
});
