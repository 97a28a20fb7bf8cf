// The model library (Models → Discover): the curated catalogue with fit badges, hub search, downloads (jobs of kind
// "download": each change of one reads library.downloads again for its files), the access token for gated models, and "Open in chat" for a downloaded model. "Require checksums" is a
// preference of this window (kept in its storage) sent with each download; a download whose files the hub listed
// without a checksum stays in the list once done, saying so, until dismissed. Models → Local lists what the models folder
// holds (library.local: models, adapters, GGUF files with their origin); it is read again when a job that writes there
// finishes (wiring.ts watches the jobs store) or a download completes, and on Refresh (a folder copied in by hand).
import { create } from "zustand";
import { api } from "../api/index.js";
import type { CatalogEntry, DownloadProgress, HubSearchResult, HubSource, Job, LibraryStatus, LocalModel, MachineMemory, RepoDetails } from "../api/types.js";
import { readLocal, writeLocal } from "../local.js";
import { useConversations } from "./conversations.js";
import { chatWithAdapter } from "./finetune.js";
import { folderName, useModels } from "./models.js";
import type { T } from "../hooks.js";
import { useUi } from "./ui.js";

export const CONTEXT_CHOICES = [2048, 4096, 8192, 32768] as const;

interface LibraryState {
  status: LibraryStatus | null;
  machine: MachineMemory | null;
  contextLength: number;
  catalog: CatalogEntry[];
  downloads: Record<string, DownloadProgress>;
  query: string;
  results: HubSearchResult[] | null;
  searching: boolean;
  searchError: string | null;
  /** The download whose gated error asks for a token. */
  tokenFor: string | null;
  /** Refuse (before any byte) a model with a file the hub lists without a checksum. */
  requireChecksums: boolean;
  setRequireChecksums(on: boolean): void;
  /** Forgets a finished download's row (the model stays). */
  dismiss(id: string): void;
  /** Live size and fit of search results, asked for one at a time (library.inspect). */
  details: Record<string, RepoDetails | { error: string }>;
  inspect(repo: string): Promise<void>;
  load(): Promise<void>;
  setContext(n: number): Promise<void>;
  setQuery(q: string): void;
  search(): Promise<void>;
  download(repo: string, source?: HubSource): Promise<void>;
  pause(id: string): Promise<void>;
  resume(id: string): Promise<void>;
  cancel(id: string): Promise<void>;
  setToken(token: string | null): Promise<void>;
  setSource(source: HubSource, endpoint: string): Promise<void>;
  /** A download's state as the library gives it (a call's answer, or library.downloads after its job changed). */
  onProgress(p: DownloadProgress): void;
  /** A job changed (jobs.job): a download's one reads the downloads again (their files and state). */
  onJob(job: Job): void;
  openInChat(dir: string): Promise<void>;
  /** The models folder's entries, newest first; null until first loaded. */
  local: LocalModel[] | null;
  localError: string | null;
  loadLocal(): Promise<void>;
  /** Open in chat: a model folder is opened and a new conversation starts; an adapter gets a conversation on its base. */
  openLocal(entry: LocalModel): Promise<void>;
}

/** The job kinds whose output lands in the models folder: when one finishes, the local list is read again. */
export const LOCAL_WRITER_KINDS: readonly Job["kind"][] = ["export", "quantize", "gguf", "download"];

/**
 * Whether the jobs store's change means the models folder changed: a writer kind's job that is done now and was not
 * before (or was not known: a job that ran and ended between two looks). A jobs.list after a reconnect can count
 * old jobs that way: one extra read of the folder, never a missed one.
 */
export function finishedWriters(prev: Record<string, Job>, next: Record<string, Job>): boolean {
  if (prev === next) return false;
  return Object.values(next).some((j) => j.status === "done" && LOCAL_WRITER_KINDS.includes(j.kind) && prev[j.id]?.status !== "done");
}

