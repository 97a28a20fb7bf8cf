// Datasets: the list and its actions (rename, delete, deduplicate, split, export), and the import of a file —
// dropped on the window or picked — through upload (browser) or path (Electron), scan with progress, the report,
// then "import the valid samples" or "import nothing". The samples table and editor live in stores/samples.ts.
import { create } from "zustand";
import { api } from "../api/index.js";
import type { DatasetSummary, ImportReport, ImportStatus, Job } from "../api/types.js";
import { readLocal, writeLocal } from "../local.js";
import { useUi } from "./ui.js";

/**
 * Bytes per upload call: 2 MiB, a quarter of the contract's UPLOAD_CHUNK_BYTES (8 MiB decoded, ~11 MiB of base64
 * under the WebSocket's 16 MiB frame cap), so the progress bar moves every ~2 MB rather than every 8 and one call
 * never holds the server's event loop for long. Repeated here because the renderer imports only types from the
 * contract (zod stays out of the bundle); test/unit/renderer-datasets.test.ts checks it stays within the limit.
 */
export const UPLOAD_CHUNK = 2 * 1024 * 1024;

/** Files the import understands: one sample per line (.jsonl) or a JSON array (.json). */
export function isDatasetFile(name: string): boolean {
  return /\.(jsonl|json)$/i.test(name.trim());
}

/** What a drop holds: a folder (a model, when the host knows its path), a dataset file, or some other file. */
export type DropKind = "folder" | "dataset" | "other";

export function classifyDrop(name: string, isDirectory: boolean): DropKind {
  if (isDirectory) return "folder";
  return isDatasetFile(name) ? "dataset" : "other";
}

/** "data.train.jsonl" -> "data.train": the default name of an imported dataset. */
export function baseName(fileName: string): string {
  const last = fileName.split(/[\\/]/).at(-1) ?? fileName;
  return last.replace(/\.(jsonl|json)$/i, "") || last;
}

/** A File's bytes [start, end) as base64 (FileReader's data URL: native, no per-byte loop in JS). */
export function blobToBase64(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => {
      const url = String(r.result);
      resolve(url.slice(url.indexOf(",") + 1));
    };
    r.onerror = () => reject(r.error ?? new Error("could not read the file"));
    r.readAsDataURL(blob);
  });
}

export type ImportPhase = "uploading" | "scanning" | "ready" | "committing" | "failed";

export interface ImportState {
  fileName: string;
  phase: ImportPhase;
  /** Set once the scan started. */
  importId: string | null;
  uploadId: string | null;
  /** Upload (browser) or scan progress, in bytes. */
  done: number;
  total: number;
  records: number;
  valid: number;
  rejectedCount: number;
  report: ImportReport | null;
  error: string | null;
  /** Name for the new dataset (editable in the report). */
  name: string;
}

interface DatasetsState {
  list: DatasetSummary[];
  loaded: boolean;
  selectedId: string | null;
  import: ImportState | null;
  refresh(): Promise<void>;
  select(id: string | null): void;
  rename(id: string, name: string): Promise<void>;
  remove(id: string): Promise<void>;
  dedupe(id: string): Promise<number | null>;
  split(id: string, validationRatio: number, seed: number): Promise<boolean>;
  exportDataset(id: string): Promise<void>;
  /** A File from a drop or the picker: by path in Electron, uploaded in chunks in the browser. */
  importFile(file: File): Promise<void>;
  setImportName(name: string): void;
  commitImport(): Promise<void>;
  /** Cancel during upload/scan, or "Import nothing" on the report: nothing stays behind. */
  cancelImport(): Promise<void>;
  /** A job changed (jobs.job): the import's scan job moves its progress, and its end brings the report. */
  onJob(job: Job): void;
  onImportStatus(s: ImportStatus): void;
  onChanged(e: { id: string; deleted: boolean }): void;
}

let refreshTimer: ReturnType<typeof setTimeout> | null = null;
/** Bumped by cancel: an upload loop that sees a newer value stops. */
let importSeq = 0;

function message(e: unknown): string {
  return (e as Error)?.message ?? String(e);
}

