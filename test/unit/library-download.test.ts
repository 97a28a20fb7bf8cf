// The downloader against a local hub (test/helpers/hub-server.ts) serving a fixture model the way huggingface.co
// does: a full download, a transfer cut mid-file and resumed by a new downloader (as after a restart) without
// fetching the bytes on disk again, a corrupted byte caught by the checksum and fetched again, a gated repo (401
// without a token, success with it), 404s, and a stalled server.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DownloadStopped, ModelDownload, sidecarPath, type DownloadProgress } from "../../electron/library/downloader.js";
import { HubClient, HubError, type RemoteFile } from "../../electron/library/hub.js";
import { selectFiles } from "../../electron/library/files.js";
import { startHubServer, type HubServer } from "../helpers/hub-server.js";

const FIXTURE = join(import.meta.dirname, "../fixtures/models/qwen2_moe");
const SHARD2 = "model-00002-of-00003.safetensors";
const TOKEN = "hf_test_token_123";

let hub: HubServer;
let modelsDir: string;

beforeAll(async () => {
  hub = await startHubServer({
    repos: {
      "test/qwen2-moe": { dir: FIXTURE, extra: { "README.md": "# a model card\n", "pytorch_model.bin": "not wanted", "onnx/model.onnx": "nor this" } },
      "test/gated-moe": { dir: FIXTURE, gatedToken: TOKEN },
      "test/no-sizes": { dir: FIXTURE, noSizes: true },
    },
  });
});
afterAll(async () => {
  await hub?.close();
});
afterEach(() => {
  hub.faults.corrupt.clear();
  hub.faults.dropAfter.clear();
  hub.faults.stallAfter.clear();
  hub.faults.bytesPerSecond = 0;
  hub.log.length = 0;
  if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
});

function fresh(): string {
  modelsDir = mkdtempSync(join(tmpdir(), "moe-lib-"));
  return modelsDir;
}

const fixtureFiles = () => readdirSync(FIXTURE).sort();

