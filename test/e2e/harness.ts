// End-to-end harness: the real app as a user gets it with `moe-studio serve`, driven in Debian's Chromium by
// playwright-core (the Electron binary cannot be downloaded on our machines; the served UI is the same renderer).
//
//   const serve = await startServe({ model: fixtureModel("qwen3_moe") });
//   const app = await openApp(serve.url);       // the printed URL with its ?token=, as a user opens it
//   ... app.page ...; await app.screenshot("chat"); app.expectClean();
//   await app.close(); await serve.stop();
//
// Every console error, uncaught page error, CSP violation, failed request and HTTP error response is recorded in
// `app.problems`; `expectClean()` fails the test if there is any (pass `allow` for the few that a test provokes).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll } from "vitest";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
export const ARTIFACTS = join(ROOT, "test/artifacts/e2e");
export const CHROMIUM = process.env.MOE_CHROMIUM ?? "/usr/bin/chromium";
const BIN = join(ROOT, "electron/bin/moe-studio.mjs");

/** The launch flags that work on our headless build machines (../shared/TOOLCHAIN.md). */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

export const INSTALL_HINT =
  "install Debian's Chromium: sudo apt-get install -y --no-install-recommends chromium xvfb xauth fonts-wqy-microhei " +
  "(or set MOE_CHROMIUM=/path/to/chromium); never `npx playwright install`";

/**
 * Whether the browser tests can run. Without Chromium: on CI (CI=true) this throws, so a missing browser can
 * never turn the end-to-end suite green by skipping; elsewhere it prints how to install it and returns false.
 */
export function chromiumAvailable(): boolean {
  if (existsSync(CHROMIUM)) return true;
  const msg = `e2e: ${CHROMIUM} not found; ${INSTALL_HINT}`;
  if (process.env.CI === "true" || process.env.CI === "1") throw new Error(msg);
  console.warn(`${msg}. Skipping the browser tests.`);
  return false;
}

export function fixtureModel(name: string): string {
  return join(ROOT, "test/fixtures/models", name);
}

/**
 * This test file's temp folders live in one scratch folder that every `serve` it starts is given with --allow-dir:
 * tests open model folders and files they make there by path, as a user opens folders they allowed; anything
 * else outside the data folder and the fixtures is refused, as for a user. Removed after the file's last suite
 * (a file-level afterAll: the suites' own afterAll, which stop their servers, run before it).
 */
let scratch: string | null = null;
function scratchDir(): string {
  return (scratch ??= mkdtempSync(join(tmpdir(), "moe-e2e-")));
}
afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  scratch = null;
});

export function freshDir(prefix: string): string {
  return mkdtempSync(join(scratchDir(), `${prefix}-`));
}

/**
 * A copy of a fixture model that never stops on its own: the tiny fixtures have a 256-token context and random
 * weights that hit an eos token within a few hundred tokens, i.e. a reply ends in a fraction of a second. With a
 * long context and no eos ids the same weights stream until max tokens, so a test can Stop a reply, or kill the
 * engine worker, while it is still streaming. Only config files change; the weights are the fixture's.
 */
export function longReplyModel(name: string, contextLength = 32768): string {
  const src = fixtureModel(name);
  const dir = join(freshDir(`model-${name}`), name);
  mkdirSync(dir);
  for (const f of readdirSync(src)) copyFileSync(join(src, f), join(dir, f));
  const edit = (file: string, change: (j: Record<string, unknown>) => void) => {
    const p = join(dir, file);
    if (!existsSync(p)) return;
    const j = JSON.parse(readFileSync(p, "utf8")) as Record<string, unknown>;
    change(j);
    writeFileSync(p, JSON.stringify(j, null, 2));
  };
  edit("config.json", (j) => {
    j.max_position_embeddings = contextLength;
    j.eos_token_id = null;
  });
  edit("generation_config.json", (j) => {
    j.eos_token_id = null;
  });
  edit("tokenizer_config.json", (j) => {
    j.model_max_length = contextLength;
  });
  return dir;
}

// ---------- the server ----------

export interface Serve {
  /** The URL the server printed, with its ?token=: opening it signs the browser in (a cookie). */
  url: string;
  token: string;
  pid: number;
  dataDir: string;
  /** Everything the server printed so far (stdout + stderr), for failure messages. */
  output(): string;
  /** Pids of the server's child processes whose command line matches `match` (default: the engine worker). */
  children(match?: RegExp): number[];
  /** Stops the server (SIGTERM, then SIGKILL after 5 s) and saves its output as test/artifacts/e2e/<logName>. */
  stop(logName?: string): Promise<void>;
}

const READY = /moe-studio serve: (http:\/\/127\.0\.0\.1:\d+\/\?token=([A-Za-z0-9._~-]+))\n/;

/**
 * Starts `moe-studio serve --port 0 --data <fresh dir> [--model DIR] --allow-dir <fixtures> --allow-dir <scratch>`
 * and waits for its URL line.
 */
