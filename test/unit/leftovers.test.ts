// The leftovers sweep: temporary outputs of a dead writer go, those of a live one stay, and a resumable download is
// never touched. The names are made by the writers' own helpers; a dead pid is a real child process that has exited.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { quantizeTempName } from "../../electron/engine/quantize.js";
import { ggufTempPath } from "../../electron/gguf/format.js";
import { atomicTempPath } from "../../electron/library/atomic-write.js";
import { sidecarPath, stagingPath } from "../../electron/library/downloader.js";
import { findLeftovers, MIN_AGE_MS, pidAlive, pidGoneSince, processStartMs, sweepLeftovers } from "../../electron/services/leftovers.js";

let root: string;
let models: string;
let data: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "moe-leftovers-"));
  models = join(root, "models");
  data = join(root, "data");
  mkdirSync(models);
  mkdirSync(data);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** The pid of a child that has run and exited (so no process has it, barring reuse within the test). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", ""]);
  expect(r.status).toBe(0);
  expect(pidAlive(r.pid)).toBe(false);
  return r.pid;
}

/** Sets a file's (or a whole tree's) modification time `ms` before now. */
function age(path: string, ms: number): void {
  const t = (Date.now() - ms) / 1000;
  if (statSync(path).isDirectory()) for (const n of readdirSync(path)) age(join(path, n), ms);
  utimesSync(path, t, t);
}

function quantizeLeftover(pid: number, name: string): string {
  const dir = join(models, quantizeTempName(join(models, name), pid));
  mkdirSync(dir);
  writeFileSync(join(dir, "model.safetensors"), "half a model");
  return dir;
}
function file(path: string): string {
  writeFileSync(path, "partial bytes");
  return path;
}

