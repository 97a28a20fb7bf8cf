// Finetune runs when things go wrong, end to end in Chromium against `moe-studio serve` on the qwen3_moe fixture:
//   - the trainer process is killed mid-run (as an OOM kill would): the window keeps working, the run shows
//     "Failed" with the reason, its last checkpoint is listed and a chat with it answers;
//   - serve is stopped mid-run (the app quitting) and started again on the same data folder: the run is listed
//     as paused with Resume (quitting checkpoints it), and Resume trains it to the end from that checkpoint;
//   - two runs' loss curves on one chart (Compare);
//   - a base model without a chat template: the form says so and Start stays off, nothing is started;
//   - an empty dataset (its one sample deleted in the Datasets view): the form says so, Start stays off.
// The dataset is imported with the CLI into serve's database before serve starts (the import UI has its own e2e).
// Screenshots: test/artifacts/e2e/finetune-life-*.png.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Locator, Page } from "playwright-core";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type App, ROOT, chromiumAvailable, fixtureModel, freshDir, openApp, resetArtifacts, type Serve, startServe } from "./harness.js";

const run = chromiumAvailable();
const BIN = join(ROOT, "electron/bin/moe-studio.mjs");
const REPLY = "Blue whales sing at dawn.";
const DATASET = "whales (8 samples)";
const QUESTIONS = ["What color is the sky?", "Tell me a fact.", "Who are you?", "Say something.", "What is 2+2?", "Name a fruit.", "Hello!", "How are you?"];

