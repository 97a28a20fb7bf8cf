// The samples of the selected dataset: a window onto them for the virtualised table (pages fetched as the user
// scrolls, never the whole dataset), search and filters, token counts for a chosen model's tokenizer, and the editor
// of one sample (its messages as a draft; save, add, duplicate, delete, and the dataset's one-level undo).
import { create } from "zustand";
import { api } from "../api/index.js";
import type { CallInput, Job, Sample, SampleMessage, SampleRow } from "../api/types.js";
import { readLocal, writeLocal } from "../local.js";
import { pagesFor, type RowWindow } from "../virtual.js";
import { useDatasets } from "./datasets.js";
import { useUi } from "./ui.js";

/** Rows per samples.list call: a screen is ~20 rows, so one page covers a few screens of scrolling. */
export const PAGE_SIZE = 100;
/** Pages kept in memory; the ones farthest from the visible window go first. 40 x 100 rows of previews is small. */
const MAX_PAGES = 40;
/** samples.list calls in flight at once (the server answers them one after another anyway). */
const MAX_INFLIGHT = 2;

export type Role = SampleMessage["role"];

export interface Filters {
  search: string;
  minTokens: number | null;
  maxTokens: number | null;
  hasProblems: boolean;
}

export interface TokenizerSetting {
  modelDir: string;
  maxSeqLen: number;
}

export interface TokenJob {
  jobId: string;
  datasetId: string;
  done: number;
  total: number;
  state: "running" | "done" | "failed" | "cancelled";
  error: string | null;
}

/** The view's figures of a tokens job (subject: the dataset). */
export function tokenJobOf(job: Job): TokenJob {
  const state = job.status === "done" ? "done" : job.status === "failed" ? "failed" : job.status === "cancelled" || job.status === "interrupted" || job.status === "paused" ? "cancelled" : "running";
  return { jobId: job.id, datasetId: job.subject ?? "", done: job.progress?.done ?? 0, total: job.progress?.total ?? 0, state, error: job.error };
}

export interface Editor {
  sample: Sample;
  draft: SampleMessage[];
  dirty: boolean;
  saving: boolean;
  /** The backend's validation message, and the message it names (0-based) when it names one. */
  error: { index: number | null; message: string } | null;
  /** Just added: its placeholder text is selected for typing over. */
  fresh?: boolean;
}

// ---------- pure helpers (tested directly) ----------

export function moveMessage(list: SampleMessage[], i: number, delta: -1 | 1): SampleMessage[] {
  const j = i + delta;
  if (i < 0 || i >= list.length || j < 0 || j >= list.length) return list;
  const next = list.slice();
  [next[i], next[j]] = [next[j], next[i]];
  return next;
}

/** The role a new message gets: the one that keeps user/assistant alternating after the last message. */
export function nextRole(list: SampleMessage[]): Role {
  const last = list.at(-1)?.role;
  return last === "user" ? "assistant" : "user";
}

/**
 * Which message a validation error is about. The backend names it as in the import report, e.g.
 * "messages[2]: empty content" (0-based index into the array that was sent).
 */
export function errorIndex(message: string): number | null {
  const m = /messages\[(\d+)\]/.exec(message);
  return m ? Number(m[1]) : null;
}

/** The samples.list input for a query (without offset/limit). */
export function listQuery(datasetId: string, f: Filters, tok: TokenizerSetting | null): Omit<CallInput<"samples.list">, "offset" | "limit"> {
  const q: Omit<CallInput<"samples.list">, "offset" | "limit"> = { datasetId };
  const search = f.search.trim();
  if (search) q.search = search;
  if (tok) {
    q.tokenizer = { modelDir: tok.modelDir, maxSeqLen: tok.maxSeqLen };
    if (f.minTokens !== null) q.minTokens = f.minTokens;
    if (f.maxTokens !== null) q.maxTokens = f.maxTokens;
  }
  if (f.hasProblems) q.hasProblems = true;
  return q;
}

