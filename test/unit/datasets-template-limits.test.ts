// Dataset token counts with a model folder whose chat template never ends: the count job fails with the template's
// limit error (naming the folder), the services keep answering, samples.get with that tokenizer is refused the same
// way, and a count with a sound template afterwards works (the text worker was replaced).
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CallInput, CallName, CallOutput, EventName, Job, SampleMessage } from "../../electron/contract.js";
import { createDispatcher } from "../../electron/rpc.js";
import { createAppServices, type AppServices } from "../../electron/services/app.js";
import { DatasetRepo } from "../../electron/store/datasets.js";

const QWEN2 = join(import.meta.dirname, "../fixtures/models/qwen2");
let dir: string;
let hostile: string;
let services: AppServices;
const events: Array<{ name: EventName; payload: unknown }> = [];
let call: <N extends CallName>(name: N, input: CallInput<N>) => Promise<CallOutput<N>>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "moe-ds-limits-"));
  hostile = join(dir, "hostile-model");
  cpSync(QWEN2, hostile, { recursive: true });
  writeFileSync(join(hostile, "chat_template.jinja"), "{% for m in messages %}{% for i in range(100000000) %}x{% endfor %}{% endfor %}");
  services = await createAppServices({ dataDir: join(dir, "data"), emit: (name, payload) => events.push({ name, payload }), transport: "ws" });
  const dispatch = createDispatcher(services.handlers, { validateOutput: true });
  call = (name, input) => dispatch(name, input) as Promise<never>;
});
afterAll(async () => {
  await services?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function waitDone(jobId: string) {
  for (;;) {
    const end = events.find((e) => e.name === "jobs.job" && (e.payload as Job).id === jobId && !["queued", "running"].includes((e.payload as Job).status))?.payload as Job | undefined;
    if (end) return { state: end.status, done: end.progress?.done ?? 0, error: end.error };
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("dataset token counts with an endless chat template", () => {
  it("the count fails with the template's limit in well under a second; the services answer meanwhile; a sound template then counts", async () => {
    const repo = new DatasetRepo(services.db);
    const id = repo.createDataset({ name: "three", sourceFile: null });
    const insert = repo.inserter(id);
    const turn = (q: string): SampleMessage[] => [{ role: "user", content: q }, { role: "assistant", content: `answer to ${q}` }];
    services.db.transaction(() => {
      for (const q of ["a", "b", "c"]) insert({ format: "messages", messages: turn(q), sourceLine: null });
    })();

    // Warm: the text process starts once (~0.5 s) and loads the tokenizer; the counts are then cached.
    const warm = await call("datasets.tokens.count", { datasetId: id, tokenizer: { modelDir: QWEN2 } });
    expect(await waitDone(warm.jobId)).toMatchObject({ state: "done", done: 3 });

    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const t0 = performance.now();
    const job = await call("datasets.tokens.count", { datasetId: id, tokenizer: { modelDir: hostile } });
    const l0 = performance.now();
    await call("datasets.list", {});
    const listMs = performance.now() - l0;
    const end = await waitDone(job.jobId);
    const ms = performance.now() - t0;
    clearInterval(timer);
    expect(end.state).toBe("failed");
    expect(end.error).toBe(`chat template of ${hostile} did not finish within 500 ms (item 1 of 3)`);
    expect(ms).toBeLessThan(1000);
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(ms / 40));
    expect(listMs).toBeLessThan(200);

    const sample = (await call("samples.list", { datasetId: id, offset: 0, limit: 1 })).items[0];
    await expect(call("samples.get", { id: sample.id, tokenizer: { modelDir: hostile } })).rejects.toThrow(`chat template of ${hostile} did not finish within 500 ms`);

    // A sound template in another folder counts again (the stuck worker was replaced).
    const other = join(dir, "other-model");
    cpSync(QWEN2, other, { recursive: true });
    writeFileSync(join(other, "chat_template.jinja"), "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}");
    const ok = await call("datasets.tokens.count", { datasetId: id, tokenizer: { modelDir: other } });
    expect(await waitDone(ok.jobId)).toMatchObject({ state: "done", done: 3, error: null });
  });
});
