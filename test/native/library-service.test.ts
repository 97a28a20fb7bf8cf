// The library's calls through the app's services and dispatcher (as the renderer reaches them), against the local
// hub: status and settings (endpoint, token that never comes back), the catalogue with fit estimates, search
// filtered to the engine's architectures, inspect with live sizes, and a download (a job of kind "download") paused,
// the app "restarted" (services disposed and created again on the same data folder), listed as paused, resumed, and
// then in the recent models; a paused download cancelled from the activity panel (jobs.cancel) leaves no file.
// In test/native because the catalogue asks the engine worker for the GPU's memory.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DownloadProgress, EventName, Job } from "../../electron/contract.js";
import { configShape } from "../../electron/library/params.js";
import { createDispatcher } from "../../electron/rpc.js";
import { createAppServices, type AppServices } from "../../electron/services/app.js";
import { startHubServer, type HubServer } from "../helpers/hub-server.js";
import { MODELS } from "./fixtures.js";

let hub: HubServer;
let dataDir: string;
let bertDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "moe-libsvc-"));
  bertDir = mkdtempSync(join(tmpdir(), "moe-bert-"));
  writeFileSync(join(bertDir, "config.json"), JSON.stringify({ model_type: "bert" }));
  writeFileSync(join(bertDir, "model.safetensors"), "x");
  hub = await startHubServer({
    repos: { "test/qwen2-moe": { dir: join(MODELS, "qwen2_moe") }, "test/qwen-bert": { dir: bertDir }, "test/unchecked": { dir: join(MODELS, "qwen2_moe"), noChecksum: ["config.json"] }, "test/cancel-me": { dir: join(MODELS, "qwen2_moe") } },
  });
});
afterAll(async () => {
  await hub?.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(bertDir, { recursive: true, force: true });
});

async function open() {
  const events: { name: EventName; payload: unknown }[] = [];
  const s: AppServices = await createAppServices({ dataDir, emit: (name, payload) => events.push({ name, payload }), transport: "ws" });
  return { s, h: s.handlers, dispatch: createDispatcher(s.handlers, { validateOutput: true }), events };
}

/** The jobs.job events of the downloads (subject: the download id). */
const jobsOf = (events: { name: EventName; payload: unknown }[], id: string) =>
  events.filter((e) => e.name === "jobs.job" && (e.payload as Job).kind === "download" && (e.payload as Job).subject === id).map((e) => e.payload as Job);