/** Drops the cached pages farthest from the window until at most `max` remain. */
export function evictPages(pages: Record<number, SampleRow[]>, win: RowWindow, pageSize: number, max: number): Record<number, SampleRow[]> {
  const keys = Object.keys(pages).map(Number);
  if (keys.length <= max) return pages;
  const centre = (win.start + win.end) / 2 / pageSize;
  keys.sort((a, b) => Math.abs(a - centre) - Math.abs(b - centre));
  const next: Record<number, SampleRow[]> = {};
  for (const k of keys.slice(0, max)) next[k] = pages[k];
  return next;
}

// ---------- the store ----------

interface SamplesState {
  datasetId: string | null;
  filters: Filters;
  tokenizer: TokenizerSetting | null;
  tokenJob: TokenJob | null;
  /** Rows matching the query, null until the first page answered. */
  total: number | null;
  /** Query generation: answers for an older query are dropped. */
  gen: number;
  pages: Record<number, SampleRow[]>;
  window: RowWindow;
  editor: Editor | null;
  setDataset(id: string | null): void;
  setSearch(search: string): void;
  setFilters(patch: Partial<Omit<Filters, "search">>): void;
  setTokenizer(t: TokenizerSetting | null): void;
  /** The table shows rows [start, end): fetch the pages it lacks. */
  ensure(win: RowWindow): void;
  /** Refetch what is on screen (after an edit), keeping the scroll position. */
  reload(): void;
  row(index: number): SampleRow | undefined;
  open(id: string): Promise<void>;
  close(): void;
  setRole(i: number, role: Role): void;
  setText(i: number, content: string): void;
  addMessage(): void;
  removeMessage(i: number): void;
  move(i: number, delta: -1 | 1): void;
  save(): Promise<boolean>;
  addSample(): Promise<void>;
  duplicateSample(): Promise<void>;
  deleteSample(): Promise<void>;
  undo(): Promise<void>;
  /** A job changed (jobs.job): the dataset's token count, if it is one. */
  onJob(job: Job): void;
}

const inflight = new Set<string>();
let searchTimer: ReturnType<typeof setTimeout> | null = null;
let reloadSeq = 0;
let lastTokenReload = 0;

const noFilters: Filters = { search: "", minTokens: null, maxTokens: null, hasProblems: false };

function startCounting(datasetId: string | null, tok: TokenizerSetting | null): void {
  if (!datasetId || !tok) return;
  api()
    .call("datasets.tokens.count", { datasetId, tokenizer: { modelDir: tok.modelDir, maxSeqLen: tok.maxSeqLen } })
    .then((r) => {
      const s = useSamples.getState();
      if (s.datasetId !== datasetId) return;
      // a done event may already have arrived for this job: keep the newer state
      if (s.tokenJob?.jobId !== r.jobId) useSamples.setState({ tokenJob: { jobId: r.jobId, datasetId, done: r.total - r.pending, total: r.total, state: "running", error: null } });
    })
    .catch((e: unknown) => useUi.getState().notifyError(e));
}

