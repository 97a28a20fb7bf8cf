// The dispatcher: the only way a transport reaches the services. Unknown calls, malformed payloads (wrong types,
// extra keys, missing fields, huge strings) are rejected before a handler runs, with a message naming the field;
// handler errors come back as RpcErrors with readable messages; outputs match the contract.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { calls, RpcError, type CallName } from "../../electron/contract.js";
import { asRpcError, createDispatcher, toWireError, type Dispatch, type Handlers } from "../../electron/rpc.js";
import { createAppServices, type AppServices } from "../../electron/services/app.js";

let dir: string;
let services: AppServices;
let dispatch: Dispatch;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "moe-rpc-"));
  services = await createAppServices({ dataDir: dir, emit: () => {}, transport: "ws" });
  dispatch = createDispatcher(services.handlers, { validateOutput: true });
});
afterAll(async () => {
  await services.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function rejection(name: unknown, input: unknown): Promise<RpcError> {
  const e = await dispatch(name, input).then(
    () => null,
    (err) => err,
  );
  expect(e).toBeInstanceOf(RpcError);
  return e as RpcError;
}

describe("createDispatcher", () => {
  it("has a handler for every call in the contract", () => {
    expect(Object.keys(services.handlers).sort()).toEqual(Object.keys(calls).sort());
  });

  it("rejects unknown call names", async () => {
    for (const name of ["nope", "conversations", "__proto__", "toString", "constructor", 42, null, undefined, "x".repeat(5000)]) {
      const e = await rejection(name, {});
      expect(e.code).toBe("unknown_call");
      expect(e.message.length).toBeLessThan(200);
    }
  });

  it("rejects malformed payloads and names the field", async () => {
    const cases: Array<[CallName, unknown, RegExp]> = [
      ["conversations.rename", { id: "a", title: 5 }, /title/],                        // wrong type
      ["conversations.rename", { id: "a" }, /title/],                                   // missing field
      ["conversations.rename", { id: "a", title: "" }, /title/],                        // too short
      ["conversations.get", { id: "a", extra: 1 }, /unknown key "extra"/],              // extra key
      ["conversations.get", { id: "x".repeat(65) }, /id/],                              // id too long
      ["conversations.get", "a", /input/],                                              // not an object
      ["conversations.get", null, /input/],
      ["conversations.get", [], /input/],
      ["chat.send", { conversationId: "c", content: "x".repeat(1_000_001) }, /content/], // huge string
      ["chat.send", { conversationId: "c", content: "" }, /content/],
      ["conversations.list", { search: "s".repeat(501) }, /search/],
      ["conversations.update", { id: "a", sampling: { temperature: 9 } }, /sampling\.temperature/],
      ["conversations.update", { id: "a", sampling: { topP: 0 } }, /sampling\.topP/],
      ["conversations.update", { id: "a", sampling: { topK: 1.5 } }, /sampling\.topK/],
      ["conversations.update", { id: "a", sampling: { bogus: 1 } }, /sampling.*bogus/],
      ["settings.set", { language: "fr" }, /language/],
      ["settings.set", { theme: "dark", font: "x" }, /font/],
      ["presets.save", { name: "n", content: "c", language: "de" }, /language/],
      ["models.open", { dir: "" }, /dir/],
      ["models.open", { dir: "d".repeat(4097) }, /dir/],
      ["app.info", { verbose: true }, /verbose/],
    ];
    for (const [name, input, field] of cases) {
      const e = await rejection(name, input);
      expect(e.code, `${name} ${JSON.stringify(input).slice(0, 80)}`).toBe("invalid_input");
      expect(e.message).toMatch(field);
      expect(e.message.length).toBeLessThan(600);
    }
  });

  it("a missing input is an empty object for calls that take none", async () => {
    expect(await dispatch("settings.get", undefined)).toEqual({ language: "system", theme: "system", hubSource: "hf", hubEndpoint: "", modelsDir: "", kvCache: "f16" });
  });

  it("passes valid input through and validates the output", async () => {
    const c = (await dispatch("conversations.create", { title: "T" })) as { id: string };
    expect(await dispatch("conversations.rename", { id: c.id, title: "U" })).toMatchObject({ id: c.id, title: "U" });
    expect(await dispatch("conversations.list", {})).toHaveLength(1);
    expect(await dispatch("presets.list", {})).not.toHaveLength(0);
    expect(await dispatch("models.recent", {})).toEqual([]);
    expect(await dispatch("models.status", {})).toMatchObject({ state: "idle" });
    expect(await dispatch("models.forget", { dir: "/nowhere" })).toEqual({ ok: true });
  });

  it("handler errors keep their code and message", async () => {
    expect(await rejection("conversations.get", { id: "missing" })).toMatchObject({ code: "not_found" });
    const c = (await dispatch("conversations.create", {})) as { id: string };
    expect(await rejection("chat.send", { conversationId: c.id, content: "hi" })).toMatchObject({ code: "no_model", message: expect.stringMatching(/Open a model/) });
  });

  it("a handler that returns something off-contract is an internal error; a thrown Error keeps its message", async () => {
    const bad = { ...services.handlers, "models.recent": async () => [{ dir: 1 }] } as unknown as Handlers;
    const d = createDispatcher(bad, { validateOutput: true });
    await expect(d("models.recent", {})).rejects.toMatchObject({ code: "internal", message: expect.stringMatching(/models\.recent returned a malformed result/) });
    const throwing = { ...services.handlers, "settings.get": async () => { throw new Error("disk on fire"); } } as unknown as Handlers;
    await expect(createDispatcher(throwing)("settings.get", {})).rejects.toMatchObject({ code: "internal", message: "disk on fire" });
  });
});

describe("toWireError", () => {
  it("maps any thrown value to { message, code }", () => {
    expect(toWireError(new RpcError("busy", "wait"))).toEqual({ message: "wait", code: "busy" });
    expect(toWireError(new Error("the engine worker exited (signal SIGKILL); load the model again"))).toMatchObject({ code: "engine" });
    expect(toWireError(Object.assign(new Error("bad"), { code: "invalid_input" }))).toEqual({ message: "bad", code: "invalid_input" });
    expect(toWireError(Object.assign(new Error("enoent"), { code: "ENOENT" }))).toEqual({ message: "enoent", code: "internal" });
    expect(toWireError("text")).toEqual({ message: "text", code: "internal" });
    expect(toWireError(undefined)).toEqual({ message: "unexpected error", code: "internal" });
    expect(asRpcError(new RpcError("not_found", "x"))).toBeInstanceOf(RpcError);
  });
});
