// Finetune runs: the new-run form (dataset, base model, preset, base precision, Advanced knobs) with the engine's
// memory estimate re-asked as it changes, the list of runs (finetune.run events), each run's points (finetune.point
// events, merged with finetune.get after a reload), Pause/Resume/Cancel through jobs.* with the run's jobId, the
// export of a checkpoint (its Job lives in the one jobs store, stores/jobs.ts) and "chat with checkpoint N".
import { create } from "zustand";
import { api } from "../api/index.js";
import type { CallInput, CallOutput, Conversation, EventPayload } from "../api/types.js";
import type { FinetuneRun, FinetuneSpec, Job, MemoryEstimate, RunRouting, TrainKnobs, TrainPoint } from "../../../electron/contract.js";
import { mergeWindows } from "../routing.js";
import { useConversations } from "./conversations.js";
import { useChat } from "./chat.js";
import { useDatasets } from "./datasets.js";
import { useJobs } from "./jobs.js";
import { useModels } from "./models.js";
import { useUi } from "./ui.js";

export type { FinetuneRun, Job, MemoryEstimate, TrainPoint };
export type Preset = FinetuneSpec["preset"];
export type BaseQuant = FinetuneSpec["baseQuant"];

// ---------- pure reducers (tested directly: test/unit/finetune-store.test.ts) ----------

/**
 * Points in step order, one per step. A step's training point and its evaluation arrive as separate events for the
 * same step, and after a reload finetune.get's answer can overlap events already received (or arrive after newer
 * ones): fields merge, a later non-null value wins, a null never erases a value.
 */
export function mergePoints(points: readonly TrainPoint[], incoming: readonly TrainPoint[]): TrainPoint[] {
  if (incoming.length === 0) return points as TrainPoint[];
  const byStep = new Map<number, TrainPoint>();
  for (const p of points) byStep.set(p.step, p);
  for (const p of incoming) {
    const old = byStep.get(p.step);
    if (!old) {
      byStep.set(p.step, p);
      continue;
    }
    const merged = { ...old };
    for (const k of Object.keys(p) as (keyof TrainPoint)[]) if (p[k] !== null) (merged as Record<string, unknown>)[k] = p[k];
    byStep.set(p.step, merged);
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

/** The smoothing slider's default, as TensorBoard's. */
export const SMOOTHING = 0.6;

/**
 * TensorBoard's scalar smoothing: an exponential moving average with debiasing (last = w·last + (1-w)·x, shown as
 * last / (1 - w^n) over the n values seen), so the first values are not pulled towards 0. Nulls and non-finite
 * values are skipped (stay null) and do not count towards n, as TensorBoard skips them.
 */
export function smoothEma(values: readonly (number | null)[], weight = SMOOTHING): (number | null)[] {
  let last = 0;
  let n = 0;
  return values.map((v) => {
    if (v === null || !Number.isFinite(v)) return null;
    last = last * weight + (1 - weight) * v;
    n++;
    const debias = weight === 0 ? 1 : 1 - Math.pow(weight, n);
    return last / debias;
  });
}

export type Verdict = MemoryEstimate["verdict"];

/** How the estimate reads in the panel: the verdict's key, whether Start is allowed, and the share of free memory. */
export function verdictView(e: MemoryEstimate): { verdict: Verdict; canStart: boolean; fraction: number | null; tone: "ok" | "warn" | "bad" } {
  const fraction = e.availableBytes > 0 ? e.totalBytes / e.availableBytes : null;
  const tone = e.verdict === "fits" ? "ok" : e.verdict === "tight" ? "warn" : "bad";
  return { verdict: e.verdict, canStart: e.verdict !== "will_not_fit", fraction, tone };
}

/** Which controls a run offers, from its status (and whether a job runs it now). */
export function runControls(run: Pick<FinetuneRun, "status" | "jobId">): { pause: boolean; resume: boolean; cancel: boolean; remove: boolean } {
  const s = run.status;
  const live = s === "running" || s === "queued";
  return {
    pause: s === "running" && run.jobId !== null,
    resume: (s === "paused" || s === "interrupted") && run.jobId !== null,
    cancel: (live || s === "paused" || s === "interrupted") && run.jobId !== null,
    remove: !live,
  };
}

/** A run's status while a job trains it is its job's (as the service's view says): pausing still trains. */
export const JOB_TO_RUN: Record<Job["status"], FinetuneRun["status"]> = {
  queued: "queued", running: "running", pausing: "running", paused: "paused", done: "done", failed: "failed", cancelled: "cancelled", interrupted: "interrupted",
};

/**
 * A jobs.job event for the job that trains a run: the run takes the job's status (a pause or a cancel of a paused
 * run changes no step, so no finetune.run event says it), its error when it failed. Other runs stay as they are.
 */
export function applyJobToRuns(runs: readonly FinetuneRun[], job: Pick<Job, "id" | "status" | "error">): FinetuneRun[] {
  let changed = false;
  const next = runs.map((r) => {
    if (r.jobId !== job.id) return r;
    const status = JOB_TO_RUN[job.status];
    const error = status === "failed" ? (job.error ?? r.error) : r.error;
    if (status === r.status && error === r.error) return r;
    changed = true;
    return { ...r, status, error };
  });
  return changed ? next : (runs as FinetuneRun[]);
}

/** Inserts or replaces a run; newest first. */
export function upsertRun(list: readonly FinetuneRun[], run: FinetuneRun): FinetuneRun[] {
  const rest = list.filter((r) => r.id !== run.id);
  return [...rest, run].sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1));
}

