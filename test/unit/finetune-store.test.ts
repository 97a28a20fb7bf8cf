// The Finetune view's store: its pure reducers (points merged after a reload, TensorBoard's smoothing, two runs on
// one chart, the estimate's verdict, which controls a run offers, the Advanced panel's parsing) and the store's own
// handling of events (finetune.run / finetune.point / jobs.job) as the wiring delivers them.
import { describe, expect, it } from "vitest";
import type { FinetuneRun, Job, MemoryEstimate, TrainPoint } from "../../electron/contract.js";
import {
  appendLog,
  applyJobToRuns,
  compareSeries,
  exportOutput,
  formatDuration,
  mergePoints,
  parseKnobs,
  runControls,
  smoothEma,
  specOf,
  timing,
  upsertRun,
  useFinetune,
  verdictView,
} from "../../renderer/src/stores/finetune.js";

const pt = (step: number, o: Partial<TrainPoint> = {}): TrainPoint => ({ step, loss: null, evalLoss: null, lr: null, gradNorm: null, tokensPerS: null, elapsedS: null, ...o });

function run(id: string, o: Partial<FinetuneRun> = {}): FinetuneRun {
  return {
    id, name: id, modelDir: "/m/qwen", datasetId: "d1", datasetName: "chats", baseQuant: "nf4", preset: "quick", args: {}, status: "running", error: null,
    createdAt: 1, updatedAt: 1, step: 0, totalSteps: 10, finalLoss: null, finalEvalLoss: null, checkpoints: [], runDir: `/runs/${id}`, jobId: `job-${id}`, ...o,
  };
}

describe("mergePoints", () => {
  it("orders by step and keeps one point per step when events arrive out of order or twice", () => {
    const live = [pt(3, { loss: 3 }), pt(1, { loss: 1 })];
    const a = mergePoints([], live);
    expect(a.map((p) => p.step)).toEqual([1, 3]);
    // after a reload finetune.get answers steps 1..4 while the live events 3 and 5 were already in
    const b = mergePoints(mergePoints(a, [pt(5, { loss: 5 })]), [1, 2, 3, 4].map((s) => pt(s, { loss: s })));
    expect(b.map((p) => [p.step, p.loss])).toEqual([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]]);
    expect(mergePoints(b, [pt(2, { loss: 2 })])).toHaveLength(5);
  });

  it("merges an evaluation into its step's training point; a null never erases a value", () => {
    const m = mergePoints([pt(10, { loss: 1.5, lr: 1e-4 })], [pt(10, { evalLoss: 1.7 })]);
    expect(m).toEqual([pt(10, { loss: 1.5, lr: 1e-4, evalLoss: 1.7 })]);
    const again = mergePoints(m, [pt(10, { loss: 1.5 })]);
    expect(again[0].evalLoss).toBe(1.7);
  });
});

describe("smoothEma (TensorBoard's debiased exponential moving average)", () => {
  it("gives TensorBoard's values", () => {
    // w = 0.6: last = 0.4, 1.04, 1.824; debias 1 - 0.6^n = 0.4, 0.64, 0.784
    const s = smoothEma([1, 2, 3], 0.6) as number[];
    expect(s[0]).toBeCloseTo(1, 12);
    expect(s[1]).toBeCloseTo(1.04 / 0.64, 12);
    expect(s[2]).toBeCloseTo(1.824 / 0.784, 12);
  });
  it("is the identity at weight 0, constant on a constant series, and skips nulls without counting them", () => {
    expect(smoothEma([5, 1, 7], 0)).toEqual([5, 1, 7]);
    for (const v of smoothEma([2, 2, 2, 2], 0.9)) expect(v).toBeCloseTo(2, 12);
    const s = smoothEma([1, null, 2, Number.NaN, 3], 0.6);
    expect(s[1]).toBeNull();
    expect(s[3]).toBeNull();
    expect(s[4]).toBeCloseTo(1.824 / 0.784, 12);
  });
});

