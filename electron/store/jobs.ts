// The jobs table (migration 4): one row per long task, written when it starts, changes state, and now and then while
// it runs, so that a crash leaves a row saying "running" that the next start turns into "interrupted". The job
// service (electron/jobs/service.ts) is its one writer: every kind's jobs live here, their detail is the service's.
import type { Db } from "./db.js";

export interface JobRecord<D = unknown> {
  id: string;
  kind: string;
  status: string;
  startedAt: number;
  updatedAt: number;
  detail: D;
  error: string | null;
}

interface JobRow {
  id: string;
  kind: string;
  status: string;
  started_at: number;
  updated_at: number;
  detail: string;
  error: string | null;
}

export class JobsStore {
  private readonly s;

  constructor(readonly db: Db) {
    this.s = {
      upsert: db.prepare(`
        INSERT INTO jobs (id, kind, status, started_at, updated_at, detail, error) VALUES (@id, @kind, @status, @startedAt, @updatedAt, @detail, @error)
        ON CONFLICT(id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at, detail = excluded.detail, error = excluded.error`),
      list: db.prepare(`SELECT * FROM jobs WHERE kind = ? ORDER BY started_at, id`),
      all: db.prepare(`SELECT * FROM jobs ORDER BY started_at, id`),
      delete: db.prepare(`DELETE FROM jobs WHERE id = ?`),
    };
  }

  save<D>(r: JobRecord<D>): void {
    this.s.upsert.run({ ...r, detail: JSON.stringify(r.detail) });
  }

  /**
   * save() unless another connection holds the write lock (an import's transaction on its worker thread, a CLI):
   * then false at once instead of the connection's busy timeout. The job service writes progress from the main
   * thread, which must never wait seconds for a lock; it tries again a little later.
   */
  trySave<D>(r: JobRecord<D>): boolean {
    const timeout = this.db.pragma("busy_timeout", { simple: true }) as number;
    this.db.pragma("busy_timeout = 0");
    try {
      this.save(r);
      return true;
    } catch (e) {
      if ((e as { code?: unknown }).code === "SQLITE_BUSY") return false;
      throw e;
    } finally {
      this.db.pragma(`busy_timeout = ${timeout}`);
    }
  }

  /** A kind's jobs (every job without one), oldest first. A row whose detail is not JSON is skipped (and left for a person to look at). */
  list<D>(kind?: string): JobRecord<D>[] {
    const out: JobRecord<D>[] = [];
    for (const row of (kind === undefined ? this.s.all.all() : this.s.list.all(kind)) as JobRow[]) {
      let detail: D;
      try {
        detail = JSON.parse(row.detail) as D;
      } catch {
        continue;
      }
      out.push({ id: row.id, kind: row.kind, status: row.status, startedAt: row.started_at, updatedAt: row.updated_at, detail, error: row.error });
    }
    return out;
  }

  delete(id: string): boolean {
    return this.s.delete.run(id).changes > 0;
  }
}