export interface Series {
  id: string;
  label: string;
  points: [number, number][];
}

/** The loss curves of two (or more) runs on one chart: each run's smoothed training loss against step. */
export function compareSeries(runs: readonly { run: Pick<FinetuneRun, "id" | "name">; points: readonly TrainPoint[] }[], weight = SMOOTHING): Series[] {
  return runs.map(({ run, points }) => {
    const s = smoothEma(points.map((p) => p.loss), weight);
    const out: [number, number][] = [];
    points.forEach((p, i) => {
      const v = s[i];
      if (v !== null) out.push([p.step, v]);
    });
    return { id: run.id, label: run.name, points: out };
  });
}

/** Elapsed seconds and the time left, from the last point (the engine reports elapsed; ETA scales the rate). */
export function timing(points: readonly TrainPoint[], totalSteps: number | null): { elapsedS: number | null; etaS: number | null; tokensPerS: number | null } {
  let last: TrainPoint | undefined;
  let tps: number | null = null;
  for (let i = points.length - 1; i >= 0; i--) {
    if (!last && points[i].elapsedS !== null) last = points[i];
    if (tps === null && points[i].tokensPerS !== null) tps = points[i].tokensPerS;
    if (last && tps !== null) break;
  }
  if (!last || last.elapsedS === null) return { elapsedS: null, etaS: null, tokensPerS: tps };
  const etaS = totalSteps !== null && last.step > 0 ? Math.max(0, (last.elapsedS / last.step) * (totalSteps - last.step)) : null;
  return { elapsedS: last.elapsedS, etaS, tokensPerS: tps };
}

