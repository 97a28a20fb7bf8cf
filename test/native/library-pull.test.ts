// `moe-studio pull` as a user runs it, against the local hub (test/helpers/hub-server.ts): the process is killed
// (SIGKILL, no chance to clean up) half-way through a shard and the same command run again resumes from the bytes on
// disk — the server's log shows the Range it asked for and that nothing already on disk was sent twice. Then the
// pulled folder loads in the engine. Also: HF_ENDPOINT/HF_TOKEN, a gated repo, a 404, and plain-line progress.
import { spawn } from "node:child_process";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../electron/engine/engine.js";
import { quantizeTempName } from "../../electron/engine/quantize.js";
import { atomicTempPath } from "../../electron/library/atomic-write.js";
import { ModelDownload, sidecarPath } from "../../electron/library/downloader.js";
import { startHubServer, type HubServer } from "../helpers/hub-server.js";
import { MODELS, ROOT } from "./fixtures.js";

const BIN = join(ROOT, "electron/bin/moe-studio.mjs");
const FIXTURE = join(MODELS, "qwen2_moe");
const SHARD1 = "model-00001-of-00003.safetensors";
let hub: HubServer;
let dir: string;

beforeAll(async () => {
  hub = await startHubServer({
    repos: { "test/qwen2-moe": { dir: FIXTURE }, "test/gated": { dir: FIXTURE, gatedToken: "secret-token" }, "test/no-checksum": { dir: FIXTURE, noChecksum: ["config.json", SHARD1] } },
  });
  dir = mkdtempSync(join(tmpdir(), "moe-pull-"));
});
afterAll(async () => {
  await hub?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the CLI without blocking this process's event loop (the hub server answers from it). */
function pull(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [BIN, "pull", ...args], { env: { ...process.env, HF_ENDPOINT: "", HF_TOKEN: "", ...env } });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
  return new Promise((resolve) => child.once("close", (code) => resolve({ code, out, err })));
}

describe("moe-studio pull", () => {
  it("killed mid-file (SIGKILL) and run again: resumes with Range from the partial file, then the model loads", async () => {
    const models = join(dir, "kill");
    hub.faults.bytesPerSecond = 150_000; // ~3 s for the first shard: time to kill it half-way
    const child = spawn(process.execPath, [BIN, "pull", "test/qwen2-moe", "--dir", models], { env: { ...process.env, HF_ENDPOINT: hub.url }, stdio: "ignore" });
    await expect.poll(() => hub.log.filter((e) => e.file === SHARD1).reduce((s, e) => s + e.sent, 0), { timeout: 30_000, interval: 50 }).toBeGreaterThan(320_000); // > one 256 KiB write batch on disk
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    hub.faults.bytesPerSecond = 0;
    const partial = join(models, "test--qwen2-moe.partial", `${SHARD1}.partial`);
    const onDisk = statSync(partial).size;
    expect(onDisk).toBeGreaterThan(0);
    expect(onDisk).toBeLessThan(statSync(join(FIXTURE, SHARD1)).size);
    // what the app lists at its next start: interrupted (it was killed, not paused), resumable
    expect(new ModelDownload({ modelsDir: models, repo: "test/qwen2-moe", source: "hf", endpoint: hub.url }).progress().state).toBe("interrupted");
    hub.log.length = 0;

    const r = await pull(["test/qwen2-moe", "--dir", models], { HF_ENDPOINT: hub.url });
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^resuming test\/qwen2-moe: /);
    expect(r.out).toContain(`done: ${join(models, "test--qwen2-moe")}`);
    // not a TTY: plain lines, one per verified file, no carriage returns
    expect(r.out).not.toContain("\r");
    expect(r.out).toContain(`verified ${SHARD1}`);
    const t = hub.log.filter((e) => e.file === SHARD1 && e.sent > 0);
    expect(t.map((e) => e.range)).toEqual([`bytes=${onDisk}-`]);
    expect(t[0].sent).toBe(statSync(join(FIXTURE, SHARD1)).size - onDisk);

    const out = join(models, "test--qwen2-moe");
    // the repo's files and the origin sidecar (library/local.ts), which loading ignores
    expect(readdirSync(out).sort()).toEqual([...readdirSync(FIXTURE), "moe-studio.json"].sort());
    const m = await loadModel(out, { threads: 1 });
    try {
      const ref = JSON.parse(readFileSync(join(FIXTURE, "config.json"), "utf8")) as { model_type: string };
      expect(m.info.modelType).toBe(ref.model_type);
    } finally {
      m.close();
    }
  });

  it("a gated repo needs HF_TOKEN (or --token); an unknown repo is named; --source modelscope", async () => {
    const models = join(dir, "gated");
    const no = await pull(["test/gated", "--dir", models, "--endpoint", hub.url]);
    expect(no.code).toBe(1);
    expect(no.err.trim()).toBe(`moe-studio: test/gated is gated: it needs an access token. Accept the model's terms on its page on ${new URL(hub.url).host}, then add your token.`);
    const yes = await pull(["test/gated", "--dir", models], { HF_ENDPOINT: hub.url, HF_TOKEN: "secret-token" });
    expect(yes.code).toBe(0);
    const missing = await pull(["nobody/nothing", "--dir", models, "--endpoint", hub.url]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^moe-studio: nobody\/nothing was not found on 127\.0\.0\.1:\d+/);
    const ms = await pull(["test/qwen2-moe", "--dir", join(dir, "ms"), "--source", "modelscope", "--endpoint", hub.url]);
    expect(ms.code).toBe(0);
    expect(readdirSync(join(dir, "ms", "test--qwen2-moe")).sort()).toEqual([...readdirSync(FIXTURE), "moe-studio.json"].sort());
    const bad = await pull(["not-a-repo"]);
    expect(bad.err.trim()).toBe(`moe-studio: "not-a-repo" is not a model id: expected owner/name, e.g. Qwen/Qwen3-0.6B`);
  });

  it("a file the hub lists without a checksum is 'size-checked', named at the end; --require-checksums refuses before any byte", async () => {
    const models = join(dir, "unchecked");
    hub.log.length = 0;
    const strict = await pull(["test/no-checksum", "--dir", models, "--endpoint", hub.url, "--require-checksums"]);
    expect(strict.code).toBe(1);
    expect(strict.err.trim()).toBe(`moe-studio: test/no-checksum: ${new URL(hub.url).host} lists no checksum for 2 files: config.json, ${SHARD1}; checksums are required, so nothing was downloaded`);
    expect(hub.log.filter((e) => e.file !== null)).toEqual([]);
    expect(readdirSync(dir)).not.toContain("unchecked"); // not even the models folder was made

    const r = await pull(["test/no-checksum", "--dir", models, "--endpoint", hub.url]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("size-checked config.json (");
    expect(r.out).toContain(`size-checked ${SHARD1} (`);
    expect(r.out).not.toContain("verified config.json");
    expect(r.out).toContain("verified model-00002-of-00003.safetensors (");
    expect(r.out).toContain(`no checksum from the hub (size-checked only): config.json, ${SHARD1}\n`);
  });

  it("pull first sweeps what killed writers left in its folder (dead pid, untouched for minutes), nothing else", async () => {
    const models = join(dir, "sweep");
    mkdirSync(models);
    const dead = spawnSync(process.execPath, ["-e", ""]).pid;
    const deadQuant = join(models, quantizeTempName(join(models, "m-q8"), dead));
    mkdirSync(deadQuant);
    writeFileSync(join(deadQuant, "model.safetensors"), "half");
    const deadSidecarTmp = atomicTempPath(sidecarPath(models, "o/m"), dead);
    writeFileSync(deadSidecarTmp, "{");
    const foreign = join(models, `notes.txt.tmp-${dead}`);
    writeFileSync(foreign, "not ours");
    const old = (Date.now() - 10 * 60_000) / 1000;
    for (const p of [join(deadQuant, "model.safetensors"), deadQuant, deadSidecarTmp, foreign]) utimesSync(p, old, old);
    const r = await pull(["test/qwen2-moe", "--dir", models, "--endpoint", hub.url]);
    expect(r.code).toBe(0);
    expect(readdirSync(models).sort()).toEqual(["notes.txt.tmp-" + dead, "test--qwen2-moe"]);
  });
});
