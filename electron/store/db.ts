// The app's one SQLite database (better-sqlite3): WAL journal, foreign keys on, a busy timeout, and versioned
// migrations tracked in PRAGMA user_version. Each migration runs in one transaction, so a database is always at
// exactly one version: opening an older file brings it up to date, and a crash mid-migration leaves it untouched.
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

export type Db = Database.Database;

export interface Migration {
  version: number;
  description: string;
  up(db: Db): void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "core tables: conversations, messages, presets, settings, recent models",
    up(db) {
      db.exec(`
        CREATE TABLE conversations (
          id TEXT PRIMARY KEY,
          title TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          system_prompt TEXT NOT NULL,
          preset_id TEXT,
          sampling TEXT NOT NULL,          -- JSON SamplingSettings
          model_dir TEXT
        );
        CREATE INDEX conversations_updated ON conversations(updated_at DESC);
        CREATE TABLE messages (
          id TEXT PRIMARY KEY,
          conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
          seq INTEGER NOT NULL,            -- order within the conversation
          role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
          content TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          status TEXT NOT NULL CHECK (status IN ('complete', 'streaming', 'stopped', 'error')),
          error TEXT,
          stats TEXT                       -- JSON GenerationStats
        );
        CREATE UNIQUE INDEX messages_order ON messages(conversation_id, seq);
        CREATE TABLE presets (
          id TEXT PRIMARY KEY,
          name TEXT NOT NULL,
          content TEXT NOT NULL,
          language TEXT NOT NULL CHECK (language IN ('en', 'zh')),
          builtin INTEGER NOT NULL DEFAULT 0,
          sort INTEGER NOT NULL DEFAULT 0,
          created_at INTEGER NOT NULL
        );
        CREATE TABLE settings (
          key TEXT PRIMARY KEY,
          value TEXT NOT NULL              -- JSON
        );
        CREATE TABLE recent_models (
          dir TEXT PRIMARY KEY,
          name TEXT NOT NULL,
          architecture TEXT,
          last_opened_at INTEGER NOT NULL
        );
      `);
    },
  },
  {
    version: 2,
    description: "full-text index over message content (trigram: works for Chinese, which has no spaces)",
    up(db) {
      db.exec(`
        CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='rowid', tokenize='trigram');
        INSERT INTO messages_fts(rowid, content) SELECT rowid, content FROM messages;
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
          INSERT INTO messages_fts(rowid, content) VALUES (new.rowid, new.content);
        END;
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
          INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
        END;
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
          INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
          INSERT INTO messages_fts(rowid, content) VALUES (new.rowid, new.content);
        END;
      `);
    },
  },
  {
    version: 3,
    description: "datasets: samples (dense order) and their bodies (messages JSON), trigram full-text index over the content, token-count cache, one-level undo",
    up(db) {
      db.exec(`
        CREATE TABLE datasets (
          id TEXT PRIMARY KEY,
          name TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          source_file TEXT,
          rejected_count INTEGER NOT NULL DEFAULT 0,
          rejected TEXT NOT NULL DEFAULT '[]'    -- JSON RejectedLine[]: the import's bad lines (first 10,000)
        );
        -- a sample's small columns (the table's rows, its order, undo shifts) apart from its text, so that
        -- renumbering or counting 100k samples never reads or rewrites megabytes of content
        CREATE TABLE samples (
          id TEXT PRIMARY KEY,
          dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
          position INTEGER NOT NULL,       -- 0..n-1 within the dataset, no gaps (the row's index)
          hash TEXT NOT NULL,              -- sha1 of the messages JSON: equal hash = duplicate sample
          format TEXT NOT NULL CHECK (format IN ('messages', 'conversations', 'instruction')),
          source_line INTEGER,
          revision INTEGER NOT NULL DEFAULT 1,
          message_count INTEGER NOT NULL,
          has_system INTEGER NOT NULL,
          user_preview TEXT NOT NULL,
          assistant_preview TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );
        CREATE INDEX samples_order ON samples(dataset_id, position);
        CREATE INDEX samples_hash ON samples(dataset_id, hash, position);
        CREATE INDEX samples_format ON samples(dataset_id, format);
        CREATE TABLE sample_bodies (
          sample_id TEXT PRIMARY KEY REFERENCES samples(id) ON DELETE CASCADE,
          messages TEXT NOT NULL,          -- JSON SampleMessage[]
          content TEXT NOT NULL            -- every message's content joined by newlines: what search sees
        );
        CREATE VIRTUAL TABLE samples_fts USING fts5(content, content='sample_bodies', content_rowid='rowid', tokenize='trigram');
        CREATE TRIGGER sample_bodies_fts_insert AFTER INSERT ON sample_bodies BEGIN
          INSERT INTO samples_fts(rowid, content) VALUES (new.rowid, new.content);
        END;
        CREATE TRIGGER sample_bodies_fts_delete AFTER DELETE ON sample_bodies BEGIN
          INSERT INTO samples_fts(samples_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
        END;
        CREATE TRIGGER sample_bodies_fts_update AFTER UPDATE OF content ON sample_bodies BEGIN
          INSERT INTO samples_fts(samples_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
          INSERT INTO samples_fts(rowid, content) VALUES (new.rowid, new.content);
        END;
        -- token counts per (sample, tokenizer identity); valid while revision equals the sample's
        CREATE TABLE sample_tokens (
          sample_id TEXT NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
          tokenizer TEXT NOT NULL,
          revision INTEGER NOT NULL,
          tokens INTEGER NOT NULL,
          PRIMARY KEY (sample_id, tokenizer)
        ) WITHOUT ROWID;
        -- the last sample edit of each dataset, enough to undo it (survives a restart)
        CREATE TABLE dataset_undo (
          dataset_id TEXT PRIMARY KEY REFERENCES datasets(id) ON DELETE CASCADE,
          action TEXT NOT NULL CHECK (action IN ('edit', 'add', 'duplicate', 'delete')),
          sample_id TEXT NOT NULL,
          previous TEXT,                   -- JSON: the sample row before the edit / the deleted row
          created_at INTEGER NOT NULL
        );
      `);
    },
  },
  {
    version: 4,
    description: "jobs: long tasks (quantize / export today) kept across a crash, so an interrupted one is listed as such",
    up(db) {
      // The record a later job system for every long task keeps too: what it is, where it stands, since when, and
      // what the kind needs to show or retry it (detail) — not the progress of every tick.
      db.exec(`
        CREATE TABLE jobs (
          id TEXT PRIMARY KEY,
          kind TEXT NOT NULL,              -- 'quantize' (a GGUF export or a quantized model folder)
          status TEXT NOT NULL,            -- the kind's states; 'interrupted' when the app stopped while it ran
          started_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          detail TEXT NOT NULL,            -- JSON, the kind's own (quantize: the QuantizeJob and its process's pid)
          error TEXT
        );
        CREATE INDEX jobs_kind ON jobs(kind, started_at);
      `);
    },
  },
  {
    version: 5,
    description: "conversations.adapter_dir (chat with a checkpoint) and messages.compare (the two replies of Compare with base)",
    up(db) {
      db.exec(`
        ALTER TABLE conversations ADD COLUMN adapter_dir TEXT;   -- a PEFT adapter folder applied unmerged; NULL: the base
        ALTER TABLE messages ADD COLUMN compare TEXT CHECK (compare IN ('base', 'adapter'));  -- NULL: an ordinary message
      `);
    },
  },
  {
    version: 6,
    description: "finetune runs and every step's metrics (the Finetune view's list and chart outlive the app)",
    up(db) {
      // A run's files (train.json, checkpoints, final/) are in its run folder; the row says what it trains and where it
      // stands, and run_points keeps each step's numbers, so the chart is whole after a restart. dataset_name is kept
      // beside the id: a deleted dataset still names the runs trained on it.
      db.exec(`
        CREATE TABLE runs (
          id TEXT PRIMARY KEY,
          name TEXT NOT NULL,
          model_dir TEXT NOT NULL,
          dataset_id TEXT NOT NULL,
          dataset_name TEXT NOT NULL,
          base_quant TEXT NOT NULL CHECK (base_quant IN ('none', 'nf4')),
          preset TEXT NOT NULL,
          args TEXT NOT NULL,              -- JSON: the resolved train.json the run trains with
          status TEXT NOT NULL,            -- queued | running | paused | done | failed | cancelled | interrupted
          error TEXT,
          run_dir TEXT NOT NULL,
          job_id TEXT,                     -- the train job (jobs table); its state drives status
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          step INTEGER NOT NULL DEFAULT 0,
          total_steps INTEGER,
          final_loss REAL,
          final_eval_loss REAL
        );
        CREATE INDEX runs_created ON runs(created_at);
        CREATE TABLE run_points (
          run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
          step INTEGER NOT NULL,
          kind TEXT NOT NULL CHECK (kind IN ('train', 'eval')),
          loss REAL,
          eval_loss REAL,
          lr REAL,
          grad_norm REAL,
          tokens_per_s REAL,
          elapsed_s REAL,
          PRIMARY KEY (run_id, kind, step)
        );
      `);
    },
  },
  {
    version: 7,
    description: "a finetune run's expert routing, window by window (the run view's heatmap outlives the app)",
    up(db) {
      // One row per routing window the trainer reports: the (token, expert) pairs of training steps (from_step, step].
      // layers is the JSON the trainer printed ([{layer, topK, counts}]): read whole, never queried by expert.
      db.exec(`
        CREATE TABLE run_routing (
          run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
          step INTEGER NOT NULL,
          from_step INTEGER NOT NULL,
          top_k INTEGER NOT NULL,
          layers TEXT NOT NULL,
          PRIMARY KEY (run_id, step)
        );
      `);
    },
  },
  {
    version: 8,
    description: "remote OpenAI-compatible endpoints a conversation can chat with (their keys are not here: electron/services/endpoints.ts)",
    up(db) {
      // key_env: the environment variable that holds the key (headless); a key the user typed lives in the keychain.
      // A deleted endpoint leaves its conversations, which answer with the local model from then on.
      db.exec(`
        CREATE TABLE endpoints (
          id TEXT PRIMARY KEY,
          name TEXT NOT NULL,
          base_url TEXT NOT NULL,
          model TEXT NOT NULL,
          key_env TEXT,
          created_at INTEGER NOT NULL
        );
        ALTER TABLE conversations ADD COLUMN endpoint_id TEXT REFERENCES endpoints(id) ON DELETE SET NULL;
      `);
    },
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;

/** Bring `db` up to `target` (default: the latest version), one transaction per migration. */
export function migrate(db: Db, target = SCHEMA_VERSION): number {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    throw new Error(`the database is version ${current}, newer than this app understands (${SCHEMA_VERSION}); update MoE Studio`);
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current || m.version > target) continue;
    db.transaction(() => {
      m.up(db);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
  return db.pragma("user_version", { simple: true }) as number;
}

/** Open (creating the folder and file if needed) and migrate the database. */
export function openDatabase(file: string, opts: { targetVersion?: number } = {}): Db {
  if (file !== ":memory:") mkdirSync(dirname(file), { recursive: true });
  // `npm start` (build/start.mjs) points Electron at a better-sqlite3 built for Electron's ABI; Node uses node_modules'.
  const nativeBinding = process.env.MOE_SQLITE_BINDING;
  const db = new Database(file, nativeBinding ? { nativeBinding } : {});
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    db.pragma("synchronous = NORMAL");
    migrate(db, opts.targetVersion);
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}
