// Services without the engine: conversations, presets, settings, the data folder, models' folder checks, and
// chat's refusals when no model is loaded. Real SQLite files in temp folders.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createAppServices, type AppServices } from "../../electron/services/app.js";
import { defaultDataDir, databaseFile } from "../../electron/services/paths.js";
import { defaultPresetsDir, readBuiltinPresets } from "../../electron/services/presets.js";
import { DEFAULT_SYSTEM_PROMPT } from "../../electron/services/conversations.js";
import { crashMessage } from "../../electron/services/chat.js";
import { engineMessages, folderMessages, noModel, remoteMessages } from "../../electron/services/errors.js";
import { describeError } from "../../renderer/src/errors.js";
import { translate } from "../../renderer/src/i18n/index.js";
import type { EventName } from "../../electron/contract.js";

const dirs: string[] = [];
const running: AppServices[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "moe-services-"));
  dirs.push(d);
  return d;
}
async function services(dataDir = tempDir()) {
  const events: Array<{ name: EventName; payload: unknown }> = [];
  const s = await createAppServices({ dataDir, emit: (name, payload) => events.push({ name, payload }), transport: "ws" });
  running.push(s);
  return { s, h: s.handlers, events, dataDir };
}
afterEach(async () => {
  for (const s of running.splice(0)) await s.dispose();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("data folder", () => {
  it("follows each platform's convention; MOE_STUDIO_DATA overrides", () => {
    expect(defaultDataDir({ HOME: "/home/u" }, "linux")).toBe("/home/u/.config/moe-studio");
    expect(defaultDataDir({ HOME: "/home/u", XDG_CONFIG_HOME: "/x" }, "linux")).toBe("/x/moe-studio");
    expect(defaultDataDir({ HOME: "/Users/u" }, "darwin")).toBe("/Users/u/Library/Application Support/MoE Studio");
    expect(defaultDataDir({ HOME: "C:/Users/u", APPDATA: "C:/Users/u/AppData/Roaming" }, "win32")).toBe(join("C:/Users/u/AppData/Roaming", "MoE Studio"));
    expect(defaultDataDir({ HOME: "/home/u", MOE_STUDIO_DATA: "/data" }, "linux")).toBe("/data");
    expect(databaseFile("/data")).toBe(join("/data", "moe-studio.db"));
  });

  it("the desktop app uses the same folder as `serve`: main.ts sets Electron's userData to defaultDataDir() before ready", () => {
    // main.ts cannot run outside Electron; what decides the path is defaultDataDir (above), and this checks main.ts
    // hands it to Electron before anything reads userData (Electron's own default is ~/.config/MoE Studio on Linux).
    const src = readFileSync(join(import.meta.dirname, "../../electron/main.ts"), "utf8");
    const setPath = src.indexOf('app.setPath("userData", defaultDataDir())');
    expect(setPath).toBeGreaterThan(0);
    expect(setPath).toBeLessThan(src.indexOf("app.whenReady()"));
    expect(setPath).toBeLessThan(src.indexOf("requestSingleInstanceLock")); // the lock file lives in userData too
    expect(src).toMatch(/dataDir: app\.getPath\("userData"\)/);
  });
});

describe("ConversationService", () => {
  it("creates with the default system prompt, renames, updates, lists, searches, deletes", async () => {
    const { h } = await services();
    const c = await h["conversations.create"]({});
    expect(c.title).toBe("New chat");
    expect(c.systemPrompt).toBe(DEFAULT_SYSTEM_PROMPT);
    expect(c.sampling).toEqual({ temperature: null, topP: null, topK: null, repetitionPenalty: null, maxTokens: null, seed: null });
    const c2 = await h["conversations.create"]({ title: "Poems", presetId: "builtin-storyteller-zh" });
    expect(c2.systemPrompt).toContain("讲故事");
    expect(c2.presetId).toBe("builtin-storyteller-zh");

    const renamed = await h["conversations.rename"]({ id: c.id, title: "  Travel plans " });
    expect(renamed.title).toBe("Travel plans");
    const upd = await h["conversations.update"]({ id: c.id, systemPrompt: "Be brief.", presetId: null, sampling: { temperature: 0.2, seed: 7 } });
    expect(upd).toMatchObject({ systemPrompt: "Be brief.", presetId: null, sampling: { temperature: 0.2, seed: 7, topP: null } });
    const upd2 = await h["conversations.update"]({ id: c.id, sampling: { temperature: null } });
    expect(upd2.sampling).toMatchObject({ temperature: null, seed: 7 });

    const list = await h["conversations.list"]({});
    expect(list.map((s) => s.id).sort()).toEqual([c.id, c2.id].sort());
    expect((await h["conversations.list"]({ search: "travel" })).map((s) => s.id)).toEqual([c.id]);
    expect((await h["conversations.get"]({ id: c.id })).conversation.systemPrompt).toBe("Be brief.");

    expect(await h["conversations.delete"]({ id: c.id })).toEqual({ ok: true });
    await expect(h["conversations.get"]({ id: c.id })).rejects.toMatchObject({ code: "not_found" });
    await expect(h["conversations.delete"]({ id: c.id })).rejects.toMatchObject({ code: "not_found" });
    await expect(h["conversations.rename"]({ id: "nope", title: "x" })).rejects.toMatchObject({ code: "not_found" });
  });

  it("survives a restart of the services", async () => {
    const dataDir = tempDir();
    const first = await services(dataDir);
    const c = await first.h["conversations.create"]({ title: "Keep me", systemPrompt: "sys" });
    await first.h["settings.set"]({ theme: "dark" });
    await first.s.dispose();
    const second = await services(dataDir);
    expect((await second.h["conversations.get"]({ id: c.id })).conversation).toEqual(c);
    expect((await second.h["settings.get"]({})).theme).toBe("dark");
  });
});

describe("PresetService", () => {
  it("seeds builtins in English and Chinese, including the default assistant", async () => {
    const { h } = await services();
    const list = await h["presets.list"]({});
    const builtins = list.filter((p) => p.builtin);
    expect(builtins.length).toBeGreaterThanOrEqual(10);
    expect(builtins.find((p) => p.language === "en" && p.content === DEFAULT_SYSTEM_PROMPT)).toBeTruthy();
    expect(builtins.filter((p) => p.language === "zh").length).toBe(builtins.filter((p) => p.language === "en").length);
    expect(builtins.map((p) => p.name)).toContain("中英互译");
    expect(readBuiltinPresets(defaultPresetsDir()).length).toBe(builtins.length);
  });

  it("users add, edit and delete their own; builtins cannot be deleted or changed", async () => {
    const dataDir = tempDir();
    const { h, s } = await services(dataDir);
    const p = await h["presets.save"]({ name: "Pirate", content: "Talk like a pirate.", language: "en" });
    expect(p.builtin).toBe(false);
    const edited = await h["presets.save"]({ id: p.id, name: "Pirate 2", content: "Arr.", language: "en" });
    expect(edited).toEqual({ ...p, name: "Pirate 2", content: "Arr." });
    await expect(h["presets.delete"]({ id: "builtin-assistant-en" })).rejects.toMatchObject({ code: "invalid_input" });
    await expect(h["presets.save"]({ id: "builtin-assistant-en", name: "x", content: "y", language: "en" })).rejects.toMatchObject({ code: "invalid_input" });
    await expect(h["presets.save"]({ id: "missing", name: "x", content: "y", language: "en" })).rejects.toMatchObject({ code: "not_found" });
    await s.dispose();
    // reopened: builtins are not duplicated, the user's preset is still there
    const again = await services(dataDir);
    const list = await again.h["presets.list"]({});
    expect(list.filter((x) => x.id === p.id)).toHaveLength(1);
    expect(new Set(list.map((x) => x.id)).size).toBe(list.length);
    expect(await again.h["presets.delete"]({ id: p.id })).toEqual({ ok: true });
    expect((await again.h["presets.list"]({})).find((x) => x.id === p.id)).toBeUndefined();
  });

  it("reads a custom presets folder and names a malformed file", () => {
    const d = tempDir();
    writeFileSync(join(d, "a.json"), JSON.stringify([{ id: "x", name: "X", content: "c", language: "en" }]));
    expect(readBuiltinPresets(d)).toEqual([{ id: "x", name: "X", content: "c", language: "en", builtin: true }]);
    writeFileSync(join(d, "b.json"), JSON.stringify([{ id: "y", name: "Y", content: "c", language: "fr" }]));
    expect(() => readBuiltinPresets(d)).toThrow(/b\.json: not a preset list/);
  });
});

describe("SettingsService", () => {
  it("defaults to system language and theme; set merges", async () => {
    const { h } = await services();
    expect(await h["settings.get"]({})).toEqual({ language: "system", theme: "system", hubSource: "hf", hubEndpoint: "", modelsDir: "", kvCache: "f16" });
    expect(await h["settings.set"]({ language: "zh" })).toMatchObject({ language: "zh", theme: "system" });
    expect(await h["settings.set"]({ theme: "light" })).toMatchObject({ language: "zh", theme: "light" });
  });
});

describe("ModelService and ChatService without a model", () => {
  it("a folder that is not a model gets one plain sentence; status goes to error; no worker is started", async () => {
    const { h, s, events } = await services();
    expect(await h["models.status"]({})).toEqual({ state: "idle", model: null, dir: null, message: null });
    const empty = tempDir();
    const err = await h["models.open"]({ dir: empty }).catch((e) => e);
    expect(err.code).toBe("engine");
    expect(err.message).toBe(`${empty} is not a model folder: config.json not found`); // the path once, then why
    expect(err.message).not.toMatch(/\n\s+at /);
    expect(await h["models.status"]({})).toMatchObject({ state: "error", dir: empty });
    expect(events.some((e) => e.name === "engine.status")).toBe(true);

    writeFileSync(join(empty, "config.json"), JSON.stringify({ model_type: "bert" }));
    const err2 = await h["models.open"]({ dir: empty }).catch((e) => e);
    expect(err2.message).toMatch(new RegExp(`^${empty.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} cannot be opened as a model: \\S`));
    expect(err2.message.split(empty).length - 1, err2.message).toBe(1);

    const file = join(empty, "config.json");
    expect((await h["models.open"]({ dir: file }).catch((e) => e)).message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} is a file, not a folder`));
    expect((await h["models.open"]({ dir: join(empty, "missing") }).catch((e) => e)).message).toBe(`${join(empty, "missing")} does not exist`);
    expect(s.enginePid()).toBeUndefined();
    expect(await h["models.recent"]({})).toEqual([]);
    expect(await h["models.pickFolder"]({})).toEqual({ dir: null });
  });

  it("chat calls say no model is loaded, and save nothing", async () => {
    const { h } = await services();
    const c = await h["conversations.create"]({});
    await expect(h["chat.send"]({ conversationId: c.id, content: "hi" })).rejects.toMatchObject({ code: "no_model" });
    await expect(h["chat.send"]({ conversationId: "missing", content: "hi" })).rejects.toMatchObject({ code: "not_found" });
    expect((await h["conversations.get"]({ id: c.id })).messages).toEqual([]);
    expect(await h["chat.stop"]({ conversationId: c.id })).toEqual({ ok: true });
  });
});

describe("what services say reaches the user in their language", () => {
  const known = [
    [engineMessages.replyCrashed("signal SIGKILL"), "error.replyCrashed", { why: "signal SIGKILL" }],
    [crashMessage("code 134"), "error.replyCrashed", { why: "code 134" }],
    [engineMessages.restarting("signal SIGKILL"), "error.restarting", { why: "signal SIGKILL" }],
    [engineMessages.crashLoop("code 1", 4), "error.crashLoop", { why: "code 1", n: "4" }],
    [engineMessages.loadCrashed("Mixtral-8x7B", "signal SIGKILL"), "error.loadCrashed", { name: "Mixtral-8x7B", why: "signal SIGKILL" }],
    [engineMessages.promptTooLong(9000, 8192), "error.promptTooLong", { n: "9000", ctx: "8192" }],
    [engineMessages.promptTooLongAtLeast(1000000, 333334, 8192), "error.promptTooLongAtLeast", { chars: "1000000", n: "333334", ctx: "8192" }],
    [engineMessages.interrupted(), "error.interrupted", {}],
    [engineMessages.busyHere(), "error.busyHere", {}],
    [engineMessages.busyOther(), "error.busyOther", {}],
    [engineMessages.busyApi(), "error.busyApi", {}],
    [remoteMessages.unreachable("cluster", "http://10.0.0.5:8000/v1", "ECONNREFUSED"), "error.remoteUnreachable", { name: "cluster", url: "http://10.0.0.5:8000/v1", why: "ECONNREFUSED" }],
    [remoteMessages.brokeOff("a (b)", "https://x.example/v1", "UND_ERR_SOCKET"), "error.remoteBrokeOff", { name: "a (b)", url: "https://x.example/v1", why: "UND_ERR_SOCKET" }],
    [remoteMessages.closedEarly("c", "http://h:1/v1"), "error.remoteClosedEarly", { name: "c", url: "http://h:1/v1" }],
    [remoteMessages.keyRefused("c", "http://h:1/v1", 401, "Incorrect API key provided"), "error.remoteKeyRefused", { name: "c", url: "http://h:1/v1", status: "401", why: "Incorrect API key provided" }],
    [remoteMessages.refused("c", "http://h:1/v1", 400, "max_tokens: too large"), "error.remoteRefused", { name: "c", url: "http://h:1/v1", status: "400", why: "max_tokens: too large" }],
    [remoteMessages.keyEnvUnset("c", "VLLM_KEY"), "error.remoteKeyEnvUnset", { name: "c", env: "VLLM_KEY" }],
    [folderMessages.noConfig("/x/y"), "error.noConfig", { path: "/x/y" }],
    [folderMessages.isFile("/x/y/config.json"), "error.isFile", { path: "/x/y/config.json" }],
    [folderMessages.missing("/x/y z"), "error.folderMissing", { path: "/x/y z" }],
  ] as const;

  it("every known sentence has its own translated message, with the values kept, and needs no English detail", () => {
    for (const [message, key, vars] of known) {
      const d = describeError("engine", message);
      expect(d, message).toEqual({ key, vars });
      expect(translate("en", d.key, d.vars)).toBe(message); // the English UI says what the server said
      const zh = translate("zh", d.key, d.vars);
      expect(zh, key).toMatch(/[\u4e00-\u9fff]/);
      for (const v of Object.values(vars)) expect(zh).toContain(String(v));
    }
  });

  it("the folder errors models.open really gives are recognised; other failures keep the engine's words as detail", async () => {
    const { h } = await services();
    const empty = tempDir();
    const noConfig = await h["models.open"]({ dir: empty }).catch((e) => e);
    expect(describeError(noConfig.code, noConfig.message)).toEqual({ key: "error.noConfig", vars: { path: empty } });
    const missing = await h["models.open"]({ dir: join(empty, "gone") }).catch((e) => e);
    expect(describeError(missing.code, missing.message).key).toBe("error.folderMissing");
    writeFileSync(join(empty, "config.json"), "{ not json");
    const bad = await h["models.open"]({ dir: empty }).catch((e) => e);
    const d = describeError(bad.code, bad.message);
    expect(d).toMatchObject({ key: "error.cannotOpen", vars: { path: empty } });
    expect(d.detail).toMatch(/^config\.json: invalid JSON/);
    // unknown text: the code's message in the user's language, the text as detail; and the codes of the contract
    expect(describeError("internal", "disk I/O error")).toEqual({ key: "error.internal", detail: "disk I/O error" });
    expect(describeError("no_model", noModel().message)).toEqual({ key: "error.noModel" });
    for (const code of ["invalid_input", "unknown_call", "not_found", "no_model", "busy", "engine", "internal", "disconnected"]) {
      expect(describeError(code, "x").key, code).not.toBe("error.unexpected");
    }
    expect(describeError(undefined, "???").key).toBe("error.unexpected");
  });
});