describe("compareSeries", () => {
  it("puts both runs' smoothed loss against their own steps", () => {
    const a = { run: { id: "a", name: "A" }, points: [pt(1, { loss: 1 }), pt(2, { loss: 2 }), pt(3, { loss: 3 })] };
    const b = { run: { id: "b", name: "B" }, points: [pt(1, { loss: 4 }), pt(2, { evalLoss: 9 }), pt(4, { loss: 4 })] };
    const [sa, sb] = compareSeries([a, b], 0.6);
    expect(sa.label).toBe("A");
    expect(sa.points.map(([x]) => x)).toEqual([1, 2, 3]);
    expect(sa.points[2][1]).toBeCloseTo(1.824 / 0.784, 12);
    // step 2 of B has no training loss: it is not a point of the curve
    expect(sb.points).toEqual([[1, 4], [4, 4]]);
  });
});

describe("verdictView", () => {
  const est = (verdict: MemoryEstimate["verdict"], total: number, free: number): MemoryEstimate => ({
    baseBytes: total / 2, adapterBytes: total / 4, activationBytes: total / 4, totalBytes: total, availableBytes: free, params: 1, verdict, advice: null,
  });
  it("maps the engine's verdict to what the panel shows and whether Start is allowed", () => {
    expect(verdictView(est("fits", 2, 8))).toEqual({ verdict: "fits", canStart: true, fraction: 0.25, tone: "ok" });
    expect(verdictView(est("tight", 7, 8))).toEqual({ verdict: "tight", canStart: true, fraction: 0.875, tone: "warn" });
    expect(verdictView(est("will_not_fit", 16, 8))).toEqual({ verdict: "will_not_fit", canStart: false, fraction: 2, tone: "bad" });
    expect(verdictView(est("fits", 2, -1)).fraction).toBeNull();
  });
});

describe("runControls", () => {
  it("Pause while training, Resume when paused or interrupted, Cancel while there is a job, Delete when not live", () => {
    expect(runControls({ status: "running", jobId: "j" })).toEqual({ pause: true, resume: false, cancel: true, remove: false });
    expect(runControls({ status: "paused", jobId: "j" })).toEqual({ pause: false, resume: true, cancel: true, remove: true });
    expect(runControls({ status: "interrupted", jobId: "j" })).toEqual({ pause: false, resume: true, cancel: true, remove: true });
    expect(runControls({ status: "done", jobId: null })).toEqual({ pause: false, resume: false, cancel: false, remove: true });
  });
});

describe("parseKnobs and specOf", () => {
  it("turns the Advanced panel's text into train.json knobs, naming the ones that do not parse", () => {
    const r = parseKnobs({ values: { learning_rate: "2e-4", max_steps: "12", use_rslora: "true", lr_scheduler_type: "cosine", lora_rank: "" }, targets: null });
    expect(r).toEqual({ knobs: { learning_rate: 2e-4, max_steps: 12, use_rslora: true, lr_scheduler_type: "cosine" }, invalid: [] });
    expect(parseKnobs({ values: { max_steps: "1.5", learning_rate: "fast" }, targets: null }).invalid.sort()).toEqual(["learning_rate", "max_steps"]);
    expect(parseKnobs({ values: {}, targets: ["v_proj", "q_proj"] }).knobs).toEqual({ target_modules: ["q_proj", "v_proj"] });
  });
  it("has no spec without a model and a dataset, or with a bad knob", () => {
    const d = { modelDir: "/m", datasetId: "d", baseQuant: "nf4" as const, preset: "quick" as const, name: " first ", knobs: { values: {}, targets: null } };
    expect(specOf(d)).toEqual({ modelDir: "/m", datasetId: "d", baseQuant: "nf4", preset: "quick", knobs: {}, name: "first" });
    expect(specOf(d, "none")?.baseQuant).toBe("none");
    expect(specOf({ ...d, modelDir: "" })).toBeNull();
    expect(specOf({ ...d, knobs: { values: { seed: "-1" }, targets: null } })).toBeNull();
  });
});

describe("small helpers", () => {
  it("upsertRun keeps the newest first and replaces by id", () => {
    const l = upsertRun(upsertRun([], run("a", { createdAt: 1 })), run("b", { createdAt: 2 }));
    expect(l.map((r) => r.id)).toEqual(["b", "a"]);
    expect(upsertRun(l, run("a", { createdAt: 1, step: 5 })).find((r) => r.id === "a")?.step).toBe(5);
  });
  it("timing takes elapsed from the last point and scales it to the steps left", () => {
    expect(timing([pt(1, { elapsedS: 2, tokensPerS: 50 }), pt(4, { elapsedS: 8 })], 10)).toEqual({ elapsedS: 8, etaS: 12, tokensPerS: 50 });
    expect(timing([], 10)).toEqual({ elapsedS: null, etaS: null, tokensPerS: null });
    expect(formatDuration(3723)).toBe("1:02:03");
    expect(formatDuration(65)).toBe("1:05");
  });
  it("appendLog drops a repeated line; exportOutput reads the job's folder", () => {
    expect(appendLog(appendLog([], "running"), "running")).toEqual(["running"]);
    expect(exportOutput({ result: { dir: "/models/x" } })).toBe("/models/x");
    expect(exportOutput({ result: null })).toBeNull();
  });
});