export const useDatasets = create<DatasetsState>((set, get) => ({
  list: [],
  loaded: false,
  selectedId: readLocal<string | null>("dataset", null),
  import: null,
  refresh: async () => {
    try {
      const list = await api().call("datasets.list", {});
      const sel = get().selectedId;
      const selectedId = sel && list.some((d) => d.id === sel) ? sel : (list[0]?.id ?? null);
      set({ list, loaded: true, selectedId });
      if (selectedId !== sel) writeLocal("dataset", selectedId);
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  select: (id) => {
    set({ selectedId: id });
    writeLocal("dataset", id);
  },
  rename: async (id, name) => {
    const n = name.trim();
    if (!n) return;
    set({ list: get().list.map((d) => (d.id === id ? { ...d, name: n } : d)) });
    try {
      const d = await api().call("datasets.rename", { id, name: n });
      set({ list: get().list.map((x) => (x.id === id ? d : x)) });
    } catch (e) {
      useUi.getState().notifyError(e);
      await get().refresh();
    }
  },
  remove: async (id) => {
    const before = get().list;
    const idx = before.findIndex((d) => d.id === id);
    const rest = before.filter((d) => d.id !== id);
    set({ list: rest, ...(get().selectedId === id ? { selectedId: rest[Math.min(idx, rest.length - 1)]?.id ?? null } : {}) });
    writeLocal("dataset", get().selectedId);
    try {
      await api().call("datasets.delete", { id });
    } catch (e) {
      useUi.getState().notifyError(e);
      await get().refresh();
    }
  },
  dedupe: async (id) => {
    try {
      const { removed, dataset } = await api().call("datasets.dedupe", { id });
      set({ list: get().list.map((d) => (d.id === id ? dataset : d)) });
      useUi.getState().notify({ kind: "info", key: "datasets.dedupedN", vars: { n: removed } });
      return removed;
    } catch (e) {
      useUi.getState().notifyError(e);
      return null;
    }
  },
  split: async (id, validationRatio, seed) => {
    try {
      const { train } = await api().call("datasets.split", { id, validationRatio, seed });
      await get().refresh();
      get().select(train.id);
      return true;
    } catch (e) {
      useUi.getState().notifyError(e);
      return false;
    }
  },
  exportDataset: async (id) => {
    const d = get().list.find((x) => x.id === id);
    const suggestedName = `${d?.name ?? "dataset"}.jsonl`;
    try {
      if (api().kind === "ipc") {
        // Electron: a save dialog, then the main process writes the file (temp name + rename).
        const { path } = await api().call("datasets.pickFile", { purpose: "export", suggestedName });
        if (!path) return;
        const r = await api().call("datasets.export", { id, path });
        useUi.getState().notify({ kind: "info", key: "datasets.exported", vars: { n: r.samples, path: r.path } });
        return;
      }
      // Browser: the same bytes in pieces, joined into a Blob and saved as a download.
      const parts: string[] = [];
      let cursor: string | null = null;
      let fileName = suggestedName;
      do {
        const r: { data: string; nextCursor: string | null; fileName: string } = await api().call("datasets.exportChunk", { id, cursor });
        parts.push(r.data);
        cursor = r.nextCursor;
        fileName = r.fileName || fileName;
      } while (cursor);
      const url = URL.createObjectURL(new Blob(parts, { type: "application/jsonl" }));
      const a = document.createElement("a");
      a.href = url;
      a.download = fileName;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  importFile: async (file) => {
    if (get().import && get().import!.phase !== "failed") {
      useUi.getState().notify({ kind: "info", key: "datasets.importBusy" });
      return;
    }
    if (!isDatasetFile(file.name)) {
      useUi.getState().notify({ kind: "error", key: "datasets.notJsonl", vars: { name: file.name } });
      return;
    }
    const seq = ++importSeq;
    const base: ImportState = {
      fileName: file.name,
      phase: "uploading",
      importId: null,
      uploadId: null,
      done: 0,
      total: file.size,
      records: 0,
      valid: 0,
      rejectedCount: 0,
      report: null,
      error: null,
      name: baseName(file.name),
    };
    set({ import: base });
    const patch = (p: Partial<ImportState>) => {
      const cur = get().import;
      if (cur && seq === importSeq) set({ import: { ...cur, ...p } });
    };
    try {
      const transport = api();
      const path = transport.pathForFile ? transport.pathForFile(file) : "";
      let source: { kind: "path"; path: string } | { kind: "upload"; uploadId: string };
      if (path) {
        source = { kind: "path", path };
      } else {
        const { uploadId } = await transport.call("datasets.upload.begin", { fileName: file.name, size: file.size });
        if (seq !== importSeq) {
          void transport.call("datasets.upload.abort", { uploadId }).catch(() => {});
          return;
        }
        patch({ uploadId });
        // the next chunk is read (base64) while the current one is on the wire
        const read = (offset: number) => blobToBase64(file.slice(offset, Math.min(file.size, offset + UPLOAD_CHUNK)));
        let next = file.size > 0 ? read(0) : null;
        for (let offset = 0; offset < file.size; offset += UPLOAD_CHUNK) {
          const data = await next!;
          if (seq !== importSeq) return; // cancelled: cancelImport aborts the upload
          next = offset + UPLOAD_CHUNK < file.size ? read(offset + UPLOAD_CHUNK) : null;
          const { received } = await transport.call("datasets.upload.chunk", { uploadId, offset, data });
          patch({ done: received });
        }
        source = { kind: "upload", uploadId };
      }
      if (seq !== importSeq) return;
      patch({ phase: "scanning", done: 0 });
      const r = await transport.call("datasets.import.scan", { source });
      if (seq !== importSeq) {
        void transport.call("datasets.import.cancel", { importId: r.importId }).catch(() => {});
        return;
      }
      patch({ importId: r.importId, total: r.totalBytes });
      // The scan may have finished before we knew its id: ask once (events after this keep it current).
      const s = await transport.call("datasets.import.status", { importId: r.importId });
      get().onImportStatus(s);
    } catch (e) {
      patch({ phase: "failed", error: message(e) });
    }
  },
  setImportName: (name) => {
    const cur = get().import;
    if (cur) set({ import: { ...cur, name } });
  },
  commitImport: async () => {
    const cur = get().import;
    if (!cur || cur.phase !== "ready" || !cur.importId) return;
    set({ import: { ...cur, phase: "committing" } });
    try {
      const name = cur.name.trim();
      const d = await api().call("datasets.import.commit", { importId: cur.importId, ...(name ? { name } : {}) });
      importSeq++;
      set({ import: null });
      await get().refresh();
      get().select(d.id);
    } catch (e) {
      const now = get().import;
      if (now) set({ import: { ...now, phase: "failed", error: message(e) } });
    }
  },
  cancelImport: async () => {
    const cur = get().import;
    importSeq++;
    set({ import: null });
    if (!cur) return;
    try {
      if (cur.importId) await api().call("datasets.import.cancel", { importId: cur.importId });
      else if (cur.uploadId) await api().call("datasets.upload.abort", { uploadId: cur.uploadId });
    } catch {
      /* already gone (finished, failed or cleaned up): nothing is left either way */
    }
  },
  onJob: (job) => {
    const cur = get().import;
    if (job.kind !== "scan" || !cur || cur.importId !== job.id || cur.phase !== "scanning") return;
    if (job.status === "running") {
      const f = job.figures ?? {};
      set({ import: { ...cur, done: job.progress?.done ?? cur.done, total: job.progress?.total ?? cur.total, records: f.records ?? 0, valid: f.valid ?? 0, rejectedCount: f.rejected ?? 0 } });
      return;
    }
    // the scan ended: its report (with the rejected lines) comes from the import's status
    void api()
      .call("datasets.import.status", { importId: job.id })
      .then((s) => get().onImportStatus(s))
      .catch((e: unknown) => {
        const now = get().import;
        if (now && now.importId === job.id && now.phase === "scanning") set({ import: { ...now, phase: "failed", error: message(e) } });
      });
  },
  onImportStatus: (s) => {
    const cur = get().import;
    if (!cur || cur.importId !== s.importId) return;
    const counts = { done: s.bytesRead, total: s.totalBytes, records: s.records, valid: s.valid, rejectedCount: s.rejectedCount };
    if (s.state === "ready" && cur.phase === "scanning") set({ import: { ...cur, ...counts, phase: "ready", report: s.report } });
    else if (s.state === "scanning" && cur.phase === "scanning") set({ import: { ...cur, ...counts } });
    else if (s.state === "failed") set({ import: { ...cur, phase: "failed", error: s.error ?? "import failed" } });
    else if (s.state === "cancelled" && cur.phase !== "committing") set({ import: null });
  },
  onChanged: () => {
    // Several changes in a burst (an import commit, a split) refresh once.
    if (refreshTimer) clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      void get().refresh();
    }, 100);
  },
}));

export function formatCount(n: number): string {
  return n.toLocaleString();
}
