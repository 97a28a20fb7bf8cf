// services/path-policy.ts on a real temp tree: allowed folders, a read-only one, links out of and within them, a
// dangling link, "..", relative paths, a look-alike sibling folder, and a folder allowed only while a setting says so.
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { anyPath, ContainedPaths } from "../../electron/services/path-policy.js";

let root: string;
let data: string;
let models: string;
let outside: string;
let policy: ContainedPaths;
let current: string[] = [];

beforeAll(() => {
  root = realpathSync(mkdtempSync(join(tmpdir(), "moe-path-policy-")));
  data = join(root, "data");
  models = join(root, "models");
  outside = join(root, "outside");
  for (const d of [data, join(data, "sub"), models, outside, join(root, "data-evil"), join(root, "later")]) mkdirSync(d, { recursive: true });
  writeFileSync(join(outside, "secret.txt"), "secret");
  writeFileSync(join(data, "sub", "a.jsonl"), "{}\n");
  writeFileSync(join(models, "config.json"), "{}");
  symlinkSync(outside, join(data, "link-out"));
  symlinkSync(join(outside, "secret.txt"), join(data, "secret-link.txt"));
  symlinkSync(join(data, "sub"), join(data, "link-in"));
  symlinkSync(join(root, "nowhere"), join(data, "dangling"));
  policy = new ContainedPaths({
    dirs: [{ dir: data, write: true }, { dir: models, write: false }],
    currentDirs: () => current.map((dir) => ({ dir, write: true })),
    noWrite: [join(data, "app.db")],
    hint: "Use --allow-dir DIR.",
  });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const refusal = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    expect((e as { code?: string }).code).toBe("invalid_input");
    return (e as Error).message;
  }
  throw new Error("not refused");
};

describe("ContainedPaths", () => {
  it("allows files and folders under an allowed folder, existing or not yet, as their real path", () => {
    expect(policy.checkRead(join(data, "sub", "a.jsonl"), "dataset file")).toBe(join(data, "sub", "a.jsonl"));
    expect(policy.checkRead(data, "model folder")).toBe(data);
    expect(policy.checkWrite(join(data, "new", "deeper", "out.jsonl"), "export file")).toBe(join(data, "new", "deeper", "out.jsonl"));
    // a link that stays inside is fine; the service gets where it leads
    expect(policy.checkRead(join(data, "link-in", "a.jsonl"), "dataset file")).toBe(join(data, "sub", "a.jsonl"));
  });

  it("refuses a path outside, naming what it was for, the path, the allowed folders and the hint", () => {
    const msg = refusal(() => policy.checkRead("/etc/passwd", "dataset file"));
    expect(msg).toContain('dataset file: "/etc/passwd" is outside the folders this server may read');
    expect(msg).toContain(data);
    expect(msg).toContain(models);
    expect(msg).toContain("Use --allow-dir DIR.");
    expect(refusal(() => policy.checkWrite("/", "modelsDir"))).toMatch(/^modelsDir: "\/" is outside the folders this server may write to/);
    // a sibling whose name starts with the allowed folder's is not inside it
    refusal(() => policy.checkRead(join(root, "data-evil", "x"), "dataset file"));
  });

  it("resolves symlinks before deciding: a link inside that leads outside is refused, and says where it leads", () => {
    const msg = refusal(() => policy.checkRead(join(data, "secret-link.txt"), "dataset file"));
    expect(msg).toContain(`it leads to ${join(outside, "secret.txt")}`);
    refusal(() => policy.checkWrite(join(data, "link-out", "new.jsonl"), "export file"));
    refusal(() => policy.checkRead(join(data, "link-out"), "model folder"));
    expect(refusal(() => policy.checkWrite(join(data, "dangling", "x.jsonl"), "export file"))).toMatch(/symbolic link to a missing target/);
    expect(refusal(() => policy.checkWrite(join(data, "dangling"), "export file"))).toMatch(/symbolic link to a missing target/);
  });

  it('refuses "..", relative paths and NUL bytes outright', () => {
    expect(refusal(() => policy.checkRead(`${data}/../outside/secret.txt`, "dataset file"))).toMatch(/contains "\.\."/);
    expect(refusal(() => policy.checkRead(`${data}/sub/../sub/a.jsonl`, "dataset file"))).toMatch(/contains "\.\."/);
    expect(refusal(() => policy.checkRead("data/sub/a.jsonl", "dataset file"))).toMatch(/not an absolute path/);
    expect(refusal(() => policy.checkRead(`${data}/a\0b`, "dataset file"))).toMatch(/NUL/);
  });

  it("a read-only folder (--model) may be read, not written", () => {
    expect(policy.checkRead(join(models, "config.json"), "model folder")).toBe(join(models, "config.json"));
    expect(refusal(() => policy.checkWrite(join(models, "out.jsonl"), "export file"))).toContain("may write to");
  });

  it("never writes the app's own files, even inside an allowed folder (they can still be read)", () => {
    expect(refusal(() => policy.checkWrite(join(data, "app.db"), "export file"))).toMatch(/is one of the app's own files/);
    writeFileSync(join(data, "app.db"), "");
    symlinkSync(join(data, "app.db"), join(data, "db-link"));
    expect(refusal(() => policy.checkWrite(join(data, "db-link"), "export file"))).toMatch(/is one of the app's own files/);
    expect(policy.checkRead(join(data, "app.db"), "dataset file")).toBe(join(data, "app.db"));
  });

  it("folders that change at run time are asked at each check", () => {
    const p = join(root, "later", "m");
    refusal(() => policy.checkRead(p, "model folder"));
    current = [join(root, "later"), join(data, "sub")];
    try {
      expect(policy.checkRead(p, "model folder")).toBe(p);
      expect(policy.checkWrite(p, "modelsDir")).toBe(p);
      // a folder inside another allowed one is not listed twice; --model is read only
      expect(policy.allowed("read")).toEqual([data, models, join(root, "later")]);
      expect(policy.allowed("write")).toEqual([data, join(root, "later")]);
    } finally {
      current = [];
    }
  });
});

describe("anyPath (Electron, CLI)", () => {
  it("passes every path through unchanged", () => {
    for (const p of ["/etc/passwd", "relative/x", "/a/../b"]) {
      expect(anyPath.checkRead(p, "x")).toBe(p);
      expect(anyPath.checkWrite(p, "x")).toBe(p);
    }
  });
});
