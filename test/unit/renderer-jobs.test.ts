// The renderer's one jobs store (renderer/src/stores/jobs.ts) over its real WebSocket transport against `serve`'s
// server (real services, a real database file): a quantize job started from the Quantize store arrives in the jobs
// store through jobs.job events, the selectors find it by kind and subject, Cancel and Remove act on it, and a
// reconnect's load() agrees with what the events said.
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { rendererOnServer, until } from "../helpers/renderer-server.js";
import type { Job } from "../../electron/contract.js";
import { isActive, jobsOf, percent, runningCount, useJobs } from "../../renderer/src/stores/jobs.js";
import { QUANTIZE_KINDS, useQuantize } from "../../renderer/src/stores/quantize.js";

let live: Awaited<ReturnType<typeof rendererOnServer>> | null = null;

afterAll(async () => {
  await live?.close();
});

describe("the jobs store", () => {
  it("follows a quantize job from start to cancel through jobs.job events; selectors by kind and subject; remove", async () => {
    live = await rendererOnServer("moe-renderer-jobs-");
    const { dataDir } = live;

    await useJobs.getState().load();
    expect(useJobs.getState()).toMatchObject({ loaded: true, jobs: {} });
    // a 40M-parameter model's export runs long enough to cancel midway
    // @ts-expect-error plain ESM helper shared with check_gguf.py
    const { makeLargeLlama } = await import("../fixtures/gguf/make_models.mjs");
    const big = makeLargeLlama(join(dataDir, "models-src", "large_llama")) as string;
    await useQuantize.getState().start({ dir: big, target: "gguf", format: "q8_0", name: "big" });
    expect(useQuantize.getState().error).toBeNull();
    const id = useQuantize.getState().jobId!;
    const job = () => useJobs.getState().jobs[id] as Job | undefined;
    expect(job()).toMatchObject({ kind: "gguf", subject: big });
    expect(runningCount(useJobs.getState().jobs)).toBe(1);
    expect(jobsOf(useJobs.getState().jobs, QUANTIZE_KINDS, big).map((j) => j.id)).toEqual([id]);
    expect(jobsOf(useJobs.getState().jobs, "train")).toEqual([]);
    expect(jobsOf(useJobs.getState().jobs, QUANTIZE_KINDS, "/elsewhere")).toEqual([]);
    await until(() => (percent(job()!) ?? 0) > 0, "progress from jobs.job events");

    await useJobs.getState().cancel(id);
    await until(() => job()?.status === "cancelled", "the cancelled event");
    expect(isActive(job()!)).toBe(false);
    expect(runningCount(useJobs.getState().jobs)).toBe(0);
    // a fresh load (what a reconnect does) agrees with the events
    const seen = job();
    useJobs.setState({ jobs: {}, loaded: false });
    await useJobs.getState().load();
    expect(job()).toEqual(seen);
    // an action the service refuses shows its message, and changes nothing
    await useJobs.getState().pause(id);
    expect(useJobs.getState().error).toMatch(/only a running job can be paused/);
    await useJobs.getState().remove(id);
    await until(() => job() === undefined, "removed");
    await useJobs.getState().load();
    expect(useJobs.getState().jobs).toEqual({});
  });
});