/** "int4 (q4_k)" for the quantized types; a dtype as it is. */
export function formatName(f: string): string {
  return f === "q8_0" ? "int8 (q8_0)" : f === "q4_0" || f === "q4_k" ? `int4 (${f})` : f;
}

/** Where an entry came from, in a line: "Finetuned from <base> — run 'x', step 200", "Quantized int4 (q4_k) from <source>". */
export function originLine(e: LocalModel, t: T): string | null {
  const o = e.origin;
  if (!o) return null;
  if (o.origin === "finetune") {
    const vars = { base: folderName(o.base), run: o.run.name };
    return o.checkpoint === null ? t("models.local.fromRunFinal", vars) : t("models.local.fromRun", { ...vars, step: o.checkpoint });
  }
  if (o.origin === "quantize") return t(e.kind === "gguf" ? "models.local.ggufFrom" : "models.local.quantized", { format: formatName(o.format), source: folderName(o.source) });
  if (o.origin === "cluster") {
    return o.format ? t("models.local.mergedFromCluster", { format: formatName(o.format), base: folderName(o.base) }) : t("models.local.fromCluster", { base: folderName(o.base) });
  }
  return t("models.local.downloaded", { repo: o.repo });
}

/**
 * The base model folder an adapter runs on: the one its export recorded, else adapter_config.json's
 * base_model_name_or_path when that is a folder path (a hub id such as "Qwen/Qwen3-30B-A3B" is not one to open).
 */
export function adapterBase(e: LocalModel): string | null {
  if (e.kind !== "adapter") return null;
  if (e.origin?.origin === "finetune" || (e.origin?.origin === "cluster" && !e.origin.format)) return e.origin.base;
  const b = e.architecture;
  return b && (b.startsWith("/") || /^[A-Za-z]:[\\/]/.test(b) || b.startsWith("\\\\")) ? b : null;
}

/** "owner/name" -> the download id the service uses (its folder name). */
export const downloadId = (repo: string) => repo.replace("/", "--");

/** The files of a download the hub listed without a checksum (size-checked only). */
export const uncheckedFiles = (d: DownloadProgress): string[] => d.files.filter((f) => f.checksum === "none").map((f) => f.path);

const REQUIRE_CHECKSUMS_KEY = "library.requireChecksums";

/** library.downloads in flight (one at a time; a change meanwhile reads once more), and the rows the user dismissed. */
const downloadsRead = { busy: false, again: false };
const dismissed = new Set<string>();

