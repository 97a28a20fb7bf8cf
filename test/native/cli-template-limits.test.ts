// The CLI with a model folder whose chat template never ends: `generate --prompt` fails with one clear line and
// exit code 1 within a second of the model being loaded, and `chat` reports the error for that turn and keeps going.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureNames, modelDir, ROOT } from "./fixtures.js";

const BIN = join(ROOT, "electron/bin/moe-studio.mjs");
const names = fixtureNames();
const MODEL = modelDir(names.includes("qwen2") ? "qwen2" : names[0]);
let dir: string;
let hostile: string;

function cli(args: string[], input?: string) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", input, timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr, ms: performance.now() - t0 };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "moe-cli-limits-"));
  hostile = join(dir, "hostile-model");
  cpSync(MODEL, hostile, { recursive: true });
  writeFileSync(join(hostile, "chat_template.jinja"), "{% for i in range(100000000) %}x{% endfor %}");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("moe-studio CLI with an endless chat template", () => {
  it("generate --prompt: one line on stderr naming the folder and the limit, exit code 1", () => {
    const r = cli(["generate", "--model", hostile, "--prompt", "hi", "--max-tokens", "2"]);
    expect(r.code).toBe(1);
    expect(r.err.trim()).toMatch(new RegExp(`chat template of ${hostile.replace(/[/.]/g, "\\$&")} did not finish within 500 ms$`));
    expect(r.err.trim().split("\n").length).toBe(1);
    // process start, model load, text process start, then the 500 ms limit: nowhere near the minutes of the loop
    expect(r.ms).toBeLessThan(20_000);
  });

  it("chat: the turn fails with the error, the program goes on and quits with /exit", () => {
    const r = cli(["chat", "--model", hostile, "--max-tokens", "2"], "hello\nagain\n/exit\n");
    expect(r.code).toBe(0);
    expect(r.err.match(/error: chat template of .* did not finish within 500 ms/g)?.length).toBe(2);
  });
});
