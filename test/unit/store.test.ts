// The SQLite layer: migrations from an empty file and from the previous version (v1, before the full-text index),
// nothing lost when the database is closed and opened again, cascades, and the repositories' queries.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { migrate, MIGRATIONS, openDatabase, SCHEMA_VERSION, type Db } from "../../electron/store/db.js";
import { excerpt, NO_SAMPLING, repositories } from "../../electron/store/repositories.js";
import type { Conversation, Message } from "../../electron/contract.js";

const dirs: string[] = [];
const open: Db[] = [];
function tempFile(): string {
  const d = mkdtempSync(join(tmpdir(), "moe-store-"));
  dirs.push(d);
  return join(d, "nested", "app.db");
}
function track(db: Db): Db {
  open.push(db);
  return db;
}
afterEach(() => {
  for (const db of open.splice(0)) if (db.open) db.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function conv(id: string, title: string, at = 1000): Conversation {
  return { id, title, createdAt: at, updatedAt: at, systemPrompt: "You are a helpful assistant.", presetId: null, sampling: { ...NO_SAMPLING }, modelDir: null, adapterDir: null };
}
function msg(id: string, conversationId: string, role: "user" | "assistant", content: string): Message {
  return { id, conversationId, role, content, createdAt: 1, status: "complete", error: null, stats: null, compare: null };
}

describe("openDatabase", () => {
  it("creates the folder and migrates an empty file to the latest version with WAL and foreign keys", () => {
    const db = track(openDatabase(tempFile()));
    expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBeGreaterThanOrEqual(2);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("foreign_keys", { simple: true })).toBe(1);
    expect(db.pragma("busy_timeout", { simple: true })).toBe(5000);
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type IN ('table') ORDER BY name").all().map((r) => (r as { name: string }).name);
    for (const t of ["conversations", "messages", "presets", "settings", "recent_models", "messages_fts"]) expect(tables).toContain(t);
  });

  it("migrates a v1 database with data to the latest version; nothing is lost and old messages become searchable", () => {
    const file = tempFile();
    const v1 = openDatabase(file, { targetVersion: 1 });
    expect(v1.pragma("user_version", { simple: true })).toBe(1);
    // written the way v1 of the app wrote it (raw SQL: the repositories are the current version's)
    v1.prepare("INSERT INTO conversations VALUES ('c1', 'Trip to Hangzhou', 1, 2, 'sys', NULL, '{\"temperature\":0.3}', '/models/x')").run();
    v1.prepare("INSERT INTO messages VALUES ('m1', 'c1', 1, 'user', '西湖边有什么好吃的？', 1, 'complete', NULL, NULL)").run();
    v1.prepare("INSERT INTO messages VALUES ('m2', 'c1', 2, 'assistant', 'Try the vinegar fish.', 2, 'complete', NULL, '{\"promptTokens\":3}')").run();
    v1.prepare("INSERT INTO settings VALUES ('theme', '\"dark\"')").run();
    v1.prepare("INSERT INTO recent_models VALUES ('/models/x', 'x', 'MixtralForCausalLM', 5)").run();
    expect(v1.prepare("SELECT name FROM sqlite_master WHERE name = 'messages_fts'").get()).toBeUndefined();
    v1.close();

    const db = track(openDatabase(file));
    expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    const repos = repositories(db);
    const c = repos.conversations.get("c1")!;
    expect(c.title).toBe("Trip to Hangzhou");
    expect(c.sampling).toEqual({ ...NO_SAMPLING, temperature: 0.3 });
    expect(c.modelDir).toBe("/models/x");
    // v5: old conversations run on the base, old messages are ordinary ones
    expect(c.adapterDir).toBeNull();
    expect(repos.messages.list("c1").map((m) => m.compare)).toEqual([null, null]);
    expect(repos.messages.list("c1").map((m) => m.content)).toEqual(["西湖边有什么好吃的？", "Try the vinegar fish."]);
    expect(repos.settings.get("theme")).toBe("dark");
    expect(repos.recentModels.list()).toEqual([{ dir: "/models/x", name: "x", architecture: "MixtralForCausalLM", lastOpenedAt: 5 }]);
    // the v2 index was filled from the v1 rows
    expect(repos.conversations.list("好吃").map((s) => s.id)).toEqual(["c1"]);
    expect(repos.conversations.list("VINEGAR")[0].snippet).toContain("vinegar fish");
  });

  it("refuses a database from a newer app, and a failed migration leaves the file at its old version", () => {
    const file = tempFile();
    mkdirSync(dirname(file), { recursive: true });
    const raw = new Database(file);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    expect(() => openDatabase(file)).toThrow(/newer than this app understands/);

    const file2 = tempFile();
    const v1 = openDatabase(file2, { targetVersion: 1 });
    v1.exec("CREATE TABLE messages_fts (x)"); // makes v2's CREATE VIRTUAL TABLE fail
    expect(() => migrate(v1)).toThrow();
    expect(v1.pragma("user_version", { simple: true })).toBe(1);
    expect(v1.prepare("SELECT name FROM sqlite_master WHERE name = 'messages_fts_insert'").get()).toBeUndefined();
    v1.close();
  });

  it("every migration has a description and versions ascend from 1", () => {
    MIGRATIONS.forEach((m, i) => {
      expect(m.version).toBe(i + 1);
      expect(m.description.length).toBeGreaterThan(5);
    });
  });
});

describe("repositories", () => {
  it("keep everything across close and reopen", () => {
    const file = tempFile();
    let db = openDatabase(file);
    let r = repositories(db);
    r.conversations.insert(conv("a", "First", 10));
    r.conversations.insert(conv("b", "Second", 20));
    r.messages.append(msg("a1", "a", "user", "hello"));
    r.messages.append({ ...msg("a2", "a", "assistant", "hi"), stats: { promptTokens: 5, reusedTokens: 0, completionTokens: 1, prefillTokensPerSecond: 1, decodeTokensPerSecond: 2, stopReason: "eos", contextTokens: 6, contextLength: 256 } });
    r.presets.upsert({ id: "p", name: "Mine", content: "Be brief.", language: "en", builtin: false });
    r.settings.set("language", "zh");
    r.recentModels.upsert({ dir: "/m", name: "m", architecture: null, lastOpenedAt: 1 });
    db.close();

    db = track(openDatabase(file));
    r = repositories(db);
    expect(r.conversations.list().map((c) => c.id)).toEqual(["b", "a"]);
    expect(r.conversations.list()[1].snippet).toBe("hi");
    expect(r.messages.list("a").map((m) => [m.id, m.role, m.content])).toEqual([["a1", "user", "hello"], ["a2", "assistant", "hi"]]);
    expect(r.messages.get("a2")!.stats!.contextLength).toBe(256);
    expect(r.presets.get("p")!.content).toBe("Be brief.");
    expect(r.settings.get("language")).toBe("zh");
    expect(r.recentModels.list()[0].dir).toBe("/m");
  });

  it("deleting a conversation deletes its messages (and their index entries)", () => {
    const db = track(openDatabase(tempFile()));
    const r = repositories(db);
    r.conversations.insert(conv("a", "A"));
    r.messages.append(msg("a1", "a", "user", "unique-word-zebra"));
    expect(r.conversations.list("zebra")).toHaveLength(1);
    expect(r.conversations.delete("a")).toBe(true);
    expect(r.messages.get("a1")).toBeNull();
    expect(db.prepare("SELECT count(*) AS n FROM messages_fts WHERE content LIKE '%zebra%'").get()).toEqual({ n: 0 });
    expect(() => r.messages.append(msg("x", "missing", "user", "orphan"))).toThrow(/FOREIGN KEY/);
  });

  it("search matches titles and message content literally (wildcards are text), case-insensitively", () => {
    const db = track(openDatabase(tempFile()));
    const r = repositories(db);
    r.conversations.insert(conv("t", "Rust lifetimes", 1));
    r.conversations.insert(conv("c", "Untitled", 2));
    r.conversations.insert(conv("p", "Percent", 3));
    r.messages.append(msg("c1", "c", "user", "How do I write a lifetime in RUST?"));
    r.messages.append(msg("p1", "p", "user", "growth was 100% this year"));
    r.messages.append(msg("p2", "p", "assistant", "a_b"));
    expect(r.conversations.list("rust").map((s) => s.id)).toEqual(["c", "t"]);
    expect(r.conversations.list("0%").map((s) => s.id)).toEqual(["p"]);
    expect(r.conversations.list("%")).toHaveLength(1);
    expect(r.conversations.list("a_b").map((s) => s.id)).toEqual(["p"]);
    expect(r.conversations.list("ab")).toHaveLength(0);
    expect(r.conversations.list("nothing like this")).toEqual([]);
    // editing a message updates the index
    r.messages.setContent("c1", "now about Go");
    expect(r.conversations.list("RUST").map((s) => s.id)).toEqual(["t"]);
    expect(r.conversations.list("about go")[0].snippet).toBe("now about Go");
  });

  it("messages keep their order; deleteAfter drops later turns; interrupted replies are marked", () => {
    const db = track(openDatabase(tempFile()));
    const r = repositories(db);
    r.conversations.insert(conv("a", "A"));
    for (const [i, role] of (["user", "assistant", "user", "assistant"] as const).entries()) r.messages.append(msg(`m${i}`, "a", role, `t${i}`));
    r.messages.deleteAfter("m1");
    expect(r.messages.list("a").map((m) => m.id)).toEqual(["m0", "m1"]);
    r.messages.append({ ...msg("m9", "a", "assistant", "partial"), status: "streaming" });
    expect(r.messages.list("a").map((m) => m.id)).toEqual(["m0", "m1", "m9"]);
    expect(r.messages.markInterrupted("closed")).toBe(1);
    expect(r.messages.get("m9")).toMatchObject({ status: "error", error: "closed", content: "partial" });
  });

  it("excerpt centres the match", () => {
    const text = `${"a ".repeat(100)}needle${" b".repeat(100)}`;
    const e = excerpt(text, "NEEDLE", 40);
    expect(e).toContain("needle");
    expect(e.startsWith("…") && e.endsWith("…")).toBe(true);
    expect(excerpt("short", "")).toBe("short");
  });
});