describe("library service", () => {
  it("status, catalogue, search, inspect, token; a download survives a restart paused and resumes", async () => {
    let app = await open();
    try {
      await app.dispatch("settings.set", { hubEndpoint: hub.url });
      await expect(app.dispatch("settings.set", { hubEndpoint: "ftp://x" })).rejects.toThrow(/hubEndpoint: must be an http\(s\) URL/);
      expect(await app.dispatch("library.status", {})).toEqual({ source: "hf", endpoint: hub.url, modelsDir: join(dataDir, "models"), hasToken: false, tokenStorage: "memory" });

      const cat = (await app.dispatch("library.catalog", { contextLength: 8192 })) as { machine: { totalRamBytes: number }; models: { hf: string; fit: { contextLength: number; fits: unknown[] } }[] };
      expect(cat.models.map((m) => m.hf)).toEqual(expect.arrayContaining(["allenai/OLMoE-1B-7B-0924-Instruct", "Qwen/Qwen1.5-MoE-A2.7B-Chat", "Qwen/Qwen3-30B-A3B-Instruct-2507", "tencent/Hunyuan-A13B-Instruct", "mistralai/Mixtral-8x7B-Instruct-v0.1", "Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen3-0.6B"]));
      expect(cat.models.every((m) => m.fit.fits.length === 3 && m.fit.contextLength <= 8192)).toBe(true);
      expect(cat.machine.totalRamBytes).toBeGreaterThan(0);

      // search keeps what the engine runs: the bert repo matches "qwen" but is filtered out
      const hits = (await app.dispatch("library.search", { query: "qwen" })) as { repo: string; modelType: string }[];
      expect(hits.map((r) => [r.repo, r.modelType])).toEqual([["test/qwen2-moe", "qwen2_moe"]]);

      const details = (await app.dispatch("library.inspect", { repo: "test/qwen2-moe" })) as { files: { path: string }[]; downloadBytes: number; fit: { paramsTotal: number } };
      expect(details.files.map((f) => f.path)).toContain("model.safetensors.index.json");
      const cfg = (await import("node:fs")).readFileSync(join(MODELS, "qwen2_moe", "config.json"), "utf8");
      expect(details.fit.paramsTotal).toBe(configShape(JSON.parse(cfg)).paramsTotal);
      await expect(app.dispatch("library.download", { repo: "not a repo" })).rejects.toThrow(/repo: expected a model id owner\/name/);

      const st = await app.dispatch("library.setToken", { token: "hf_secret_value" });
      expect(st).toMatchObject({ hasToken: true });
      expect(JSON.stringify(st)).not.toContain("hf_secret_value");
      await app.dispatch("library.setToken", { token: null });

      // start, pause half-way, "restart"
      hub.faults.bytesPerSecond = 300_000;
      await app.dispatch("library.download", { repo: "test/qwen2-moe" });
      await expect.poll(() => jobsOf(app.events, "test--qwen2-moe").at(-1)?.progress?.done ?? 0, { timeout: 20_000 }).toBeGreaterThan(200_000);
      const running = jobsOf(app.events, "test--qwen2-moe").at(-1)!;
      expect(running).toMatchObject({ status: "running", title: "Download test/qwen2-moe", label: { key: "download", args: { name: "test/qwen2-moe" } }, canPause: true, progress: { unit: "bytes" } });
      expect(running.figures).toMatchObject({ bytesPerSecond: expect.any(Number), files: expect.any(Number), file: expect.any(Number) });
      expect(running.progress!.total).toBeGreaterThan(running.progress!.done);
      const paused = (await app.dispatch("library.pause", { id: "test--qwen2-moe" })) as DownloadProgress;
      expect(paused.state).toBe("paused");
      expect(jobsOf(app.events, "test--qwen2-moe").at(-1)).toMatchObject({ id: running.id, status: "paused", canResume: true });
      await app.s.dispose();
      hub.faults.bytesPerSecond = 0;

      app = await open();
      const listed = (await app.dispatch("library.downloads", {})) as DownloadProgress[];
      expect(listed.map((d) => [d.id, d.state])).toEqual([["test--qwen2-moe", "paused"]]);
      expect(listed[0].doneBytes).toBeGreaterThanOrEqual(paused.doneBytes - 1); // what is on disk (the last chunk may still have landed)
      // the job too: still paused after the restart, the same one
      expect((await app.dispatch("jobs.list", { kind: "download" })) as Job[]).toMatchObject([{ id: running.id, status: "paused", subject: "test--qwen2-moe" }]);
      hub.log.length = 0;
      await app.dispatch("library.resume", { id: "test--qwen2-moe" });
      await expect.poll(() => jobsOf(app.events, "test--qwen2-moe").at(-1)?.status, { timeout: 20_000 }).toBe("done");
      expect(jobsOf(app.events, "test--qwen2-moe").at(-1)).toMatchObject({ id: running.id, result: { dir: join(dataDir, "models", "test--qwen2-moe"), repo: "test/qwen2-moe" } });
      // nothing verified before the restart was fetched again; the file in progress was resumed with Range
      expect(hub.log.filter((e) => e.sent > 0 && e.range === null).map((e) => e.file)).not.toContain("model-00001-of-00003.safetensors");
      expect(hub.log.some((e) => e.range !== null && e.sent > 0)).toBe(true);
      const recent = (await app.dispatch("models.recent", {})) as { dir: string; architecture: string }[];
      expect(recent[0]).toMatchObject({ dir: join(dataDir, "models", "test--qwen2-moe"), architecture: "Qwen2MoeForCausalLM" });
      expect(await app.dispatch("library.downloads", {})).toEqual([expect.objectContaining({ state: "done" })]);
    } finally {
      await app.s.dispose();
    }
  });

  it("a file listed without a checksum: requireChecksums refuses before any byte; without it the download says 'none' for that file", async () => {
    const app = await open();
    try {
      await app.dispatch("settings.set", { hubEndpoint: hub.url });
      hub.log.length = 0;
      const refused = (await app.dispatch("library.download", { repo: "test/unchecked", requireChecksums: true })) as DownloadProgress;
      expect(refused.id).toBe("test--unchecked");
      await expect.poll(() => jobsOf(app.events, "test--unchecked").at(-1)?.status, { timeout: 10_000 }).toBe("failed");
      expect(jobsOf(app.events, "test--unchecked").at(-1)!.error).toMatch(/lists no checksum for config\.json/);
      const [listed] = ((await app.dispatch("library.downloads", {})) as DownloadProgress[]).filter((d) => d.id === "test--unchecked");
      expect(listed.errorKind).toBe("no_checksum");
      expect(listed.error).toMatch(/^test\/unchecked: 127\.0\.0\.1:\d+ lists no checksum for config\.json; checksums are required, so nothing was downloaded$/);
      expect(hub.log.filter((e) => e.file !== null)).toEqual([]);

      await app.dispatch("library.resume", { id: "test--unchecked" }); // without the requirement this time
      await expect.poll(() => jobsOf(app.events, "test--unchecked").at(-1)?.status, { timeout: 20_000 }).toBe("done");
      // a new job in place of the failed one
      expect(((await app.dispatch("jobs.list", { kind: "download" })) as Job[]).filter((j) => j.subject === "test--unchecked").map((j) => j.status)).toEqual(["done"]);
      // validated against the contract on the way out (validateOutput), with each file's checksum kind
      const [done] = ((await app.dispatch("library.downloads", {})) as DownloadProgress[]).filter((d) => d.id === "test--unchecked");
      expect(done.files.filter((f) => f.checksum === "none").map((f) => f.path)).toEqual(["config.json"]);
      expect(done.files.filter((f) => f.checksum !== "none").length).toBe(done.files.length - 1);
    } finally {
      await app.s.dispose();
    }
  });

  it("a download cancelled from the activity panel (jobs.cancel), running or paused, leaves no partial file and no listing", async () => {
    const app = await open();
    const models = join(dataDir, "models");
    try {
      await app.dispatch("settings.set", { hubEndpoint: hub.url });
      hub.faults.bytesPerSecond = 300_000;
      for (const how of ["running", "paused"] as const) {
        const repo = "test/cancel-me";
        await app.dispatch("library.download", { repo });
        await expect.poll(() => jobsOf(app.events, "test--cancel-me").at(-1)?.progress?.done ?? 0, { timeout: 20_000 }).toBeGreaterThan(0);
        const job = jobsOf(app.events, "test--cancel-me").at(-1)!;
        expect(existsSync(join(models, "test--cancel-me.download.json"))).toBe(true);
        if (how === "paused") {
          await app.dispatch("jobs.pause", { id: job.id });
          await expect.poll(() => jobsOf(app.events, "test--cancel-me").at(-1)?.status, { timeout: 10_000 }).toBe("paused");
          expect(existsSync(join(models, "test--cancel-me.partial"))).toBe(true); // kept for the resume
        }
        await app.dispatch("jobs.cancel", { id: job.id });
        await expect.poll(() => jobsOf(app.events, "test--cancel-me").at(-1)?.status, { timeout: 10_000 }).toBe("cancelled");
        await expect.poll(() => existsSync(join(models, "test--cancel-me.partial")) || existsSync(join(models, "test--cancel-me.download.json")), { timeout: 10_000 }).toBe(false);
        expect(existsSync(join(models, "test--cancel-me"))).toBe(false);
        expect(((await app.dispatch("library.downloads", {})) as DownloadProgress[]).map((d) => d.id)).not.toContain("test--cancel-me");
      }
    } finally {
      hub.faults.bytesPerSecond = 0;
      await app.s.dispose();
    }
    // after a restart: the job is still cancelled (the second replaced the first in the list), nothing to resume
    const again = await open();
    try {
      expect(((await again.dispatch("jobs.list", { kind: "download" })) as Job[]).filter((j) => j.subject === "test--cancel-me").map((j) => j.status)).toEqual(["cancelled"]);
      expect(((await again.dispatch("library.downloads", {})) as DownloadProgress[]).map((d) => d.id)).not.toContain("test--cancel-me");
    } finally {
      await again.s.dispose();
    }
  });
});