export const useSamples = create<SamplesState>((set, get) => {
  /** A new query: forget the rows, keep the table where it is (it asks for its window again). */
  const requery = (patch: Partial<SamplesState>) => {
    set({ ...patch, gen: get().gen + 1, pages: {}, total: null });
    get().ensure(get().window);
  };
  const refreshDatasets = () => void useDatasets.getState().refresh();

  return {
    datasetId: null,
    filters: noFilters,
    tokenizer: readLocal<TokenizerSetting | null>("tokenizer", null),
    tokenJob: null,
    total: null,
    gen: 0,
    pages: {},
    window: { start: 0, end: 0 },
    editor: null,
    setDataset: (id) => {
      if (id === get().datasetId) return;
      requery({ datasetId: id, filters: noFilters, editor: null, tokenJob: null, window: { start: 0, end: 0 } });
      startCounting(id, get().tokenizer);
    },
    setSearch: (search) => {
      set({ filters: { ...get().filters, search } });
      if (searchTimer) clearTimeout(searchTimer);
      searchTimer = setTimeout(() => requery({}), 200);
    },
    setFilters: (patch) => requery({ filters: { ...get().filters, ...patch } }),
    setTokenizer: (t) => {
      writeLocal("tokenizer", t);
      requery({ tokenizer: t, tokenJob: null });
      startCounting(get().datasetId, t);
    },
    ensure: (win) => {
      set({ window: win });
      const { datasetId, gen, filters, tokenizer, total } = get();
      if (!datasetId) return;
      // Before the first answer we do not know the total: ask for the first page of the window only.
      // After it: the pages of the window first, then half a page of margin either side (scrolling on shows rows
      // already there). At most MAX_INFLIGHT requests at a time; each answer asks again for the window *then*, so a
      // jump across 100k rows fetches where the user landed, not every page the scrollbar passed.
      const wanted =
        total === null
          ? pagesFor({ start: win.start, end: Math.max(win.end, win.start + 1) }, PAGE_SIZE).slice(0, 1)
          : [...new Set([...pagesFor(win, PAGE_SIZE), ...pagesFor({ start: Math.max(0, win.start - PAGE_SIZE / 2), end: Math.min(total, win.end + PAGE_SIZE / 2) }, PAGE_SIZE)])];
      for (const p of wanted) {
        const key = `${gen}:${p}`;
        if (get().pages[p] || inflight.has(key)) continue;
        if (inflight.size >= MAX_INFLIGHT) return;
        inflight.add(key);
        api()
          .call("samples.list", { ...listQuery(datasetId, filters, tokenizer), offset: p * PAGE_SIZE, limit: PAGE_SIZE })
          .then((r) => {
            inflight.delete(key);
            // an answer for an older query is dropped, but its slot is free now: ask for the current window
            if (get().gen !== gen) return get().ensure(get().window);
            const pages = evictPages({ ...get().pages, [p]: r.items }, get().window, PAGE_SIZE, MAX_PAGES);
            set({ pages, total: r.total });
            get().ensure(get().window);
          })
          .catch((e: unknown) => {
            inflight.delete(key);
            if (get().gen === gen) useUi.getState().notifyError(e);
            else get().ensure(get().window);
          });
      }
    },
    reload: () => {
      // Keep the rows on screen until their replacements arrive (no flash of empty rows).
      const { datasetId, filters, tokenizer, window: win } = get();
      if (!datasetId) return;
      const gen = get().gen + 1;
      const seq = ++reloadSeq;
      set({ gen });
      const wanted = pagesFor(win.end > win.start ? win : { start: 0, end: 1 }, PAGE_SIZE);
      void Promise.all(wanted.map((p) => api().call("samples.list", { ...listQuery(datasetId, filters, tokenizer), offset: p * PAGE_SIZE, limit: PAGE_SIZE }).then((r) => [p, r] as const)))
        .then((answers) => {
          if (seq !== reloadSeq || get().gen !== gen) return;
          const pages: Record<number, SampleRow[]> = {};
          let total = get().total ?? 0;
          for (const [p, r] of answers) {
            pages[p] = r.items;
            total = r.total;
          }
          set({ pages, total });
          get().ensure(get().window);
        })
        .catch((e: unknown) => useUi.getState().notifyError(e));
    },
    row: (index) => get().pages[Math.floor(index / PAGE_SIZE)]?.[index % PAGE_SIZE],
    open: async (id) => {
      try {
        const tok = get().tokenizer;
        const sample = await api().call("samples.get", { id, ...(tok ? { tokenizer: { modelDir: tok.modelDir, maxSeqLen: tok.maxSeqLen } } : {}) });
        set({ editor: { sample, draft: sample.messages, dirty: false, saving: false, error: null } });
      } catch (e) {
        useUi.getState().notifyError(e);
      }
    },
    close: () => set({ editor: null }),
    setRole: (i, role) => editDraft(set, get, (d) => d.map((m, j) => (j === i ? { ...m, role } : m))),
    setText: (i, content) => editDraft(set, get, (d) => d.map((m, j) => (j === i ? { ...m, content } : m))),
    addMessage: () => editDraft(set, get, (d) => [...d, { role: nextRole(d), content: "" }]),
    removeMessage: (i) => editDraft(set, get, (d) => d.filter((_, j) => j !== i)),
    move: (i, delta) => editDraft(set, get, (d) => moveMessage(d, i, delta)),
    save: async () => {
      const ed = get().editor;
      if (!ed || ed.saving) return false;
      set({ editor: { ...ed, saving: true, error: null } });
      try {
        const sample = await api().call("samples.update", { id: ed.sample.id, messages: ed.draft });
        const now = get().editor;
        if (now?.sample.id === sample.id) set({ editor: { sample, draft: sample.messages, dirty: false, saving: false, error: null } });
        get().reload();
        refreshDatasets();
        return true;
      } catch (e) {
        const msg = (e as Error)?.message ?? String(e);
        const now = get().editor;
        if (now) set({ editor: { ...now, saving: false, error: { index: errorIndex(msg), message: msg } } });
        return false;
      }
    },
    addSample: async () => {
      const datasetId = get().datasetId;
      if (!datasetId) return;
      try {
        // A new sample must be valid to be stored: a user turn and an assistant turn to fill in.
        const sample = await api().call("samples.add", { datasetId, messages: [{ role: "user", content: "…" }, { role: "assistant", content: "…" }] });
        set({ editor: { sample, draft: sample.messages, dirty: false, saving: false, error: null, fresh: true } });
        get().reload();
        refreshDatasets();
      } catch (e) {
        useUi.getState().notifyError(e);
      }
    },
    duplicateSample: async () => {
      const ed = get().editor;
      if (!ed) return;
      try {
        const sample = await api().call("samples.duplicate", { id: ed.sample.id });
        set({ editor: { sample, draft: sample.messages, dirty: false, saving: false, error: null } });
        get().reload();
        refreshDatasets();
      } catch (e) {
        useUi.getState().notifyError(e);
      }
    },
    deleteSample: async () => {
      const ed = get().editor;
      if (!ed) return;
      try {
        await api().call("samples.delete", { id: ed.sample.id });
        set({ editor: null });
        get().reload();
        refreshDatasets();
      } catch (e) {
        useUi.getState().notifyError(e);
      }
    },
    undo: async () => {
      const datasetId = get().datasetId;
      if (!datasetId) return;
      try {
        const { sample } = await api().call("samples.undo", { datasetId });
        const ed = get().editor;
        if (sample) set({ editor: { sample, draft: sample.messages, dirty: false, saving: false, error: null } });
        else if (ed) set({ editor: null });
        get().reload();
        refreshDatasets();
      } catch (e) {
        useUi.getState().notifyError(e);
      }
    },
    onJob: (job) => {
      if (job.kind !== "tokens") return;
      const p = tokenJobOf(job);
      const cur = get().tokenJob;
      if (p.datasetId !== get().datasetId) return;
      if (cur && cur.jobId !== p.jobId && cur.state === "running" && p.state !== "running") return;
      set({ tokenJob: p });
      // counts arrive in batches: show them as they come (every ~1.5 s while running) and all of them at the end
      const now = Date.now();
      if (p.state === "done" || (p.state === "running" && now - lastTokenReload > 1500)) {
        lastTokenReload = now;
        get().reload();
      }
    },
  };
});

type Set = (patch: Partial<SamplesState>) => void;
type Get = () => SamplesState;
function editDraft(set: Set, get: Get, change: (d: SampleMessage[]) => SampleMessage[]): void {
  const ed = get().editor;
  if (!ed) return;
  const draft = change(ed.draft);
  if (draft === ed.draft) return;
  set({ editor: { ...ed, draft, dirty: true, error: ed.error && ed.error.index === null ? ed.error : null } });
}