/** "1:05", "1:02:03": elapsed and ETA. */
export function formatDuration(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return "—";
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}` : `${m}:${String(sec).padStart(2, "0")}`;
}

/** The Advanced panel's knobs, with their kind (how the text field parses) and unit. */
export type KnobName = Exclude<keyof TrainKnobs, "expert_lr_scale" | "target_modules">;
export const KNOBS: { name: KnobName; kind: "float" | "int" | "bool" | "enum"; options?: string[] }[] = [
  { name: "learning_rate", kind: "float" },
  { name: "min_lr", kind: "float" },
  { name: "lr_scheduler_type", kind: "enum", options: ["cosine_with_min_lr", "cosine", "linear", "constant"] },
  { name: "warmup_ratio", kind: "float" },
  { name: "warmup_steps", kind: "int" },
  { name: "num_train_epochs", kind: "float" },
  { name: "max_steps", kind: "int" },
  { name: "per_device_train_batch_size", kind: "int" },
  { name: "gradient_accumulation_steps", kind: "int" },
  { name: "max_seq_length", kind: "int" },
  { name: "lora_rank", kind: "int" },
  { name: "lora_alpha", kind: "float" },
  { name: "lora_dropout", kind: "float" },
  { name: "use_rslora", kind: "bool" },
  { name: "weight_decay", kind: "float" },
  { name: "max_grad_norm", kind: "float" },
  { name: "save_steps", kind: "int" },
  { name: "eval_steps", kind: "int" },
  { name: "validation_split", kind: "float" },
  { name: "seed", kind: "int" },
  { name: "gradient_checkpointing", kind: "bool" },
  { name: "loss_on", kind: "enum", options: ["assistant", "all"] },
];
export const TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;

/** What the Advanced panel holds: text per knob ("" = the preset's value), the target modules (null = preset's). */
export interface KnobDraft {
  values: Partial<Record<KnobName, string>>;
  targets: string[] | null;
}

/** The draft's text fields as TrainKnobs, and the knobs whose text does not parse (named, so the field says so). */
export function parseKnobs(d: KnobDraft): { knobs: TrainKnobs; invalid: KnobName[] } {
  const knobs: Record<string, unknown> = {};
  const invalid: KnobName[] = [];
  for (const k of KNOBS) {
    const text = d.values[k.name]?.trim() ?? "";
    if (text === "") continue;
    if (k.kind === "bool") {
      if (text === "true" || text === "false") knobs[k.name] = text === "true";
      else invalid.push(k.name);
    } else if (k.kind === "enum") {
      if (k.options!.includes(text)) knobs[k.name] = text;
      else invalid.push(k.name);
    } else {
      const v = Number(text);
      if (!Number.isFinite(v) || (k.kind === "int" && !Number.isInteger(v)) || v < 0) invalid.push(k.name);
      else knobs[k.name] = v;
    }
  }
  if (d.targets !== null) {
    if (d.targets.length === 0) invalid.push("lora_rank");
    else knobs.target_modules = TARGETS.filter((t) => d.targets!.includes(t));
  }
  return { knobs: knobs as TrainKnobs, invalid };
}

/** The run's log: one line per status change and per new job message, in arrival order (the last 500). */
export function appendLog(log: readonly string[], line: string | null): string[] {
  if (!line || log.at(-1) === line) return log as string[];
  const next = [...log, line];
  return next.length > 500 ? next.slice(-500) : next;
}

/** The folder an export job produced (its result names it). */
export function exportOutput(job: Pick<Job, "result">): string | null {
  const r = job.result as { dir?: unknown; path?: unknown; output?: unknown } | string | null;
  if (typeof r === "string") return r;
  if (r && typeof r === "object") for (const v of [r.dir, r.output, r.path]) if (typeof v === "string") return v;
  return null;
}

// ---------- the store ----------

export interface EstimateState {
  state: "idle" | "loading" | "ready" | "error";
  value: MemoryEstimate | null;
  error: string | null;
}

export interface Draft {
  modelDir: string;
  datasetId: string;
  baseQuant: BaseQuant;
  preset: Preset;
  name: string;
  knobs: KnobDraft;
}

interface FinetuneState {
  runs: FinetuneRun[];
  loaded: boolean;
  /** The run the view shows; null: the new-run form. */
  openId: string | null;
  points: Record<string, TrainPoint[]>;
  /** Each run's routing windows (finetune.routing events, merged with finetune.get's). */
  routing: Record<string, RunRouting[]>;
  log: Record<string, string[]>;
  /** Runs ticked for "compare" (at most two). */
  compare: string[];
  draft: Draft;
  /** One estimate per base precision, so both choices show their memory cost. */
  estimates: Record<BaseQuant, EstimateState>;
  starting: boolean;
  startError: string | null;
  /** The last "Export for a cluster" of the form: the job folder written, or why not. */
  clusterJob: { state: "idle" | "writing" | "done" | "error"; result: CallOutput<"finetune.clusterJob"> | null; error: string | null };
  /** An import started from the Finetune view: its dataset is selected here once committed. */
  awaitingImport: boolean;
  refresh(): Promise<void>;
  open(id: string | null): Promise<void>;
  setDraft(p: Partial<Omit<Draft, "knobs">>): void;
  setKnob(name: KnobName, text: string): void;
  setTargets(targets: string[] | null): void;
  resetKnobs(): void;
  requestEstimate(): void;
  start(): Promise<void>;
  /** The form's run as a LLaMA-Factory job folder (finetune.clusterJob), for a run too big for this machine. */
  exportClusterJob(): Promise<void>;
  pause(run: FinetuneRun): Promise<void>;
  resume(run: FinetuneRun): Promise<void>;
  cancel(run: FinetuneRun): Promise<void>;
  cancelJob(jobId: string): Promise<void>;
  remove(id: string): Promise<void>;
  toggleCompare(id: string): void;
  exportCheckpoint(input: CallInput<"finetune.export">): Promise<Job | null>;
  chatWithCheckpoint(run: FinetuneRun, checkpoint: FinetuneRun["checkpoints"][number], title: string): Promise<void>;
  /** "Finetune with this dataset" (Datasets) and a dropped file's import: open the form with that dataset. */
  pickDataset(id: string): void;
  importForFinetune(file: File): Promise<void>;
  onRun(run: FinetuneRun): void;
  onPoint(e: EventPayload<"finetune.point">): void;
  onRouting(e: EventPayload<"finetune.routing">): void;
  onJob(job: Job): void;
}

const idle: EstimateState = { state: "idle", value: null, error: null };
let estimateTimer: ReturnType<typeof setTimeout> | null = null;
let estimateSeq = 0;
/** Export jobs started from this window that have not finished yet. */
const exportsStarted = new Set<string>();
/** Debounce of the estimate: typing a knob re-asks once the typing pauses. */
export const ESTIMATE_DEBOUNCE_MS = 300;

function message(e: unknown): string {
  return (e as Error)?.message ?? String(e);
}

/** The spec the form would start (null while it lacks a model or a dataset, or a knob does not parse). */
export function specOf(d: Draft, baseQuant: BaseQuant = d.baseQuant): FinetuneSpec | null {
  if (!d.modelDir || !d.datasetId) return null;
  const { knobs, invalid } = parseKnobs(d.knobs);
  if (invalid.length) return null;
  return { modelDir: d.modelDir, datasetId: d.datasetId, baseQuant, preset: d.preset, knobs, ...(d.name.trim() ? { name: d.name.trim() } : {}) };
}

/**
 * The one place that opens a chat on an adapter: conversations.create with the run's base model and the
 * checkpoint's adapter folder (the adapter-chat branch adds modelDir/adapterDir to that call).
 */
export async function createAdapterConversation(title: string, modelDir: string, adapterDir: string): Promise<Conversation> {
  return api().call("conversations.create", { title, modelDir, adapterDir });
}

/**
 * A new conversation on `adapterDir` over its base `modelDir`, opened in Chat: "Chat with checkpoint" here and "Open
 * in chat" on an exported adapter in Models. The base loads on the first send (the chat service opens it).
 */
export async function chatWithAdapter(title: string, modelDir: string, adapterDir: string): Promise<void> {
  try {
    const conv = await createAdapterConversation(title, modelDir, adapterDir);
    useChat.getState().setConversation(conv, []);
    await useConversations.getState().refresh();
    await useConversations.getState().select(conv.id);
  } catch (e) {
    useUi.getState().notifyError(e);
  }
}

export const useFinetune = create<FinetuneState>((set, get) => ({
  runs: [],
  loaded: false,
  openId: null,
  points: {},
  routing: {},
  log: {},
  compare: [],
  draft: { modelDir: "", datasetId: "", baseQuant: "nf4", preset: "quick", name: "", knobs: { values: {}, targets: null } },
  estimates: { none: idle, nf4: idle },
  starting: false,
  startError: null,
  clusterJob: { state: "idle", result: null, error: null },
  awaitingImport: false,
  refresh: async () => {
    try {
      const list = await api().call("finetune.list", {});
      let runs: FinetuneRun[] = [];
      for (const r of list) runs = upsertRun(runs, r);
      set({ runs, loaded: true });
      const open = get().openId;
      if (open && runs.some((r) => r.id === open)) await get().open(open);
    } catch (e) {
      set({ loaded: true });
      useUi.getState().notifyError(e);
    }
  },
  open: async (id) => {
    set({ openId: id });
    if (!id) return;
    try {
      const { run, points, routing } = await api().call("finetune.get", { id });
      set({
        runs: upsertRun(get().runs, run),
        points: { ...get().points, [id]: mergePoints(get().points[id] ?? [], points) },
        routing: { ...get().routing, [id]: mergeWindows(get().routing[id] ?? [], routing) },
      });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  setDraft: (p) => {
    set({ draft: { ...get().draft, ...p } });
    get().requestEstimate();
  },
  setKnob: (name, text) => {
    const d = get().draft;
    set({ draft: { ...d, knobs: { ...d.knobs, values: { ...d.knobs.values, [name]: text } } } });
    get().requestEstimate();
  },
  setTargets: (targets) => {
    const d = get().draft;
    set({ draft: { ...d, knobs: { ...d.knobs, targets } } });
    get().requestEstimate();
  },
  resetKnobs: () => {
    set({ draft: { ...get().draft, knobs: { values: {}, targets: null } } });
    get().requestEstimate();
  },
  requestEstimate: () => {
    if (estimateTimer) clearTimeout(estimateTimer);
    const seq = ++estimateSeq;
    if (!specOf(get().draft)) {
      set({ estimates: { none: idle, nf4: idle } });
      return;
    }
    set({ estimates: { none: { ...get().estimates.none, state: "loading" }, nf4: { ...get().estimates.nf4, state: "loading" } } });
    estimateTimer = setTimeout(() => {
      estimateTimer = null;
      for (const q of ["none", "nf4"] as const) {
        const spec = specOf(get().draft, q);
        if (!spec) continue;
        api()
          .call("finetune.estimate", spec)
          .then((value) => seq === estimateSeq && set({ estimates: { ...get().estimates, [q]: { state: "ready", value, error: null } } }))
          .catch((e: unknown) => seq === estimateSeq && set({ estimates: { ...get().estimates, [q]: { state: "error", value: null, error: message(e) } } }));
      }
    }, ESTIMATE_DEBOUNCE_MS);
  },
  start: async () => {
    const spec = specOf(get().draft);
    const est = get().estimates[get().draft.baseQuant].value;
    if (!spec || (est && !verdictView(est).canStart)) return;
    set({ starting: true, startError: null });
    try {
      const run = await api().call("finetune.start", spec);
      set({ starting: false, runs: upsertRun(get().runs, run), openId: run.id, log: { ...get().log, [run.id]: appendLog(get().log[run.id] ?? [], `${run.status}`) } });
    } catch (e) {
      set({ starting: false, startError: message(e) });
    }
  },
  exportClusterJob: async () => {
    const spec = specOf(get().draft);
    if (!spec) return;
    set({ clusterJob: { state: "writing", result: null, error: null } });
    try {
      const result = await api().call("finetune.clusterJob", { spec });
      set({ clusterJob: { state: "done", result, error: null } });
    } catch (e) {
      set({ clusterJob: { state: "error", result: null, error: message(e) } });
    }
  },
  pause: async (run) => {
    if (!run.jobId) return;
    try {
      await api().call("jobs.pause", { id: run.jobId });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  resume: async (run) => {
    if (!run.jobId) return;
    try {
      await api().call("jobs.resume", { id: run.jobId });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  cancel: async (run) => {
    if (run.jobId) await get().cancelJob(run.jobId);
  },
  cancelJob: async (jobId) => {
    try {
      await api().call("jobs.cancel", { id: jobId });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  remove: async (id) => {
    try {
      await api().call("finetune.delete", { id });
      const { [id]: _p, ...points } = get().points;
      set({ runs: get().runs.filter((r) => r.id !== id), points, compare: get().compare.filter((c) => c !== id), ...(get().openId === id ? { openId: null } : {}) });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  toggleCompare: (id) => {
    const c = get().compare;
    const next = c.includes(id) ? c.filter((x) => x !== id) : [...c, id].slice(-2);
    set({ compare: next });
    for (const r of next) if (!get().points[r]) void api().call("finetune.get", { id: r }).then(({ points }) => set({ points: { ...get().points, [r]: mergePoints(get().points[r] ?? [], points) } })).catch(() => {});
  },
  exportCheckpoint: async (input) => {
    try {
      const job = await api().call("finetune.export", input);
      // the one jobs store holds its progress (jobs.job events); it knows the job from its first answer
      useJobs.getState().onJob(job);
      exportsStarted.add(job.id);
      return job;
    } catch (e) {
      useUi.getState().notifyError(e);
      return null;
    }
  },
  chatWithCheckpoint: (run, checkpoint, title) => chatWithAdapter(title, run.modelDir, checkpoint.dir),
  pickDataset: (id) => {
    set({ openId: null, awaitingImport: false });
    get().setDraft({ datasetId: id });
    useUi.getState().setView("finetune");
  },
  importForFinetune: async (file) => {
    set({ awaitingImport: true });
    await useDatasets.getState().importFile(file);
    // refused at once (another import runs, not a dataset file): nothing to wait for
    if (!useDatasets.getState().import) set({ awaitingImport: false });
  },
  onRun: (run) => {
    const prev = get().runs.find((r) => r.id === run.id);
    const log = prev?.status !== run.status ? appendLog(get().log[run.id] ?? [], run.error ? `${run.status}: ${run.error}` : run.status) : get().log[run.id];
    set({ runs: upsertRun(get().runs, run), ...(log ? { log: { ...get().log, [run.id]: log } } : {}) });
  },
  onPoint: ({ runId, point }) => {
    set({ points: { ...get().points, [runId]: mergePoints(get().points[runId] ?? [], [point]) } });
  },
  onRouting: ({ runId, window }) => {
    set({ routing: { ...get().routing, [runId]: mergeWindows(get().routing[runId] ?? [], [window]) } });
  },
  onJob: (job) => {
    // a dataset dropped on the Finetune view: its import job's end picks the new dataset (or gives up waiting)
    if (get().awaitingImport && (job.kind === "import" || job.kind === "scan")) {
      const result = job.result as { datasetId?: string } | null;
      if (job.kind === "import" && job.status === "done" && result?.datasetId) get().pickDataset(result.datasetId);
      else if (job.status === "failed" || job.status === "cancelled" || job.status === "interrupted") set({ awaitingImport: false });
    }
    if (exportsStarted.has(job.id) && job.status === "done") {
      // the merged model is in the models folder now: Models lists it
      exportsStarted.delete(job.id);
      void useModels.getState().refresh();
    }
    const run = get().runs.find((r) => r.jobId === job.id);
    if (!run) return;
    const runs = applyJobToRuns(get().runs, job);
    let log = get().log[run.id] ?? [];
    const now = runs.find((r) => r.id === run.id)!;
    if (now.status !== run.status) log = appendLog(log, now.error ? `${now.status}: ${now.error}` : now.status);
    if (job.message) log = appendLog(log, job.message);
    set({ runs, log: { ...get().log, [run.id]: log } });
  },
}));