describe("leftovers sweep", () => {
  it("a training run's half-written checkpoint (.checkpoint-N.partial-PID, written by native/train/trainer.cpp) goes once its writer is gone", () => {
    const run = mkdtempSync(join(tmpdir(), "moe-run-"));
    try {
      const dead = deadPid();
      const half = join(run, `.checkpoint-12.partial-${dead}`);
      mkdirSync(half);
      writeFileSync(join(half, "adapter_model.safetensors"), "half");
      const live = join(run, `.checkpoint-13.partial-${process.pid}`);
      mkdirSync(live);
      mkdirSync(join(run, "checkpoint-10"));
      age(half, 10 * 60_000);  // (a live writer's folder newer than its process start is kept whatever its age)
      const r = sweepLeftovers([run], { match: (l) => l.kind === "quantize-temp" });
      expect(r.removed.map((l) => l.path)).toEqual([half]);
      expect(existsSync(half)).toBe(false);
      expect(existsSync(live) && existsSync(join(run, "checkpoint-10"))).toBe(true);
    } finally {
      rmSync(run, { recursive: true, force: true });
    }
  });

  it("removes a dead writer's temporary outputs, keeps a live writer's, never touches a resumable download", () => {
    const dead = deadPid();
    const old = 10 * 60_000;
    // a dead writer's: a quantize folder, a GGUF export, an atomic write in the models folder and in the data folder
    const deadQuant = quantizeLeftover(dead, "qwen-q4");
    const deadGguf = file(ggufTempPath(join(models, "qwen.gguf"), dead, Date.now() - old));
    const deadSidecarTmp = file(atomicTempPath(sidecarPath(models, "o/m"), dead));
    const deadToken = file(atomicTempPath(join(data, "hub-token.bin"), dead));
    // an orphaned staging folder (its sidecar is gone: a cancel cut short)
    const orphan = stagingPath(models, "gone/model");
    mkdirSync(orphan);
    file(join(orphan, "config.json"));
    for (const p of [deadQuant, deadGguf, deadSidecarTmp, deadToken, orphan]) age(p, old);

    // a live writer's (this process, writing now)
    const liveQuant = quantizeLeftover(process.pid, "busy-q8");
    const liveGguf = file(ggufTempPath(join(models, "busy.gguf")));
    // a resumable download: sidecar + staging folder with a .partial, untouched for a long time
    const resumable = stagingPath(models, "o/m");
    mkdirSync(resumable);
    const partial = file(join(resumable, "model-00001-of-00002.safetensors.partial"));
    writeFileSync(sidecarPath(models, "o/m"), "{}");
    age(resumable, old);
    // a dead writer's file modified a moment ago: another pid namespace or machine may be writing it
    const recentDead = file(ggufTempPath(join(models, "nas.gguf"), dead));
    // things that are not leftovers at all: a finished model, a user's folder, another program's temp file
    const foreignTmp = file(join(models, `notes.txt.tmp-${dead}`));
    age(foreignTmp, old);
    mkdirSync(join(models, "qwen-q8"));
    file(join(models, "qwen-q8", "config.json"));
    mkdirSync(join(models, "notes.partial"));
    file(join(models, "done.gguf"));
    age(join(models, "notes.partial"), old);

    const before = findLeftovers(models).map((l) => l.path).sort();
    expect(before).toEqual([deadQuant, deadGguf, deadSidecarTmp, orphan, liveQuant, liveGguf, resumable, recentDead].sort());

    const r = sweepLeftovers([models, data, join(root, "missing")]);
    expect(r.removed.map((l) => l.path).sort()).toEqual([deadQuant, deadGguf, deadSidecarTmp, deadToken, orphan].sort());
    expect(Object.fromEntries(r.kept.map((k) => [k.path, k.why]))).toEqual({
      [liveQuant]: `its writer (pid ${process.pid}) is running`,
      [liveGguf]: `its writer (pid ${process.pid}) is running`,
      [resumable]: "a resumable download (its sidecar is there)",
      [recentDead]: `its writer (pid ${dead}) is gone, but it was modified less than ${MIN_AGE_MS / 1000} s ago`,
    });
    for (const p of [deadQuant, deadGguf, deadSidecarTmp, deadToken, orphan]) expect(existsSync(p), p).toBe(false);
    for (const p of [liveQuant, liveGguf, partial, sidecarPath(models, "o/m"), recentDead, join(models, "qwen-q8", "config.json"), join(models, "notes.partial"), join(models, "done.gguf"), foreignTmp]) {
      expect(existsSync(p), p).toBe(true);
    }
    // the age guard is a parameter: with none, the recent dead one goes too, the live and resumable ones still stay
    expect(sweepLeftovers([models], { minAgeMs: 0 }).removed.map((l) => l.path)).toEqual([recentDead]);
  });

  it.runIf(process.platform === "linux")("a live pid whose file is older than that process is a reused pid: the file goes", () => {
    const started = processStartMs(process.pid)!;
    expect(Math.abs(started - (Date.now() - process.uptime() * 1000))).toBeLessThan(3_000);
    const reused = file(ggufTempPath(join(models, "old.gguf"), process.pid, 1));
    age(reused, Date.now() - started + 60_000); // a minute before this process began
    const fresh = file(ggufTempPath(join(models, "new.gguf")));
    const r = sweepLeftovers([models]);
    expect(r.removed.map((l) => l.path)).toEqual([reused]);
    expect(existsSync(fresh)).toBe(true);
    // the same test for a record: a pid seen (saved) before this process began belongs to a process that is gone
    expect(pidGoneSince(process.pid, Date.now())).toBe(false);
    expect(pidGoneSince(process.pid, started - 60_000)).toBe(true);
    expect(pidGoneSince(deadPid(), Date.now())).toBe(true);
  });

  it.runIf(process.platform === "linux")("a zombie (dead, not yet reaped) counts as gone; its leftovers go", async () => {
    // sh starts `sleep 0` in the background, prints its pid and becomes `sleep 5`, which never reaps it: a zombie
    const parent = spawn("sh", ["-c", "sleep 0 & echo $!; exec sleep 5"], { stdio: ["ignore", "pipe", "ignore"] });
    try {
      const zombie = Number(await new Promise<string>((r) => parent.stdout.once("data", (d: Buffer) => r(d.toString("utf8").trim()))));
      await expect.poll(() => readFileSync(`/proc/${zombie}/stat`, "utf8").split(") ")[1]?.[0], { timeout: 5_000 }).toBe("Z");
      expect(() => process.kill(zombie, 0)).not.toThrow(); // what kill(pid, 0) alone would take for a live writer
      expect(pidAlive(zombie)).toBe(false);
      const left = file(ggufTempPath(join(models, "z.gguf"), zombie));
      expect(sweepLeftovers([models], { minAgeMs: 0 }).removed.map((l) => l.path)).toEqual([left]);
    } finally {
      parent.kill("SIGKILL");
    }
  });
});

