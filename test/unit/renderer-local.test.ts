// Models → "In your models folder" (renderer/src/stores/library.ts) over its real WebSocket transport against `serve`'s
// server: the list loads through library.local, and a GGUF export started from the Quantize store shows up in it
// with its origin when its job finishes — through the jobs store's events, nothing asked again by the test. And the
// pure helpers: which job changes mean the folder changed, an adapter's base, the origin line in both languages.
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT, rendererOnServer, until } from "../helpers/renderer-server.js";
import type { Job, LocalModel } from "../../electron/contract.js";
import { translate } from "../../renderer/src/i18n/index.js";
import { useJobs } from "../../renderer/src/stores/jobs.js";
import { adapterBase, finishedWriters, originLine, useLibrary } from "../../renderer/src/stores/library.js";
import { useQuantize } from "../../renderer/src/stores/quantize.js";

let live: Awaited<ReturnType<typeof rendererOnServer>> | null = null;

afterAll(async () => {
  await live?.close();
});

const job = (id: string, kind: Job["kind"], status: Job["status"]): Job => ({
  id, kind, status, title: id, label: null, progress: null, message: null, error: null, canPause: false, canResume: false, startedAt: 1, updatedAt: 1, subject: null, result: null,
});
const entry = (over: Partial<LocalModel>): LocalModel => ({ name: "x", path: "/m/x", kind: "model", sizeBytes: 1, architecture: null, modifiedAt: 1, origin: null, ...over });

describe("the models folder list", () => {
  it("finishedWriters: a writer kind's job that has just become done, not progress or other kinds", () => {
    const run = { a: job("a", "export", "running") };
    expect(finishedWriters(run, { a: { ...run.a, progress: { done: 1, total: 2, unit: "fraction" } } })).toBe(false);
    expect(finishedWriters(run, { a: { ...run.a, status: "done" } })).toBe(true);
    expect(finishedWriters(run, { a: { ...run.a, status: "failed" } })).toBe(false);
    const done = { a: job("a", "export", "done") };
    expect(finishedWriters(done, { ...done, b: job("b", "train", "done") })).toBe(false); // training writes its run folder
    for (const k of ["quantize", "gguf", "download"] as const) expect(finishedWriters({}, { c: job("c", k, "done") }), k).toBe(true);
    expect(finishedWriters(done, done)).toBe(false);
  });

  it("adapterBase: the export's recorded base, else a folder path from adapter_config.json, never a hub id", () => {
    const ft = { origin: "finetune", run: { id: "r", name: "whales" }, checkpoint: 200, base: "/m/base", format: "adapter" } as const;
    expect(adapterBase(entry({ kind: "adapter", architecture: "/elsewhere", origin: ft }))).toBe("/m/base");
    expect(adapterBase(entry({ kind: "adapter", architecture: "/m/qwen" }))).toBe("/m/qwen");
    expect(adapterBase(entry({ kind: "adapter", architecture: "C:\\models\\qwen" }))).toBe("C:\\models\\qwen");
    expect(adapterBase(entry({ kind: "adapter", architecture: "Qwen/Qwen3-30B-A3B" }))).toBeNull();
    expect(adapterBase(entry({ kind: "adapter" }))).toBeNull();
    expect(adapterBase(entry({ kind: "model", architecture: "/m/qwen" }))).toBeNull();
  });

  it("originLine says where it came from, in English and Chinese", () => {
    const en = (k: Parameters<typeof translate>[1], v?: Record<string, string | number>) => translate("en", k, v);
    const zh = (k: Parameters<typeof translate>[1], v?: Record<string, string | number>) => translate("zh", k, v);
    const ft = (checkpoint: number | null) => entry({ origin: { origin: "finetune", run: { id: "r", name: "whales" }, checkpoint, base: "/m/Qwen3-MoE", format: "fp32" } });
    expect(originLine(ft(200), en)).toBe("Finetuned from Qwen3-MoE — run 'whales', step 200");
    expect(originLine(ft(null), en)).toBe("Finetuned from Qwen3-MoE — run 'whales', final");
    expect(originLine(ft(200), zh)).toBe("基于 Qwen3-MoE 微调 — 训练「whales」，第 200 步");
    const q = entry({ origin: { origin: "quantize", source: "/m/Qwen3-MoE/", format: "q4_k" } });
    expect(originLine(q, en)).toBe("Quantized int4 (q4_k) from Qwen3-MoE");
    expect(originLine({ ...q, kind: "gguf" }, en)).toBe("GGUF int4 (q4_k) from Qwen3-MoE");
    expect(originLine(entry({ origin: { origin: "download", repo: "Qwen/Qwen3-0.6B" } }), zh)).toBe("下载自 Qwen/Qwen3-0.6B");
    expect(originLine(entry({}), en)).toBeNull();
  });

  it("loads through library.local; a GGUF export appears with its origin when its job finishes (jobs events, no polling)", async () => {
    live = await rendererOnServer("moe-renderer-local-");
    const { dataDir } = live;
    const models = join(ROOT, "test/fixtures/models");
    await useJobs.getState().load();

    await useLibrary.getState().loadLocal();
    expect(useLibrary.getState()).toMatchObject({ local: [], localError: null });
    const src = join(models, "qwen3_moe");
    await useQuantize.getState().start({ dir: src, target: "gguf", format: "f16", name: "tiny" });
    expect(useQuantize.getState().error).toBeNull();
    const id = useQuantize.getState().jobId!;
    await until(() => useJobs.getState().jobs[id]?.status === "done" || useJobs.getState().jobs[id]?.status === "failed", "the export to end", 120_000);
    expect(useJobs.getState().jobs[id].error).toBeNull();
    await until(() => (useLibrary.getState().local?.length ?? 0) > 0, "the list read again after the job's end");
    expect(useLibrary.getState().local).toMatchObject([
      { name: "tiny.gguf", kind: "gguf", path: join(dataDir, "models", "tiny.gguf"), origin: { origin: "quantize", source: src, format: "f16" } },
    ]);
    expect(useLibrary.getState().local![0].sizeBytes).toBeGreaterThan(0);
  });
});
