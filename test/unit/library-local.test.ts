// library.local's listing of the models folder (electron/library/local.ts) on real temporary folders: each kind with
// its size, architecture and origin; every writer's temporary and bookkeeping names left out; a bad sidecar is an
// origin of null, never an error; the origin is written whole (temp + rename) and refused when it breaks the schema.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { quantizeTempName } from "../../electron/engine/quantize.js";
import { ggufTempPath } from "../../electron/gguf/format.js";
import { atomicTempPath } from "../../electron/library/atomic-write.js";
import { sidecarPath, stagingPath } from "../../electron/library/downloader.js";
import { listLocal, ORIGIN_FILE, ORIGIN_SUFFIX, readOrigin, recordOrigin, writeOrigin } from "../../electron/library/local.js";
import { findLeftovers } from "../../electron/services/leftovers.js";
import type { LocalOrigin } from "../../electron/contract.js";

let root: string;
let models: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "moe-local-"));
  models = join(root, "models");
  mkdirSync(models);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function folder(name: string, files: Record<string, string | number>): string {
  const dir = join(models, name);
  for (const [f, content] of Object.entries(files)) {
    mkdirSync(join(dir, f, ".."), { recursive: true });
    writeFileSync(join(dir, f), typeof content === "number" ? Buffer.alloc(content) : content);
  }
  return dir;
}

/** Sets the mtime of a path (and everything under a folder) to `sec` seconds after the epoch: a known order. */
function at(path: string, sec: number): void {
  if (statSync(path).isDirectory()) for (const n of readdirSync(path)) at(join(path, n), sec);
  utimesSync(path, sec, sec);
}

const FT: LocalOrigin = { origin: "finetune", run: { id: "r1", name: "whales" }, checkpoint: 200, base: "/m/base", format: "adapter" };

