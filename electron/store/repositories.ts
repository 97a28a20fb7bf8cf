// Small repositories over the database: prepared statements in, contract-shaped objects out.
import type { Conversation, ConversationSummary, Endpoint, GenerationStats, Message, Preset, RecentModel, SamplingSettings } from "../contract.js";
import type { Db } from "./db.js";

export const NO_SAMPLING: SamplingSettings = { temperature: null, topP: null, topK: null, repetitionPenalty: null, maxTokens: null, seed: null };

interface ConversationRow {
  id: string;
  title: string;
  created_at: number;
  updated_at: number;
  system_prompt: string;
  preset_id: string | null;
  sampling: string;
  model_dir: string | null;
  adapter_dir: string | null;
  endpoint_id: string | null;
}

function toConversation(r: ConversationRow): Conversation {
  let sampling: SamplingSettings = NO_SAMPLING;
  try {
    sampling = { ...NO_SAMPLING, ...(JSON.parse(r.sampling) as Partial<SamplingSettings>) };
  } catch {
    // a damaged sampling column falls back to the model's defaults
  }
  return {
    id: r.id,
    title: r.title,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    systemPrompt: r.system_prompt,
    presetId: r.preset_id,
    sampling,
    modelDir: r.model_dir,
    adapterDir: r.adapter_dir,
    endpointId: r.endpoint_id,
  };
}

