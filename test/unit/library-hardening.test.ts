// Hub listings are untrusted input. Against the local test hub (test/helpers/hub-server.ts): a listing with a hostile
// file name (backslash, "..", absolute, drive letter, NUL / control characters, empty segments, a Windows device
// name) is refused naming the repo and the file, on this OS too, before any byte is fetched or written; an edited
// sidecar is held to the same rule on resume; a file listed without a checksum is reported "none" (size-checked
// only), never verified, and requireChecksums refuses such a model before fetching anything.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelDownload, sidecarPath } from "../../electron/library/downloader.js";
import { checkHubPath, MAX_HUB_PATH, quoteHubPath, selectFiles, stagedFilePath, unsafeHubPathReason } from "../../electron/library/files.js";
import { HubClient, HubError } from "../../electron/library/hub.js";
import { startHubServer, type HubServer } from "../helpers/hub-server.js";

const FIXTURE = join(import.meta.dirname, "../fixtures/models/qwen2_moe");
const SHARD2 = "model-00002-of-00003.safetensors";

/** Each hostile name and why it is refused. All are top-level *.safetensors or config names a filter might pick. */
const HOSTILE: [string, RegExp][] = [
  ["..\\..\\evil.safetensors", /backslash/],
  ["sub\\model.safetensors", /backslash/],
  ["../evil.safetensors", /"\.\." path segment/],
  ["a/../../evil.safetensors", /"\.\." path segment/],
  ["./model.safetensors", /"\." path segment/],
  ["/etc/evil.safetensors", /absolute path/],
  ["C:evil.safetensors", /drive letter/],
  ["c:/Windows/evil.safetensors", /drive letter/],
  ["model.safetensors:stream", /colon/],
  ["evil\u0000.safetensors", /control character U\+0000/],
  ["evil\n.safetensors", /control character U\+000A/],
  ["evil\u001b[2J.safetensors", /control character U\+001B/],
  ["model\u202egnp.safetensors", /direction-changing character U\+202E/],
  ["config\u200b.json", /invisible or direction-changing character U\+200B/],
  ["a//model.safetensors", /empty path segment/],
  ["onnx/", /empty path segment/],
  ["", /empty/],
  ["model.safetensors.", /ends in a dot or a space/],
  ["NUL.safetensors", /device name on Windows/],
  ["x/com1.json", /device name on Windows/],
  ["a".repeat(MAX_HUB_PATH + 1), new RegExp(`longer than ${MAX_HUB_PATH}`)],
];

let hub: HubServer;
let root: string;
let modelsDir: string;

beforeAll(async () => {
  const repos: Parameters<typeof startHubServer>[0]["repos"] = {
    "test/no-checksum": { dir: FIXTURE, noChecksum: ["config.json", SHARD2] },
    "test/checked": { dir: FIXTURE },
  };
  HOSTILE.forEach(([name], i) => (repos[`evil/n${i}`] = { dir: FIXTURE, extra: { [name]: "pwned" } }));
  hub = await startHubServer({ repos });
});
afterAll(async () => {
  await hub?.close();
});
afterEach(() => {
  hub.log.length = 0;
  if (root) rmSync(root, { recursive: true, force: true });
});

/** A temp root with models/ inside it: anything written beside models/ would have escaped the staging folder. */
function fresh(): string {
  root = mkdtempSync(join(tmpdir(), "moe-lib-hard-"));
  modelsDir = join(root, "models");
  mkdirSync(modelsDir);
  return modelsDir;
}

const fileTransfers = () => hub.log.filter((e) => e.file !== null);