describe("listLocal", () => {
  it("lists model folders, adapter folders and .gguf files with size, architecture and origin, newest first", () => {
    const model = folder("qwen-merged", { "config.json": JSON.stringify({ model_type: "qwen3_moe" }), "model.safetensors": 1000, "tokenizer.json": "{}" });
    writeOrigin(model, { origin: "finetune", run: { id: "r1", name: "whales" }, checkpoint: null, base: "/m/base", format: "fp32" });
    const adapter = folder("whales-adapter", { "adapter_config.json": JSON.stringify({ base_model_name_or_path: "/m/base" }), "adapter_model.safetensors": 300, "sub/extra.bin": 50 });
    writeOrigin(adapter, FT);
    const gguf = join(models, "whales.gguf");
    writeFileSync(gguf, Buffer.alloc(777));
    writeOrigin(gguf, { origin: "quantize", source: "/m/base", format: "q4_k" });
    expect(readdirSync(models)).toContain(`whales.gguf${ORIGIN_SUFFIX}`);
    const plain = folder("hand-copied", { "config.json": JSON.stringify({ model_type: "mixtral" }), "a.safetensors": 10 });
    for (const [i, p] of [plain, gguf, adapter, model].entries()) at(p, 1000 + i);

    const list = listLocal(models);
    expect(list.map((e) => [e.name, e.kind])).toEqual([
      ["qwen-merged", "model"],
      ["whales-adapter", "adapter"],
      ["whales.gguf", "gguf"],
      ["hand-copied", "model"],
    ]);
    const [m, a, g, h] = list;
    expect(m).toMatchObject({ path: model, architecture: "qwen3_moe", modifiedAt: 1003_000 });
    expect(m.origin).toEqual({ origin: "finetune", run: { id: "r1", name: "whales" }, checkpoint: null, base: "/m/base", format: "fp32" });
    // every file counts (the sidecar too: it is on the disk); the adapter's nested folder is summed
    const sidecar = (p: string) => Buffer.byteLength(JSON.stringify(readOrigin(p, true), null, 2) + "\n");
    expect(m.sizeBytes).toBe(1000 + 2 + JSON.stringify({ model_type: "qwen3_moe" }).length + sidecar(model));
    expect(a).toMatchObject({ architecture: "/m/base", origin: FT });
    expect(a.sizeBytes).toBe(300 + 50 + JSON.stringify({ base_model_name_or_path: "/m/base" }).length + sidecar(adapter));
    expect(g).toMatchObject({ sizeBytes: 777, architecture: null, origin: { origin: "quantize", source: "/m/base", format: "q4_k" }, modifiedAt: 1001_000 });
    expect(h).toMatchObject({ architecture: "mixtral", origin: null });
  });

  it("leaves out hidden entries, downloads in progress, temporary files and folders that are not models", () => {
    folder("real", { "config.json": "{}" });
    // what the writers leave while they work, named by their own helpers
    mkdirSync(join(models, quantizeTempName("q4"))); // a name, not a path
    writeFileSync(join(models, quantizeTempName("q4"), "config.json"), "{}");
    writeFileSync(ggufTempPath(join(models, "x.gguf")), "GGUF");
    mkdirSync(stagingPath(models, "owner/repo"));
    writeFileSync(join(stagingPath(models, "owner/repo"), "config.json"), "{}");
    writeFileSync(sidecarPath(models, "owner/repo"), "{}");
    writeFileSync(atomicTempPath(join(models, `y.gguf${ORIGIN_SUFFIX}`)), "{}");
    folder(".hidden", { "config.json": "{}" });
    folder("plain.partial", { "config.json": "{}" });
    writeFileSync(join(models, "z.gguf.tmp"), "GGUF");
    writeFileSync(join(models, ".secret.gguf"), "GGUF");
    folder("notes", { "readme.txt": "mine" });
    writeFileSync(join(models, "notes.txt"), "not a model");
    writeFileSync(join(models, `orphan.gguf${ORIGIN_SUFFIX}`), JSON.stringify(FT)); // its .gguf was deleted
    symlinkSync(join(root, "nowhere"), join(models, "dangling.gguf"));
    expect(listLocal(models).map((e) => e.name)).toEqual(["real"]);
    // the GGUF origin's temporary file is one the start-up sweep knows (its writer's pid in the name)
    expect(findLeftovers(models).filter((l) => l.kind === "atomic-temp").map((l) => l.target)).toEqual([join(models, `y.gguf${ORIGIN_SUFFIX}`)]);
  });

  it("a linked-in model folder is listed; a models folder that does not exist yet is empty", () => {
    const elsewhere = join(root, "elsewhere");
    mkdirSync(elsewhere);
    writeFileSync(join(elsewhere, "config.json"), JSON.stringify({ model_type: "olmoe" }));
    symlinkSync(elsewhere, join(models, "linked"));
    expect(listLocal(models)).toMatchObject([{ name: "linked", kind: "model", architecture: "olmoe" }]);
    expect(listLocal(join(root, "no-such-folder"))).toEqual([]);
  });

  it("a bad sidecar or config is origin / architecture null, never an error", () => {
    const bad: [string, string][] = [
      ["not-json", "{ nope"],
      ["wrong-origin", JSON.stringify({ origin: "magic", repo: "a/b" })],
      ["missing-field", JSON.stringify({ origin: "finetune", run: { id: "r" }, checkpoint: 1, base: "/b", format: "bf16" })],
      ["bad-format", JSON.stringify({ origin: "quantize", source: "/b", format: "q2_x" })],
      ["array", "[]"],
      ["huge", JSON.stringify({ origin: "download", repo: "a/b", pad: "x".repeat(100_000) })],
    ];
    for (const [name, text] of bad) folder(name, { "config.json": JSON.stringify({ model_type: "m" }), [ORIGIN_FILE]: text });
    folder("sidecar-is-a-folder", { "config.json": "{}", [`${ORIGIN_FILE}/x`]: "{}" });
    folder("bad-config", { "config.json": "{ not json", [ORIGIN_FILE]: JSON.stringify({ origin: "download", repo: "Qwen/Qwen3-0.6B" }) });
    folder("config-not-string", { "config.json": JSON.stringify({ model_type: 42 }) });
    const list = listLocal(models);
    expect(list).toHaveLength(bad.length + 3);
    for (const e of list.filter((e) => e.name !== "bad-config")) expect(e.origin, e.name).toBeNull();
    const bc = list.find((e) => e.name === "bad-config")!;
    // a config.json that does not parse is still a model folder (opening it says what is wrong); its origin reads
    expect(bc).toMatchObject({ kind: "model", architecture: null, origin: { origin: "download", repo: "Qwen/Qwen3-0.6B" } });
    expect(list.find((e) => e.name === "config-not-string")!.architecture).toBeNull();
  });

  it("writeOrigin refuses an origin that breaks the schema and leaves no file; recordOrigin reports instead of throwing", () => {
    const dir = folder("m", { "config.json": "{}" });
    expect(() => writeOrigin(dir, { origin: "quantize", source: "/b", format: "q2_x" } as unknown as LocalOrigin)).toThrow(/format/);
    expect(readdirSync(dir)).toEqual(["config.json"]);
    // a target that is not there: nothing to describe
    expect(recordOrigin(join(models, "gone"), FT)).toMatch(/origin was not recorded .*ENOENT/);
    expect(readdirSync(models)).toEqual(["m"]);
    writeOrigin(dir, FT);
    writeOrigin(dir, { origin: "download", repo: "a/b" }); // replaced whole
    expect(readOrigin(dir, true)).toEqual({ origin: "download", repo: "a/b" });
    expect(readdirSync(dir).sort()).toEqual(["config.json", ORIGIN_FILE]);
  });
});