describe.runIf(run)("finetune runs that crash, quit and compare", () => {
  let serve: Serve;
  let app: App;
  let page: Page;
  let dataDir: string;
  let noTemplate: string;

  beforeAll(async () => {
    resetArtifacts(/^finetune-life-/);
    dataDir = freshDir("data");
    const data = join(freshDir("ds"), "whales.jsonl");
    writeFileSync(data, QUESTIONS.map((q) => JSON.stringify({ messages: [{ role: "user", content: q }, { role: "assistant", content: REPLY }] })).join("\n") + "\n");
    const imp = spawnSync(process.execPath, [BIN, "dataset", "import", data, "--db", join(dataDir, "moe-studio.db")], { encoding: "utf8" });
    expect(imp.status, imp.stderr).toBe(0);
    const lonely = join(freshDir("ds"), "lonely.jsonl");
    writeFileSync(lonely, JSON.stringify({ messages: [{ role: "user", content: "Only me?" }, { role: "assistant", content: "Only you." }] }) + "\n");
    const imp2 = spawnSync(process.execPath, [BIN, "dataset", "import", lonely, "--db", join(dataDir, "moe-studio.db")], { encoding: "utf8" });
    expect(imp2.status, imp2.stderr).toBe(0);
    // the same model without a chat template (tokenizer_config.json's chat_template and any chat_template.jinja gone)
    noTemplate = join(freshDir("models"), "no_template");
    cpSync(fixtureModel("qwen3_moe"), noTemplate, { recursive: true });
    const tc = join(noTemplate, "tokenizer_config.json");
    const j = JSON.parse(readFileSync(tc, "utf8")) as Record<string, unknown>;
    delete j.chat_template;
    writeFileSync(tc, JSON.stringify(j));
    for (const f of ["chat_template.jinja", "chat_template.json"]) rmSync(join(noTemplate, f), { force: true });
    serve = await startServe({ model: fixtureModel("qwen3_moe"), dataDir });
    app = await openApp(serve.url);
    page = app.page;
  });
  afterAll(async () => {
    await app?.close();
    await serve?.stop("serve-finetune-life.log");
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const nav = (name: string) => page.getByRole("navigation", { name: /^(Main|主导航)$/ }).getByRole("button", { name, exact: true });
  const region = () => page.getByRole("region", { name: "Finetune" });
  const button = (name: string | RegExp) => region().getByRole("button", { name, exact: typeof name === "string" });
  const visible = (l: Locator, timeout = 15_000) => l.first().waitFor({ state: "visible", timeout });
  const runCard = () => region().getByRole("region", { name: /^Run / });
  const status = () => runCard().locator(".card-head [role=status]");
  const statusText = async () => (await status().innerText().catch(() => "")).trim();
  const runs = () => region().getByRole("navigation", { name: "Runs" });
  const checkpoints = () => runCard().getByRole("region", { name: "Checkpoints" }).getByRole("button", { name: /^Chat with checkpoint/ });

  /** A new run from the form: the dataset, the loaded base, these knobs and a name; Start; its card shows. */
  async function startRun(name: string, knobs: Record<string, string>) {
    await nav("Finetune").click();
    if (await runCard().count()) await region().getByRole("button", { name: "New run" }).click();
    const form = region().getByRole("form", { name: "New run" });
    await visible(form);
    await form.getByLabel("Dataset", { exact: true }).selectOption({ label: DATASET });
    await form.getByLabel("Run name", { exact: true }).fill(name);
    if (!(await form.getByLabel("max_steps", { exact: true }).isVisible())) await form.getByText("Advanced", { exact: true }).click();
    for (const [k, v] of Object.entries({ learning_rate: "0.01", per_device_train_batch_size: "4", max_seq_length: "64", seed: "1", ...knobs })) {
      const f = form.getByLabel(k, { exact: true });
      if ((await f.evaluate((e) => e.tagName)) === "SELECT") await f.selectOption(v);
      else await f.fill(v);
    }
    await expect.poll(async () => (await form.getByRole("status", { name: "Memory estimate" }).innerText().catch(() => "")).match(/\b(Fits|Tight)\b/)?.[1] ?? null, { timeout: 30_000 }).not.toBeNull();
    await button("Start").click();
    await expect.poll(async () => (await runCard().locator("h2").innerText().catch(() => "")).trim(), { timeout: 30_000 }).toBe(name);
  }

  it("a killed trainer: the window keeps working, the run is Failed with the reason, and its last checkpoint chats", async () => {
    await visible(nav("Finetune"), 30_000);
    await startRun("crash", { max_steps: "3000", save_steps: "20" });
    await expect.poll(() => checkpoints().count(), { timeout: 60_000 }).toBeGreaterThan(0);
    const trainers = serve.children(/moe-studio\.mjs train /);
    expect(trainers.length, serve.output()).toBe(1);
    process.kill(trainers[0], "SIGKILL");
    await expect.poll(statusText, { timeout: 30_000 }).toBe("Failed");
    expect(await runCard().getByRole("alert").innerText()).toMatch(/trainer .*(killed|SIGKILL)|SIGKILL/i);
    const ck = await checkpoints().count();
    expect(ck).toBeGreaterThan(0);
    await app.screenshot("finetune-life-01-crashed");
    // the last checkpoint loads and answers (greedy: its reply is well on the way to the trained one)
    await checkpoints().last().click();
    const composer = page.getByRole("textbox", { name: "Message", exact: true });
    await visible(composer, 30_000);
    await visible(page.getByTestId("adapter-chip"));
    expect((await page.getByTestId("adapter-chip").innerText()).trim()).toMatch(/^adapter: checkpoint-\d+$/);
    await composer.fill("Name a fruit.");
    await page.getByRole("button", { name: "Send", exact: true }).click();
    const reply = page.getByRole("log", { name: "Messages" }).locator("[data-role=assistant]").last();
    await expect.poll(() => reply.getAttribute("class"), { timeout: 60_000 }).toMatch(/status-complete/);
    app.expectClean();
  });

  it("serve stopped mid-run and started again: the run is paused at a checkpoint, and Resume finishes it", async () => {
    await startRun("quit", { max_steps: "400", save_steps: "50" });
    await expect.poll(() => checkpoints().count(), { timeout: 60_000 }).toBeGreaterThan(0);
    await app.close();
    await serve.stop("serve-finetune-life-1.log");
    serve = await startServe({ model: fixtureModel("qwen3_moe"), dataDir });
    app = await openApp(serve.url);
    page = app.page;
    await visible(nav("Finetune"), 30_000);
    await nav("Finetune").click();
    await runs().getByRole("button").filter({ hasText: "quit" }).first().click();
    await expect.poll(statusText, { timeout: 15_000 }).toMatch(/^(Paused|Interrupted)$/);
    const stoppedAt = Math.max(...(await runCard().getByRole("region", { name: "Checkpoints" }).locator("li").allInnerTexts()).map((t) => Number(/checkpoint-(\d+)/.exec(t)?.[1] ?? 0)));
    await app.screenshot("finetune-life-02-after-restart");
    await button("Resume").click();
    await expect.poll(statusText, { timeout: 180_000 }).toBe("Done");
    // every step is in the chart once: the ones before the quit, then the resumed ones from its checkpoint
    await runCard().getByRole("region", { name: "Training chart" }).getByRole("button", { name: "Table" }).click();
    const rows = runCard().getByRole("table", { name: "Training points" }).locator("tbody tr");
    await expect.poll(() => rows.count(), { timeout: 15_000 }).toBe(400);
    expect(stoppedAt).toBeGreaterThan(0);
    expect(stoppedAt).toBeLessThan(400);
    app.expectClean();
  });

  it("Compare: two runs' smoothed loss on one chart, with their final numbers", async () => {
    for (const name of ["crash", "quit"]) await runs().getByRole("checkbox", { name: `Compare ${name}` }).check();
    const cmp = region().getByRole("region", { name: "Compare loss curves" });
    await visible(cmp);
    expect(await cmp.getByRole("img", { name: /^Smoothed loss of (crash and quit|quit and crash) against step$/ }).count()).toBe(1);
    const trs = await cmp.getByRole("table", { name: "Compared runs" }).locator("tbody tr").allInnerTexts();
    expect(trs.map((r) => r.split(/\s+/)[0]).sort()).toEqual(["crash", "quit"]);
    await app.screenshot("finetune-life-03-compare");
    app.expectClean();
  });

  it("a base model without a chat template: the form says so, Start stays off, nothing is started", async () => {
    await nav("Models").click();
    await page.getByRole("textbox", { name: "Model folder path" }).fill(noTemplate);
    await page.getByRole("button", { name: "Open", exact: true }).click();
    await visible(page.getByRole("region", { name: "Current model" }).getByText("no_template", { exact: true }), 60_000);
    await nav("Finetune").click();
    await visible(runs());
    const before = await runs().getByRole("button").count();
    await region().getByRole("button", { name: "New run" }).click();
    const form = region().getByRole("form", { name: "New run" });
    await form.getByLabel("Dataset", { exact: true }).selectOption({ label: DATASET });
    await form.getByLabel("Base model", { exact: true }).selectOption({ label: "no_template" });
    await expect.poll(() => form.innerText(), { timeout: 30_000 }).toMatch(/chat template/i);
    expect(await button("Start").isDisabled()).toBe(true);
    expect(await runs().getByRole("button").count()).toBe(before);
    expect(existsSync(noTemplate)).toBe(true);
    await form.getByText(/chat template/i).first().scrollIntoViewIfNeeded();
    await app.screenshot("finetune-life-04-no-template");
    app.expectClean();
  });

  it("an empty dataset (its last sample deleted in Datasets): the form says it is empty, Start stays off", async () => {
    await nav("Datasets").click();
    const list = page.getByRole("navigation", { name: "Dataset list" });
    await list.locator("li").filter({ has: page.locator(".conv-title").getByText("lonely", { exact: true }) }).getByRole("button").first().click();
    const grid = page.getByRole("grid", { name: "Samples" });
    const rows = grid.locator(".sgrid-body [role=row]:not(.placeholder)");
    await expect.poll(() => rows.count(), { timeout: 15_000 }).toBe(1);
    await rows.first().click();
    await page.getByRole("complementary", { name: "Sample #1" }).getByRole("button", { name: "Delete sample" }).click();
    await expect.poll(() => rows.count(), { timeout: 15_000 }).toBe(0);

    await nav("Finetune").click();
    await visible(runs());
    const before = await runs().getByRole("button").count();
    if (await runCard().count()) await region().getByRole("button", { name: "New run" }).click();
    const form = region().getByRole("form", { name: "New run" });
    await form.getByLabel("Base model", { exact: true }).selectOption({ label: "qwen3_moe" });
    await form.getByLabel("Dataset", { exact: true }).selectOption({ label: "lonely (0 samples)" });
    await expect.poll(() => form.innerText(), { timeout: 30_000 }).toMatch(/the dataset 'lonely' is empty: add or import samples first/);
    expect(await button("Start").isDisabled()).toBe(true);
    expect(await runs().getByRole("button").count()).toBe(before);
    await form.getByText(/is empty/).first().scrollIntoViewIfNeeded();
    await app.screenshot("finetune-life-06-empty-dataset");
    app.expectClean();
  });
});

describe.runIf(run)("a run that will not fit", () => {
  it("the estimate says Will not fit with the numbers and what to change; Start stays off", async () => {
    // a memory budget far below what any run needs (MOE_TRAIN_MEMORY_LIMIT: the trainer's budget for a shared
    // machine, native/train/trainer.cpp), so the verdict does not depend on this machine's free memory
    const dataDir = freshDir("data-nofit");
    const data = join(freshDir("ds"), "whales.jsonl");
    writeFileSync(data, QUESTIONS.map((q) => JSON.stringify({ messages: [{ role: "user", content: q }, { role: "assistant", content: REPLY }] })).join("\n") + "\n");
    expect(spawnSync(process.execPath, [BIN, "dataset", "import", data, "--db", join(dataDir, "moe-studio.db")]).status).toBe(0);
    process.env.MOE_TRAIN_MEMORY_LIMIT = "1000000";
    let serve: Serve | null = null;
    let app: App | null = null;
    try {
      serve = await startServe({ model: fixtureModel("qwen3_moe"), dataDir });
      delete process.env.MOE_TRAIN_MEMORY_LIMIT;
      app = await openApp(serve.url);
      const page = app.page;
      const region = page.getByRole("region", { name: "Finetune" });
      await page.getByRole("navigation", { name: "Main" }).getByRole("button", { name: "Finetune", exact: true }).click();
      const form = region.getByRole("form", { name: "New run" });
      await form.waitFor({ state: "visible", timeout: 30_000 });
      await form.getByLabel("Dataset", { exact: true }).selectOption({ label: DATASET });
      const estimate = form.getByRole("status", { name: "Memory estimate" });
      await expect.poll(() => form.innerText(), { timeout: 30_000 }).toMatch(/Will not fit/);
      expect(await estimate.innerText()).toMatch(/Needs [\d.]+ [KMG]?B/);
      // Quick's 512 tokens are cut to the fixture's context (max_position_embeddings 256), and the form says so
      expect(await estimate.innerText()).toMatch(/Tokens per sample \(max\)\s*256: the preset's, cut to the model's context/);
      expect(await form.innerText()).toMatch(/lower max_seq_length|Q-LoRA|batch/i);
      expect(await region.getByRole("button", { name: "Start", exact: true }).isDisabled()).toBe(true);
      await estimate.scrollIntoViewIfNeeded();
      await app.screenshot("finetune-life-05-will-not-fit");
      app.expectClean();
    } finally {
      delete process.env.MOE_TRAIN_MEMORY_LIMIT;
      await app?.close();
      await serve?.stop("serve-finetune-nofit.log");
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