export async function startServe(opts: { model?: string; dataDir?: string; timeoutMs?: number } = {}): Promise<Serve> {
  const cli = join(ROOT, "out/electron/cli.js");
  if (!existsSync(cli)) throw new Error(`e2e: ${cli} is missing; run "npm run build" first`);
  const dataDir = opts.dataDir ?? freshDir("data");
  const args = [BIN, "serve", "--port", "0", "--data", dataDir, "--allow-dir", join(ROOT, "test/fixtures/models"), "--allow-dir", scratchDir()];
  if (opts.model) args.push("--model", opts.model);
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LANG: "en_US.UTF-8" },
  });
  let out = "";
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (s: string) => (out += s));

  const [url, token] = await new Promise<[string, string]>((resolve, reject) => {
    const timer = setTimeout(() => fail(`no "moe-studio serve: http://127.0.0.1:PORT/?token=..." line within ${opts.timeoutMs ?? 60_000} ms`), opts.timeoutMs ?? 60_000);
    function fail(why: string) {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`e2e: moe-studio serve ${why}\n--- server output ---\n${out}`));
    }
    child.stdout!.on("data", (s: string) => {
      out += s;
      const m = READY.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve([m[1], m[2]]);
      }
    });
    child.once("exit", (code, signal) => fail(`exited before it was ready (${signal ?? `code ${code}`})`));
    child.once("error", (e) => fail(`could not start: ${e.message}`));
  });
  child.removeAllListeners("exit");

  let exited = false;
  const exitedP = new Promise<void>((r) => child.once("exit", () => ((exited = true), r())));
  return {
    url,
    token,
    pid: child.pid!,
    dataDir,
    output: () => out,
    children(match = /worker/) {
      const r = spawnSync("ps", ["--ppid", String(child.pid), "-o", "pid=,args="], { encoding: "utf8" });
      return r.stdout
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l && match.test(l))
        .map((l) => Number(l.split(/\s+/)[0]));
    },
    async stop(logName = "serve.log") {
      if (!exited) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exitedP;
        clearTimeout(t);
      }
      mkdirSync(ARTIFACTS, { recursive: true });
      writeFileSync(join(ARTIFACTS, logName), out);
      if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// ---------- the browser ----------

export interface App {
  context: BrowserContext;
  page: Page;
  /** Console errors, page errors, CSP violations, failed requests and HTTP errors seen so far. */
  problems: string[];
  /** Saves test/artifacts/e2e/<name>.png (full page unless told otherwise). */
  screenshot(name: string, opts?: { fullPage?: boolean; timeout?: number }): Promise<string>;
  /** Fails if any problem was recorded, except those matching `allow`; then forgets them. */
  expectClean(allow?: RegExp[]): void;
  close(): Promise<void>;
}

export async function openApp(url: string, opts: { locale?: string; colorScheme?: "light" | "dark" } = {}): Promise<App> {
  const profile = freshDir("chromium");
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
    locale: opts.locale ?? "en-US",
    colorScheme: opts.colorScheme ?? "light",
  });
  // A CSP violation also shows in the console, but the event says exactly what was blocked.
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "(inline)"} in ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  // Copy buttons write to the clipboard; the test reads it back.
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(url).origin });
  const problems: string[] = [];
  const watch = (page: Page) => {
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console error: ${m.text()} (${m.location().url}:${m.location().lineNumber})`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => {
      const why = r.failure()?.errorText ?? "";
      if (why.includes("ERR_ABORTED")) return; // a reload cancels what was in flight: not a failure
      problems.push(`request failed: ${r.method()} ${r.url()} ${why}`);
    });
    page.on("response", (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
    });
    page.on("crash", () => problems.push("the page crashed"));
  };
  context.on("page", watch);
  const page = context.pages()[0] ?? (await context.newPage());
  watch(page);
  await page.goto(url);
  // the token exchange: the page arrives signed in, and the token is not left in the address bar (or history)
  if (new URL(url).searchParams.has("token") && new URL(page.url()).searchParams.has("token")) {
    throw new Error(`e2e: ${page.url()} still shows the token after signing in`);
  }

  mkdirSync(ARTIFACTS, { recursive: true });
  return {
    context,
    page,
    problems,
    async screenshot(name, o = {}) {
      const path = join(ARTIFACTS, `${name}.png`);
      // animations "disabled" finishes CSS transitions, so a view is shown as it settles, not mid-fade
      await page.screenshot({ path, fullPage: o.fullPage ?? true, timeout: o.timeout ?? 30_000, animations: "disabled" });
      return path;
    },
    expectClean(allow = []) {
      const left = problems.filter((p) => !allow.some((a) => a.test(p)));
      problems.length = 0;
      if (left.length) throw new Error(`the page reported ${left.length} problem(s):\n  ${left.join("\n  ")}`);
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Removes old screenshots so test/artifacts/e2e shows this run only. */
/** Removes a suite's own artifacts from an earlier run (those whose names match `own`), leaving the other suites'
 * screenshots alone: the suites run in parallel and share the folder. */
export function resetArtifacts(own: RegExp): void {
  mkdirSync(ARTIFACTS, { recursive: true });
  for (const name of readdirSync(ARTIFACTS)) if (own.test(name)) rmSync(join(ARTIFACTS, name), { recursive: true, force: true });
}

/** The visible controls (buttons, inputs, selects) with no name a screen reader can say: no text, aria-label(ledby),
 * title or <label>. Tests expect this list to be empty for every view. */
export function unnamedControls(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const named = (el: HTMLElement) =>
      !!(el.getAttribute("aria-label")?.trim() || el.getAttribute("aria-labelledby") || el.getAttribute("title")?.trim() ||
        (el instanceof HTMLButtonElement && el.textContent?.trim()) ||
        ((el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement) && el.labels?.length));
    return [...document.querySelectorAll<HTMLElement>("button, input, textarea, select, [role=button]")]
      .filter((el) => el.offsetParent !== null && !(el instanceof HTMLInputElement && el.type === "hidden") && !named(el))
      .map((el) => el.outerHTML.slice(0, 120));
  });
}