export const useLibrary = create<LibraryState>((set, get) => ({
  status: null,
  machine: null,
  contextLength: 4096,
  catalog: [],
  downloads: {},
  query: "",
  results: null,
  searching: false,
  searchError: null,
  tokenFor: null,
  details: {},
  requireChecksums: readLocal<boolean>(REQUIRE_CHECKSUMS_KEY, false) === true,
  setRequireChecksums: (on) => {
    writeLocal(REQUIRE_CHECKSUMS_KEY, on);
    set({ requireChecksums: on });
  },
  dismiss: (id) => {
    dismissed.add(id);
    const { [id]: _gone, ...rest } = get().downloads;
    set({ downloads: rest });
  },
  inspect: async (repo) => {
    try {
      const d = await api().call("library.inspect", { repo, contextLength: get().contextLength });
      set({ details: { ...get().details, [repo]: d } });
    } catch (e) {
      set({ details: { ...get().details, [repo]: { error: (e as Error)?.message ?? String(e) } } });
    }
  },
  load: async () => {
    try {
      const [status, cat, downloads] = await Promise.all([
        api().call("library.status", {}),
        api().call("library.catalog", { contextLength: get().contextLength }),
        api().call("library.downloads", {}),
      ]);
      set({ status, machine: cat.machine, catalog: cat.models, downloads: Object.fromEntries(downloads.map((d) => [d.id, d])) });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  setContext: async (n) => {
    set({ contextLength: n });
    try {
      const cat = await api().call("library.catalog", { contextLength: n });
      set({ machine: cat.machine, catalog: cat.models });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  setQuery: (q) => set({ query: q }),
  search: async () => {
    const q = get().query.trim();
    if (!q) return;
    set({ searching: true, searchError: null });
    try {
      set({ results: await api().call("library.search", { query: q }), searching: false });
    } catch (e) {
      set({ searching: false, results: null, searchError: (e as Error)?.message ?? String(e) });
    }
  },
  download: async (repo, source) => {
    try {
      const p = await api().call("library.download", { repo, ...(source ? { source } : {}), ...(get().requireChecksums ? { requireChecksums: true } : {}) });
      get().onProgress(p);
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  pause: async (id) => {
    try {
      get().onProgress(await api().call("library.pause", { id }));
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  resume: async (id) => {
    try {
      get().onProgress(await api().call("library.resume", { id, ...(get().requireChecksums ? { requireChecksums: true } : {}) }));
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  cancel: async (id) => {
    try {
      await api().call("library.cancel", { id });
      const { [id]: _gone, ...rest } = get().downloads;
      set({ downloads: rest, tokenFor: get().tokenFor === id ? null : get().tokenFor });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  setToken: async (token) => {
    try {
      const status = await api().call("library.setToken", { token });
      const retry = get().tokenFor;
      set({ status, tokenFor: null });
      if (token && retry) await get().resume(retry);
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  setSource: async (source, endpoint) => {
    try {
      await api().call("settings.set", { hubSource: source, hubEndpoint: endpoint.trim() });
      set({ status: await api().call("library.status", {}), results: null });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  onJob: (job) => {
    if (job.kind !== "download") return;
    if (downloadsRead.busy) {
      downloadsRead.again = true;
      return;
    }
    downloadsRead.busy = true;
    void (async () => {
      try {
        do {
          downloadsRead.again = false;
          const list = await api().call("library.downloads", {});
          // one the library no longer lists was cancelled (here or from the activity panel)
          const listed = new Set(list.map((p) => p.id));
          const kept = Object.fromEntries(Object.entries(get().downloads).filter(([id]) => listed.has(id)));
          set({ downloads: kept });
          for (const p of list) if (!(p.state === "done" && dismissed.has(p.id))) get().onProgress(p);
        } while (downloadsRead.again);
      } catch {
        // the connection went: the store reloads everything when it is back
      } finally {
        downloadsRead.busy = false;
      }
    })();
  },
  onProgress: (p) => {
    if (p.state !== "done") dismissed.delete(p.id);
    const prev = get().downloads[p.id];
    set({ downloads: { ...get().downloads, [p.id]: p }, ...(p.state === "error" && p.errorKind === "gated" ? { tokenFor: p.id } : {}) });
    if (p.state === "done" && prev?.state !== "done") {
      // it is a model now: Models lists it (recent) and the catalogue marks it downloaded
      void useModels.getState().refresh();
      void get().setContext(get().contextLength);
      // and it is in the models folder now
      if (get().local) void get().loadLocal();
      if (get().results) set({ results: get().results!.map((r) => (downloadId(r.repo) === p.id ? { ...r, localDir: p.dir } : r)) });
    }
  },
  local: null,
  localError: null,
  loadLocal: async () => {
    try {
      set({ local: await api().call("library.local", {}), localError: null });
    } catch (e) {
      set({ localError: (e as Error)?.message ?? String(e) });
    }
  },
  openLocal: async (entry) => {
    if (entry.kind === "model") return get().openInChat(entry.path);
    const base = adapterBase(entry);
    if (base) await chatWithAdapter(entry.name, base, entry.path);
  },
  openInChat: async (dir) => {
    const card = await useModels.getState().open(dir);
    if (!card) {
      useUi.getState().setView("models");
      return;
    }
    await useConversations.getState().create();
  },
}));