function expectSameAsFixture(dir: string) {
  // the repo's files, and the origin the Models view reads (library/local.ts)
  expect(readdirSync(dir).sort()).toEqual([...fixtureFiles(), "moe-studio.json"].sort());
  expect(JSON.parse(readFileSync(join(dir, "moe-studio.json"), "utf8"))).toMatchObject({ origin: "download", repo: expect.stringMatching(/\//) });
  for (const f of fixtureFiles()) expect(readFileSync(join(dir, f)).equals(readFileSync(join(FIXTURE, f))), f).toBe(true);
}

describe("which files a model needs", () => {
  const f = (path: string): RemoteFile => ({ path, size: 1, sha256: null, gitSha1: null });
  const pick = (paths: string[]) => selectFiles(paths.map(f), "o/m").map((x) => x.path);
  it("config, tokenizer, template, generation config and the checkpoint's shards; nothing else", () => {
    // a Mistral-style repo: transformers shards + the index, and the same weights again for mistral-inference
    expect(
      pick(["README.md", "config.json", "consolidated.safetensors", "generation_config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json", "params.json", "special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "original/model.safetensors", "pytorch_model.bin"]),
    ).toEqual(["config.json", "generation_config.json", "model.safetensors.index.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
    // no tokenizer.json: the pieces come instead
    expect(pick(["config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json", "chat_template.jinja"])).toEqual(["chat_template.jinja", "config.json", "merges.txt", "tokenizer_config.json", "vocab.json", "model.safetensors"]);
    expect(() => pick(["config.json", "pytorch_model.bin"])).toThrow("o/m has no *.safetensors weights (only pytorch_model.bin): MoE Studio loads safetensors");
    expect(() => pick(["model.safetensors"])).toThrow("o/m has no config.json");
  });
});

describe("model download from a local hub", () => {
  it("downloads only the files a model needs, verified, into <models>/<owner>--<name>, with progress", async () => {
    const models = fresh();
    const events: DownloadProgress[] = [];
    const d = new ModelDownload({ modelsDir: models, repo: "test/qwen2-moe", source: "hf", endpoint: hub.url, onProgress: (p) => events.push(p), progressMs: 0 });
    const dir = await d.start();
    expect(dir).toBe(join(models, "test--qwen2-moe"));
    expectSameAsFixture(dir); // README.md, pytorch_model.bin and onnx/ were left on the hub
    expect(readdirSync(models).sort()).toEqual(["test--qwen2-moe"]); // no .partial folder, no sidecar left
    const last = events.at(-1)!;
    expect(last.state).toBe("done");
    const total = fixtureFiles().reduce((s, f) => s + statSync(join(FIXTURE, f)).size, 0);
    expect(last.totalBytes).toBe(total);
    expect(last.doneBytes).toBe(total);
    expect(last.files.every((f) => f.state === "done" && f.doneBytes === f.size)).toBe(true);
    // progress went up monotonically, per file and overall
    const overall = events.map((e) => e.doneBytes);
    expect(overall).toEqual([...overall].sort((a, b) => a - b));
    // LFS files went through the 302 to the CDN path; each file was fetched exactly once
    expect(hub.log.some((e) => e.status === 302)).toBe(true);
    for (const f of fixtureFiles()) expect(hub.transfers(f).length, f).toBe(1);
    expect(hub.log.filter((e) => e.path.includes("README") || e.path.includes(".bin") || e.path.includes("onnx"))).toEqual([]);
  });

  it("resumes a transfer cut mid-file from the bytes on disk (Range), in a new downloader as after a restart", async () => {
    const models = fresh();
    const cut = 200_000;
    hub.faults.dropAfter.set(SHARD2, cut);
    const first = new ModelDownload({ modelsDir: models, repo: "test/qwen2-moe", source: "hf", endpoint: hub.url });
    const err = await first.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as HubError).message).toMatch(/model-00002-of-00003\.safetensors/);
    // what a restart finds: the sidecar, the verified first shard, and a partial second shard
    expect(existsSync(sidecarPath(models, "test/qwen2-moe"))).toBe(true);
    const partial = join(models, "test--qwen2-moe.partial", `${SHARD2}.partial`);
    const onDisk = statSync(partial).size;
    expect(onDisk).toBeGreaterThan(0);
    expect(onDisk).toBeLessThanOrEqual(cut);
    expect(existsSync(join(models, "test--qwen2-moe"))).toBe(false); // nothing looks whole before it is

    hub.log.length = 0;
    const second = new ModelDownload({ modelsDir: models, repo: "test/qwen2-moe", source: "hf", endpoint: hub.url });
    expect(second.progress().state).toBe("interrupted"); // it stopped without a pause: listed so, resumable
    expect(second.progress().doneBytes).toBeGreaterThanOrEqual(onDisk);
    const dir = await second.start();
    expectSameAsFixture(dir);
    // the server's log: the second shard was asked for from exactly the bytes on disk, and only the rest was sent
    const size = statSync(join(FIXTURE, SHARD2)).size;
    const t = hub.transfers(SHARD2);
    expect(t.map((e) => e.range)).toEqual([`bytes=${onDisk}-`]);
    expect(t[0].status).toBe(206);
    expect(t[0].sent).toBe(size - onDisk);
    // files verified before the cut were not fetched again, and no listing call was needed (the sidecar has it)
    expect(hub.transfers("model-00001-of-00003.safetensors")).toEqual([]);
    expect(hub.log.some((e) => e.path.startsWith("/api/models/"))).toBe(false);
  });

  it("pause keeps the partial file; resume continues from it; cancel removes everything", async () => {
    const models = fresh();
    hub.faults.bytesPerSecond = 400_000;
    let d!: ModelDownload;
    const paused = new Promise<void>((resolve) => {
      d = new ModelDownload({
        modelsDir: models,
        repo: "test/qwen2-moe",
        source: "hf",
        endpoint: hub.url,
        progressMs: 0,
        onProgress: (p) => {
          if (p.files.some((f) => f.path === SHARD2 && f.doneBytes > 100_000)) resolve();
        },
      });
    });
    const run = d.start();
    await paused;
    await d.pause();
    await expect(run).rejects.toBeInstanceOf(DownloadStopped);
    expect(d.progress().state).toBe("paused");
    const onDisk = statSync(join(models, "test--qwen2-moe.partial", `${SHARD2}.partial`)).size;
    expect(onDisk).toBeGreaterThan(100_000);
    // a restart after a pause lists it as paused (the sidecar says so), not as interrupted
    expect(new ModelDownload({ modelsDir: models, repo: "test/qwen2-moe", source: "hf", endpoint: hub.url }).progress().state).toBe("paused");
    hub.faults.bytesPerSecond = 0;
    hub.log.length = 0;
    const dir = await d.start();
    expectSameAsFixture(dir);
    expect(hub.transfers(SHARD2).map((e) => e.range)).toEqual([`bytes=${onDisk}-`]);

    // cancel: a second model half-way, then everything of it is gone
    rmSync(dir, { recursive: true });
    hub.faults.bytesPerSecond = 400_000;
    const c = new ModelDownload({ modelsDir: models, repo: "test/qwen2-moe", source: "hf", endpoint: hub.url });
    const run2 = c.start();
    await expect.poll(() => c.progress().doneBytes, { timeout: 10_000 }).toBeGreaterThan(50_000);
    await c.cancel();
    await expect(run2).rejects.toBeInstanceOf(DownloadStopped);
    expect(c.progress().state).toBe("cancelled");
    expect(readdirSync(models)).toEqual([]);
  });

  it("a corrupted byte fails the sha256 and the file is fetched again once", async () => {
    const models = fresh();
    hub.faults.corrupt.set(SHARD2, 1);
    const dir = await new ModelDownload({ modelsDir: models, repo: "test/qwen2-moe", source: "hf", endpoint: hub.url }).start();
    expectSameAsFixture(dir);
    const t = hub.transfers(SHARD2);
    expect(t.length).toBe(2); // the corrupted copy, then a fresh one
    expect(t.map((e) => e.range)).toEqual([null, null]);
    // a file that keeps arriving corrupted is an error naming it, and its bad copy is deleted
    rmSync(dir, { recursive: true });
    hub.log.length = 0;
    hub.faults.corrupt.set(SHARD2, 2);
    const err = (await new ModelDownload({ modelsDir: models, repo: "test/qwen2-moe", source: "hf", endpoint: hub.url }).start().catch((e: unknown) => e)) as HubError;
    expect(err.kind).toBe("checksum");
    expect(err.message).toMatch(/model-00002-of-00003\.safetensors .*checksum twice/);
    expect(existsSync(join(models, "test--qwen2-moe.partial", `${SHARD2}.partial`))).toBe(false);
  });

  it("a gated repo: 401 says a token is needed; with the token it downloads (the token never goes to the CDN)", async () => {
    const models = fresh();
    const no = new ModelDownload({ modelsDir: models, repo: "test/gated-moe", source: "hf", endpoint: hub.url });
    const err = (await no.start().catch((e: unknown) => e)) as HubError;
    expect(err.kind).toBe("gated");
    expect(err.message).toBe(`test/gated-moe is gated: it needs an access token. Accept the model's terms on its page on ${new URL(hub.url).host}, then add your token.`);
    expect(no.progress().errorKind).toBe("gated");
    const wrong = (await new ModelDownload({ modelsDir: fresh(), repo: "test/gated-moe", source: "hf", endpoint: hub.url, token: "nope" }).start().catch((e: unknown) => e)) as HubError;
    expect(wrong.message).toMatch(/your access token was refused \(401\)/);
    hub.log.length = 0;
    const dir = await new ModelDownload({ modelsDir: fresh(), repo: "test/gated-moe", source: "hf", endpoint: hub.url, token: TOKEN }).start();
    expectSameAsFixture(dir);
    expect(hub.log.filter((e) => e.path.startsWith("/cdn/")).every((e) => !e.auth)).toBe(true);
    expect(hub.log.filter((e) => e.path.includes("/resolve/")).every((e) => e.auth)).toBe(true);
  });

  it("404: an unknown repo and an unknown file are named", async () => {
    const client = new HubClient({ source: "hf", endpoint: hub.url });
    await expect(client.listFiles("nobody/no-such-model")).rejects.toThrow(
      `nobody/no-such-model was not found on ${new URL(hub.url).host} (check the id, or it is private: an access token may be needed)`,
    );
    await expect(client.fetchJsonFile("test/qwen2-moe", "missing.json")).rejects.toThrow(`missing.json was not found in test/qwen2-moe on ${new URL(hub.url).host}`);
    const err = (await new ModelDownload({ modelsDir: fresh(), repo: "nobody/no-such-model", source: "hf", endpoint: hub.url }).start().catch((e: unknown) => e)) as HubError;
    expect(err.kind).toBe("not_found");
    await expect(client.listFiles("not a repo id")).rejects.toThrow(/"not a repo id" is not a model id: expected owner\/name/);
  });

  it("a server that stops sending mid-file ends with a clear 'stalled' message, and resume then finishes", async () => {
    const models = fresh();
    hub.faults.stallAfter.set(SHARD2, 100_000);
    const d = new ModelDownload({ modelsDir: models, repo: "test/qwen2-moe", source: "hf", endpoint: hub.url, stallMs: 1500 });
    const err = (await d.start().catch((e: unknown) => e)) as HubError;
    expect(err.kind).toBe("stalled");
    expect(err.message).toBe(`the download stalled: ${new URL(hub.url).host} sent nothing for 1.5 s. Check the connection (or try a mirror) and resume.`);
    expect(d.progress().state).toBe("error");
    const dir = await d.start();
    expectSameAsFixture(dir);
  });

  it("a listing without sizes: each file's size comes from a HEAD (through the CDN redirect); no checksum to check", async () => {
    const client = new HubClient({ source: "hf", endpoint: hub.url });
    const listing = await client.listFiles("test/no-sizes");
    for (const f of fixtureFiles()) expect(listing.files.find((x) => x.path === f)!.size, f).toBe(statSync(join(FIXTURE, f)).size);
    expect(hub.log.filter((e) => e.method === "HEAD" && !e.path.startsWith("/cdn/")).length).toBe(fixtureFiles().length);
    const dir = await new ModelDownload({ modelsDir: fresh(), repo: "test/no-sizes", source: "hf", endpoint: hub.url }).start();
    expectSameAsFixture(dir);
  });

  it("ModelScope's listing and file calls", async () => {
    const models = fresh();
    const client = new HubClient({ source: "modelscope", endpoint: hub.url });
    const listing = await client.listFiles("test/qwen2-moe");
    expect(listing.files.find((f) => f.path === SHARD2)!.sha256).toMatch(/^[0-9a-f]{64}$/);
    await expect(client.listFiles("nobody/nothing")).rejects.toThrow(/nobody\/nothing on 127\.0\.0\.1:\d+: model nobody\/nothing not exists/);
    const dir = await new ModelDownload({ modelsDir: models, repo: "test/qwen2-moe", source: "modelscope", endpoint: hub.url }).start();
    expectSameAsFixture(dir);
    expect(hub.log.some((e) => e.path.startsWith("/api/v1/models/test/qwen2-moe/repo?Revision=master&FilePath="))).toBe(true);
  });
});