describe("the store's event handlers", () => {
  it("points for a run accumulate in order; a run's status and its job's messages go to its log; a job of no run changes nothing", () => {
    const s = useFinetune.getState();
    s.onRun(run("r1", { status: "queued" }));
    s.onRun(run("r1", { status: "running" }));
    s.onPoint({ runId: "r1", point: pt(2, { loss: 2 }) });
    s.onPoint({ runId: "r1", point: pt(1, { loss: 1 }) });
    s.onPoint({ runId: "r1", point: pt(2, { loss: 2 }) });
    const job = { id: "job-r1", kind: "train", title: "t", status: "running", progress: null, message: "step 2/10, loss 2", error: null, canPause: true, canResume: false, startedAt: 0, updatedAt: 0, subject: "r1", result: null } as Job;
    s.onJob(job);
    const st = useFinetune.getState();
    expect(st.points.r1.map((p) => p.step)).toEqual([1, 2]);
    expect(st.log.r1).toEqual(["queued", "running", "step 2/10, loss 2"]);
    expect(st.runs.map((r) => r.status)).toEqual(["running"]);
    s.onJob({ ...job, id: "e1", kind: "export", status: "done" });
    expect(useFinetune.getState().runs).toBe(st.runs);
    expect(useFinetune.getState().log).toBe(st.log);
  });
});

describe("the Finetune view's accessible names", () => {
  it("are the ones the issue names, in English and Chinese", async () => {
    const { en } = await import("../../renderer/src/i18n/en.js");
    const { zh } = await import("../../renderer/src/i18n/zh.js");
    const keys = ["finetune.nav", "finetune.start", "finetune.pause", "finetune.resume", "finetune.cancel", "finetune.export", "finetune.chatWith"] as const;
    expect(keys.map((k) => en[k])).toEqual(["Finetune", "Start", "Pause", "Resume", "Cancel", "Export", "Chat with checkpoint"]);
    expect(keys.map((k) => zh[k])).toEqual(["微调", "开始", "暂停", "继续", "取消", "导出", "用检查点对话"]);
  });
});

describe("the chart's axes", () => {
  it("ticks are round 1/2/5 steps inside the range", async () => {
    const { ticks, fmtTick } = await import("../../renderer/src/components/finetune/LineChart.js");
    expect(ticks(0, 10, 4)).toEqual([0, 5, 10]);
    // the smallest 1/2/5 step no finer than range / n: 2.6 / 4 = 0.65 -> 1
    expect(ticks(0.3, 2.9, 4)).toEqual([1, 2]);
    expect(ticks(0.3, 2.9, 8)).toEqual([0.5, 1, 1.5, 2, 2.5]);
    expect(ticks(1, 1)).toEqual([1]);
    expect(fmtTick(0.0002)).toBe("2e-4");
    expect(fmtTick(1.5)).toBe("1.5");
    expect(fmtTick(0.0095)).toBe("9.5e-3");
  });
});

describe("applyJobToRuns", () => {
  it("a paused, resumed or failed train job changes its run's status (no finetune.run says so); other runs stay", () => {
    const runs = [run("a", { jobId: "ja" }), run("b", { jobId: "jb" })];
    const paused = applyJobToRuns(runs, { id: "ja", status: "paused", error: null });
    expect(paused.map((r) => r.status)).toEqual(["paused", "running"]);
    expect(paused[1]).toBe(runs[1]);
    expect(applyJobToRuns(paused, { id: "ja", status: "pausing", error: null })[0].status).toBe("running");
    const failed = applyJobToRuns(runs, { id: "jb", status: "failed", error: "out of memory" });
    expect(failed[1]).toMatchObject({ status: "failed", error: "out of memory" });
    expect(applyJobToRuns(runs, { id: "other", status: "done", error: null })).toBe(runs);
  });
});