describe("hub file names", () => {
  it("one rule, on the string alone: each hostile name is refused with a reason; ordinary names pass", () => {
    for (const [name, why] of HOSTILE) expect(unsafeHubPathReason(name), JSON.stringify(name)).toMatch(why);
    for (const ok of ["config.json", "model-00001-of-00003.safetensors", "onnx/model.onnx", "original/params.json", ".gitattributes", "a b/c-d_e.f", "模型.json"]) {
      expect(unsafeHubPathReason(ok), ok).toBeNull();
    }
    expect(() => checkHubPath("o/m", "..\\x")).toThrow(`o/m lists an unsafe file name "..\\\\x": it contains a backslash`);
    expect(quoteHubPath("a\u202eb\u0000c")).toBe('"a\\u202eb\\u0000c"');
    const staging = join(tmpdir(), "staging");
    expect(stagedFilePath(staging, "o/m", "onnx/model.onnx")).toBe(join(staging, "onnx", "model.onnx"));
    expect(() => stagedFilePath(staging, "o/m", "../x")).toThrow(HubError);
    // the listing filter checks every name, also the ones it would not take
    const f = (path: string) => ({ path, size: 1, sha256: null, gitSha1: null });
    expect(() => selectFiles([f("config.json"), f("model.safetensors"), f("images/../../x.png")], "o/m")).toThrow(/o\/m lists an unsafe file name "images\/\.\.\/\.\.\/x\.png"/);
  });

  it("a listing with each hostile name: refused naming the repo and the file, nothing fetched, nothing written", async () => {
    for (const [i, [name, why]] of HOSTILE.entries()) {
      const models = fresh();
      const repo = `evil/n${i}`;
      const d = new ModelDownload({ modelsDir: models, repo, source: "hf", endpoint: hub.url });
      const err = (await d.start().catch((e: unknown) => e)) as HubError;
      expect(err, JSON.stringify(name)).toBeInstanceOf(HubError);
      expect(err.kind).toBe("invalid");
      expect(err.message).toContain(`${repo} lists an unsafe file name ${quoteHubPath(name)}`);
      expect(err.message).not.toMatch(/[\u0000-\u001f\u202e\u200b]/); // the message itself shows no raw control or bidi character
      expect(err.message).toMatch(why);
      expect(d.progress()).toMatchObject({ state: "error", errorKind: "invalid" });
      expect(readdirSync(models), repo).toEqual([]); // no sidecar, no staging folder
      expect(readdirSync(root), repo).toEqual(["models"]); // nothing beside it either
      expect(fileTransfers(), repo).toEqual([]);
      rmSync(root, { recursive: true, force: true });
    }
    // ModelScope's listing goes through the same rule
    const models = fresh();
    const err = await new ModelDownload({ modelsDir: models, repo: "evil/n0", source: "modelscope", endpoint: hub.url }).start().catch((e: unknown) => e);
    expect((err as Error).message).toContain(`evil/n0 lists an unsafe file name ${JSON.stringify(HOSTILE[0][0])}`);
    expect(readdirSync(models)).toEqual([]);
  });

  it("a sidecar edited to name a file outside the staging folder is refused on resume; nothing is written outside", async () => {
    const models = fresh();
    const listing = await new HubClient({ source: "hf", endpoint: hub.url }).listFiles("test/checked");
    const files = selectFiles(listing.files, "test/checked");
    files[0] = { ...files[0], path: "../../escaped.json" };
    writeFileSync(sidecarPath(models, "test/checked"), JSON.stringify({ version: 1, repo: "test/checked", source: "hf", endpoint: hub.url, revision: listing.revision, files, createdAt: 1 }));
    hub.log.length = 0;
    const d = new ModelDownload({ modelsDir: models, repo: "test/checked", source: "hf", endpoint: hub.url });
    expect(d.progress().state).toBe("interrupted"); // listed as before: the check is the run's, with a clear error
    await expect(d.start()).rejects.toThrow(`test/checked lists an unsafe file name "../../escaped.json": it has a ".." path segment`);
    expect(fileTransfers()).toEqual([]);
    expect(readdirSync(root)).toEqual(["models"]);
    expect(existsSync(join(tmpdir(), "escaped.json"))).toBe(false);
  });
});

describe("files without a checksum", () => {
  it("are downloaded size-checked only and reported as such (checksum none), the others sha256 / git-sha1", async () => {
    const models = fresh();
    const d = new ModelDownload({ modelsDir: models, repo: "test/no-checksum", source: "hf", endpoint: hub.url });
    const dir = await d.start();
    expect(readFileSync(join(dir, SHARD2)).equals(readFileSync(join(FIXTURE, SHARD2)))).toBe(true);
    const byPath = Object.fromEntries(d.progress().files.map((f) => [f.path, f.checksum]));
    expect(byPath["config.json"]).toBe("none");
    expect(byPath[SHARD2]).toBe("none");
    expect(byPath["model-00001-of-00003.safetensors"]).toBe("sha256"); // LFS
    expect(byPath["tokenizer_config.json"]).toBe("git-sha1"); // kept in git
    expect(Object.values(byPath).filter((c) => c === "none")).toHaveLength(2);
  });

  it("requireChecksums refuses before any byte is fetched or written, naming the files; without it the same download runs", async () => {
    for (const source of ["hf", "modelscope"] as const) {
      const models = fresh();
      hub.log.length = 0;
      const d = new ModelDownload({ modelsDir: models, repo: "test/no-checksum", source, endpoint: hub.url, requireChecksums: true });
      const err = (await d.start().catch((e: unknown) => e)) as HubError;
      expect(err).toBeInstanceOf(HubError);
      expect(err.kind).toBe("no_checksum");
      expect(err.message).toBe(`test/no-checksum: ${new URL(hub.url).host} lists no checksum for 2 files: config.json, ${SHARD2}; checksums are required, so nothing was downloaded`);
      expect(d.progress()).toMatchObject({ state: "error", errorKind: "no_checksum" });
      expect(fileTransfers(), source).toEqual([]);
      expect(readdirSync(models)).toEqual([]);
      // the user may go on without the requirement: the same download object, no stale refusal
      d.setRequireChecksums(false);
      expect(existsSync(await d.start())).toBe(true);
      rmSync(root, { recursive: true, force: true });
    }
    // a fully checksummed repo passes the requirement
    const dir = await new ModelDownload({ modelsDir: fresh(), repo: "test/checked", source: "hf", endpoint: hub.url, requireChecksums: true }).start();
    expect(existsSync(join(dir, "config.json"))).toBe(true);
  });
});
