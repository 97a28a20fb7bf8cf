// `moe-studio serve --api` as its own process, for tests that talk to the OpenAI-compatible API over a real HTTP hop
// (openai-api.test.ts with the openai client, remote-endpoint.test.ts as the remote the chat calls). Needs `npx tsc`;
// the web UI is a stand-in page (MOE_STUDIO_RENDERER_DIR), so no `vite build` either.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MODELS, ROOT } from "./fixtures.js";

const BIN = join(ROOT, "electron/bin/moe-studio.mjs");
const API_LINE = /OpenAI-compatible API at (http:\/\/127\.0\.0\.1:\d+\/v1)/;

export interface Served {
  baseUrl: string;
  pid: number;
  /** What it wrote on stderr so far (one line per finished generation, among others). */
  err: () => string;
  stop: () => Promise<void>;
  /** SIGKILL: the remote going away without a word (mid-stream, its connections reset). */
  kill: () => Promise<void>;
}

/** Starts serve --api on free ports with `model`, its data folder and stand-in page under `tmp`; resolves when it listens. */
export async function serveApi(tmp: string, model: string, extra: string[] = []): Promise<Served> {
  const dist = join(tmp, "dist");
  if (!existsSync(join(dist, "index.html"))) {
    mkdirSync(dist, { recursive: true });
    writeFileSync(join(dist, "index.html"), "<!doctype html><title>MoE Studio</title>");
  }
  const child = spawn(process.execPath, [BIN, "serve", "--port", "0", "--data", mkdtempSync(join(tmp, "data-")), "--model", model, "--api", "--api-port", "0", ...extra], {
    env: { ...process.env, MOE_STUDIO_RENDERER_DIR: dist },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  const exited = new Promise<void>((r) => child.on("exit", () => r()));
  const baseUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no API line; stdout: ${out} stderr: ${err}`)), 60_000);
    child.stdout!.on("data", () => {
      const m = API_LINE.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", () => reject(new Error(`exited; stdout: ${out} stderr: ${err}`)));
  });
  return {
    baseUrl,
    pid: child.pid!,
    err: () => err,
    stop: async () => (child.kill("SIGTERM"), await exited),
    kill: async () => (child.kill("SIGKILL"), await exited),
  };
}

/**
 * The qwen3_moe fixture's weights in a folder of its own with a longer context (the fixture says 256: too short for a
 * tool list in a 560-token vocabulary, or for a reply long enough to act on mid-stream; rope "default" does not depend
 * on it, so the logits are the goldens'), and optionally another chat template.
 */
export function fixtureCopy(dir: string, contextLength: number, template?: string): string {
  mkdirSync(dir, { recursive: true });
  const src = join(MODELS, "qwen3_moe");
  for (const f of readdirSync(src)) {
    if (f === "config.json" || (template && f === "chat_template.jinja")) continue;
    symlinkSync(join(src, f), join(dir, f));
  }
  const config = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, max_position_embeddings: contextLength }));
  if (template) writeFileSync(join(dir, "chat_template.jinja"), template);
  return dir;
}