/** Escape LIKE wildcards so the user's text is matched literally. */
function likePattern(s: string): string {
  return `%${s.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** About `width` characters around the first case-insensitive occurrence of `needle`. */
export function excerpt(text: string, needle: string, width = 80): string {
  const flat = text.replace(/\s+/g, " ").trim();
  const at = needle ? flat.toLowerCase().indexOf(needle.toLowerCase()) : -1;
  if (at < 0) return flat.length > width ? `${flat.slice(0, width)}…` : flat;
  const start = Math.max(0, at - Math.floor((width - needle.length) / 2));
  const end = Math.min(flat.length, start + width);
  return `${start > 0 ? "…" : ""}${flat.slice(start, end)}${end < flat.length ? "…" : ""}`;
}

export class ConversationRepo {
  private readonly s;
  constructor(private readonly db: Db) {
    this.s = {
      get: db.prepare<[string], ConversationRow>("SELECT * FROM conversations WHERE id = ?"),
      insert: db.prepare(
        "INSERT INTO conversations (id, title, created_at, updated_at, system_prompt, preset_id, sampling, model_dir, adapter_dir, endpoint_id) VALUES (@id, @title, @createdAt, @updatedAt, @systemPrompt, @presetId, @sampling, @modelDir, @adapterDir, @endpointId)",
      ),
      update: db.prepare(
        "UPDATE conversations SET title = @title, updated_at = @updatedAt, system_prompt = @systemPrompt, preset_id = @presetId, sampling = @sampling, model_dir = @modelDir, adapter_dir = @adapterDir, endpoint_id = @endpointId WHERE id = @id",
      ),
      touch: db.prepare("UPDATE conversations SET updated_at = ? WHERE id = ?"),
      delete: db.prepare("DELETE FROM conversations WHERE id = ?"),
      all: db.prepare<[], ConversationRow & { last: string | null }>(
        `SELECT c.*, (SELECT content FROM messages m WHERE m.conversation_id = c.id ORDER BY seq DESC LIMIT 1) AS last
         FROM conversations c ORDER BY c.updated_at DESC, c.rowid DESC`,
      ),
      search: db.prepare<[{ p: string }], ConversationRow & { hit: string | null }>(
        `SELECT c.*, (SELECT m.content FROM messages m JOIN messages_fts f ON f.rowid = m.rowid
                      WHERE m.conversation_id = c.id AND f.content LIKE @p ESCAPE '\\' ORDER BY m.seq LIMIT 1) AS hit
         FROM conversations c
         WHERE c.title LIKE @p ESCAPE '\\' OR hit IS NOT NULL
         ORDER BY c.updated_at DESC, c.rowid DESC`,
      ),
    };
    void this.db;
  }

  get(id: string): Conversation | null {
    const r = this.s.get.get(id);
    return r ? toConversation(r) : null;
  }

  insert(c: Conversation): void {
    this.s.insert.run({ ...c, sampling: JSON.stringify(c.sampling), adapterDir: c.adapterDir ?? null, endpointId: c.endpointId ?? null });
  }

  update(c: Conversation): void {
    this.s.update.run({ ...c, sampling: JSON.stringify(c.sampling), adapterDir: c.adapterDir ?? null, endpointId: c.endpointId ?? null });
  }

  touch(id: string, at: number): void {
    this.s.touch.run(at, id);
  }

  delete(id: string): boolean {
    return this.s.delete.run(id).changes > 0;
  }

  list(search?: string): ConversationSummary[] {
    const q = search?.trim() ?? "";
    if (!q) {
      return this.s.all.all().map((r) => ({ id: r.id, title: r.title, updatedAt: r.updated_at, snippet: excerpt(r.last ?? "", "") }));
    }
    const pattern = likePattern(q);
    return this.s.search
      .all({ p: pattern })
      .map((r) => ({ id: r.id, title: r.title, updatedAt: r.updated_at, snippet: r.hit !== null ? excerpt(r.hit, q) : excerpt(r.title, q) }));
  }
}

interface MessageRow {
  id: string;
  conversation_id: string;
  seq: number;
  role: "user" | "assistant";
  content: string;
  created_at: number;
  status: Message["status"];
  error: string | null;
  stats: string | null;
  compare: "base" | "adapter" | null;
}

function toMessage(r: MessageRow): Message {
  return {
    id: r.id,
    conversationId: r.conversation_id,
    role: r.role,
    content: r.content,
    createdAt: r.created_at,
    status: r.status,
    error: r.error,
    stats: r.stats ? (JSON.parse(r.stats) as GenerationStats) : null,
    compare: r.compare,
  };
}

export class MessageRepo {
  private readonly s;
  constructor(db: Db) {
    this.s = {
      get: db.prepare<[string], MessageRow>("SELECT * FROM messages WHERE id = ?"),
      list: db.prepare<[string], MessageRow>("SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq"),
      nextSeq: db.prepare<[string], { n: number }>("SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM messages WHERE conversation_id = ?"),
      insert: db.prepare(
        "INSERT INTO messages (id, conversation_id, seq, role, content, created_at, status, error, stats, compare) VALUES (@id, @conversationId, @seq, @role, @content, @createdAt, @status, @error, @stats, @compare)",
      ),
      finish: db.prepare("UPDATE messages SET content = @content, status = @status, error = @error, stats = @stats WHERE id = @id"),
      setContent: db.prepare("UPDATE messages SET content = ? WHERE id = ?"),
      deleteAfter: db.prepare("DELETE FROM messages WHERE conversation_id = ? AND seq > ?"),
      delete: db.prepare("DELETE FROM messages WHERE id = ?"),
      interrupted: db.prepare("UPDATE messages SET status = 'error', error = ? WHERE status = 'streaming'"),
      seqOf: db.prepare<[string], { seq: number }>("SELECT seq FROM messages WHERE id = ?"),
    };
  }

  get(id: string): Message | null {
    const r = this.s.get.get(id);
    return r ? toMessage(r) : null;
  }

  list(conversationId: string): Message[] {
    return this.s.list.all(conversationId).map(toMessage);
  }

  /** Append at the end of the conversation. */
  append(m: Message): void {
    const seq = this.s.nextSeq.get(m.conversationId)!.n;
    this.s.insert.run({ ...m, seq, stats: m.stats ? JSON.stringify(m.stats) : null, compare: m.compare ?? null });
  }

  finish(m: Pick<Message, "id" | "content" | "status" | "error" | "stats">): void {
    this.s.finish.run({ id: m.id, content: m.content, status: m.status, error: m.error, stats: m.stats ? JSON.stringify(m.stats) : null });
  }

  setContent(id: string, content: string): void {
    this.s.setContent.run(content, id);
  }

  /** Delete every message that comes after `id` in its conversation. */
  deleteAfter(id: string): void {
    const r = this.s.get.get(id);
    if (r) this.s.deleteAfter.run(r.conversation_id, r.seq);
  }

  delete(id: string): void {
    this.s.delete.run(id);
  }

  /** Replies that were streaming when the app last stopped can never finish: mark them. */
  markInterrupted(message: string): number {
    return this.s.interrupted.run(message).changes;
  }
}

interface PresetRow {
  id: string;
  name: string;
  content: string;
  language: "en" | "zh";
  builtin: number;
  sort: number;
  created_at: number;
}

export class PresetRepo {
  private readonly s;
  constructor(db: Db) {
    this.s = {
      list: db.prepare<[], PresetRow>("SELECT * FROM presets ORDER BY builtin DESC, sort, created_at, rowid"),
      get: db.prepare<[string], PresetRow>("SELECT * FROM presets WHERE id = ?"),
      upsert: db.prepare(
        `INSERT INTO presets (id, name, content, language, builtin, sort, created_at) VALUES (@id, @name, @content, @language, @builtin, @sort, @createdAt)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, content = excluded.content, language = excluded.language, builtin = excluded.builtin, sort = excluded.sort`,
      ),
      delete: db.prepare("DELETE FROM presets WHERE id = ?"),
    };
  }

  private static toPreset(r: PresetRow): Preset {
    return { id: r.id, name: r.name, content: r.content, language: r.language, builtin: r.builtin === 1 };
  }

  list(): Preset[] {
    return this.s.list.all().map(PresetRepo.toPreset);
  }

  get(id: string): Preset | null {
    const r = this.s.get.get(id);
    return r ? PresetRepo.toPreset(r) : null;
  }

  upsert(p: Preset, sort = 0, createdAt = Date.now()): void {
    this.s.upsert.run({ ...p, builtin: p.builtin ? 1 : 0, sort, createdAt });
  }

  delete(id: string): boolean {
    return this.s.delete.run(id).changes > 0;
  }
}

export class SettingsRepo {
  private readonly s;
  constructor(db: Db) {
    this.s = {
      get: db.prepare<[string], { value: string }>("SELECT value FROM settings WHERE key = ?"),
      set: db.prepare("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"),
    };
  }

  get<T>(key: string): T | undefined {
    const r = this.s.get.get(key);
    if (!r) return undefined;
    try {
      return JSON.parse(r.value) as T;
    } catch {
      return undefined;
    }
  }

  set(key: string, value: unknown): void {
    this.s.set.run(key, JSON.stringify(value));
  }
}

interface RecentRow {
  dir: string;
  name: string;
  architecture: string | null;
  last_opened_at: number;
}

export class RecentModelRepo {
  private readonly s;
  constructor(db: Db) {
    this.s = {
      list: db.prepare<[number], RecentRow>("SELECT * FROM recent_models ORDER BY last_opened_at DESC LIMIT ?"),
      upsert: db.prepare(
        `INSERT INTO recent_models (dir, name, architecture, last_opened_at) VALUES (@dir, @name, @architecture, @lastOpenedAt)
         ON CONFLICT(dir) DO UPDATE SET name = excluded.name, architecture = COALESCE(excluded.architecture, recent_models.architecture), last_opened_at = excluded.last_opened_at`,
      ),
      delete: db.prepare("DELETE FROM recent_models WHERE dir = ?"),
    };
  }

  list(limit = 20): RecentModel[] {
    return this.s.list.all(limit).map((r) => ({ dir: r.dir, name: r.name, architecture: r.architecture, lastOpenedAt: r.last_opened_at }));
  }

  upsert(m: RecentModel): void {
    this.s.upsert.run(m);
  }

  delete(dir: string): boolean {
    return this.s.delete.run(dir).changes > 0;
  }
}

interface EndpointRow {
  id: string;
  name: string;
  base_url: string;
  model: string;
  key_env: string | null;
  created_at: number;
}

/** Remote endpoints, without their keys (hasKey and keyStorage are the service's to fill in). */
export type EndpointRecord = Omit<Endpoint, "hasKey" | "keyStorage">;

export class EndpointRepo {
  private readonly s;
  constructor(db: Db) {
    this.s = {
      all: db.prepare<[], EndpointRow>("SELECT * FROM endpoints ORDER BY created_at, rowid"),
      get: db.prepare<[string], EndpointRow>("SELECT * FROM endpoints WHERE id = ?"),
      insert: db.prepare("INSERT INTO endpoints (id, name, base_url, model, key_env, created_at) VALUES (@id, @name, @baseUrl, @model, @keyEnv, @createdAt)"),
      update: db.prepare("UPDATE endpoints SET name = @name, base_url = @baseUrl, model = @model, key_env = @keyEnv WHERE id = @id"),
      delete: db.prepare("DELETE FROM endpoints WHERE id = ?"),
    };
  }

  private static from(r: EndpointRow): EndpointRecord {
    return { id: r.id, name: r.name, baseUrl: r.base_url, model: r.model, keyEnv: r.key_env, createdAt: r.created_at };
  }

  list(): EndpointRecord[] {
    return this.s.all.all().map(EndpointRepo.from);
  }

  get(id: string): EndpointRecord | null {
    const r = this.s.get.get(id);
    return r ? EndpointRepo.from(r) : null;
  }

  insert(e: EndpointRecord): void {
    this.s.insert.run(e);
  }

  update(e: EndpointRecord): void {
    this.s.update.run(e);
  }

  delete(id: string): boolean {
    return this.s.delete.run(id).changes > 0;
  }
}

/** Every repository over one database. */
export function repositories(db: Db) {
  return {
    db,
    conversations: new ConversationRepo(db),
    messages: new MessageRepo(db),
    presets: new PresetRepo(db),
    settings: new SettingsRepo(db),
    recentModels: new RecentModelRepo(db),
    endpoints: new EndpointRepo(db),
  };
}
export type Repositories = ReturnType<typeof repositories>;
