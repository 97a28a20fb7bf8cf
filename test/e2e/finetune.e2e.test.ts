// Finetune, end to end in Debian's Chromium against `moe-studio serve` (real finetune service, job system, engine
// and SQLite) on the tiny qwen3_moe fixture: a jsonl dropped on the Finetune view goes through the Datasets import
// (its report names the bad line), the new dataset is selected; the loaded model is the base; the memory estimate
// shows its verdict with the numbers; Start with the Quick preset and a few steps; points arrive (read through the
// chart's table toggle); Pause, then Resume; the run finishes with the loss down; after a reload the run is still
// listed with its points; the merged export appears in Models → "In your models folder" with its origin and opens in
// chat. Screenshots (light/dark, English/Chinese) go to test/artifacts/e2e/finetune-*.png.
//
// The dataset is the one test/native/train.test.ts learns: 20 questions that all get one fixed reply, which the
// fixture learns at lr 1e-2 (loss 6.5 -> ~0.4 in 30 steps there).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Locator, Page } from "playwright-core";
import { type App, chromiumAvailable, fixtureModel, openApp, resetArtifacts, type Serve, startServe, unnamedControls } from "./harness.js";

const run = chromiumAvailable();

const REPLY = "Blue whales sing at dawn.";
const QUESTIONS = ["What color is the sky?", "Tell me a fact.", "Who are you?", "Say something.", "What is 2+2?", "Name a fruit.", "Hello!",
  "How are you?", "What time is it?", "Where is Paris?", "Give me a word.", "What is AI?", "Pick a number.", "Describe a cat.",
  "Why is water wet?", "What is love?", "Sing a song.", "Tell a joke.", "What is a tree?", "Any advice?"];
// line 21 is not JSON: the report must name it
const FILE = [...QUESTIONS.map((q) => JSON.stringify({ messages: [{ role: "user", content: q }, { role: "assistant", content: REPLY }] })), "not json {"].join("\n") + "\n";
// enough steps that Pause lands mid-run on a fast machine (the fixture trains a step in milliseconds)
const STEPS = 300;

describe.runIf(run)("finetune, end to end in Chromium", () => {
  let serve: Serve;
  let app: App;
  let page: Page;

  beforeAll(async () => {
    resetArtifacts(/^finetune-/);
    serve = await startServe({ model: fixtureModel("qwen3_moe") });
    app = await openApp(serve.url);
    page = app.page;
  });
  afterAll(async () => {
    await app?.close();
    await serve?.stop("serve-finetune.log");
  });

  const nav = (name: string) => page.getByRole("navigation", { name: /^(Main|主导航)$/ }).getByRole("button", { name, exact: true });
  const region = () => page.getByRole("region", { name: /^(Finetune|微调)$/ });
  const button = (name: string | RegExp) => region().getByRole("button", { name, exact: typeof name === "string" });
  const visible = (l: Locator, timeout = 15_000) => l.first().waitFor({ state: "visible", timeout });
  const runCard = () => region().getByRole("region", { name: /^(Run|训练) / });
  const status = () => runCard().locator(".card-head [role=status]");
  const chart = () => runCard().getByRole("region", { name: /^(Training chart|训练图表)$/ });
  const routing = () => runCard().getByRole("region", { name: /^(Expert routing|专家路由)$/ });
  const tableRows = () => runCard().getByRole("table", { name: /^(Training points|训练数据点)$/ }).locator("tbody tr");

  async function drop(name: string, text: string) {
    const accepted = await page.evaluate(
      ({ name, text }) => {
        const dt = new DataTransfer();
        dt.items.add(new File([text], name, { type: "application/jsonl" }));
        for (const type of ["dragenter", "dragover"]) document.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
        return !document.dispatchEvent(new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer: dt }));
      },
      { name, text },
    );
    expect(accepted, "the drop was handled").toBe(true);
  }
  async function expectNamed(where: string) {
    expect(await unnamedControls(page), `unnamed controls in ${where}`).toEqual([]);
  }

  it("a jsonl dropped on the Finetune view is imported with its report and selected for the run", async () => {
    await visible(nav("Finetune"), 30_000);
    await nav("Finetune").click();
    await visible(region());
    await visible(region().getByRole("form", { name: "New run" }));
    // the drop zone's file input has a name (it is hidden; the button beside it opens it)
    expect(await region().locator('input[type=file]').getAttribute("aria-label")).toBe("Dataset file (.jsonl)");

    await drop("whales.jsonl", FILE);
    const report = page.getByRole("dialog", { name: "Import report" });
    await visible(report, 30_000);
    const bad = await report.getByRole("list", { name: "Bad lines" }).getByRole("listitem").allInnerTexts();
    expect(bad).toHaveLength(1);
    expect(bad[0]).toContain("Line 21");
    await report.getByRole("button", { name: `Import ${QUESTIONS.length} valid samples` }).click();
    await expect.poll(() => page.getByRole("dialog").count(), { timeout: 30_000 }).toBe(0);

    // still on Finetune, with the new dataset chosen and the loaded model as the base
    await visible(region());
    const dataset = region().getByLabel("Dataset", { exact: true });
    await expect.poll(async () => (await dataset.locator("option:checked").innerText()).trim(), { timeout: 15_000 }).toBe(`whales (${QUESTIONS.length} samples)`);
    await expect.poll(() => region().getByLabel("Base model", { exact: true }).inputValue(), { timeout: 15_000 }).toMatch(/qwen3_moe$/);
    await app.screenshot("finetune-00-dataset-selected");
    app.expectClean();
  });

  it("the estimate shows a verdict with the numbers; Start trains with the Quick preset and points arrive", async () => {
    await region().getByRole("radio", { name: /Quick/ }).check();
    await region().getByText("Advanced", { exact: true }).click();
    const knob = (name: string) => region().getByLabel(name, { exact: true });
    await knob("max_steps").fill(String(STEPS));
    await knob("learning_rate").fill("0.01");
    await knob("lr_scheduler_type").selectOption("constant");
    await knob("per_device_train_batch_size").fill("4");
    await knob("max_seq_length").fill("64");
    await knob("save_steps").fill("100");
    await knob("seed").fill("1");

    const estimate = region().getByRole("status", { name: "Memory estimate" });
    await visible(estimate, 30_000);
    await expect.poll(async () => (await estimate.innerText()).match(/\b(Fits|Tight)\b/)?.[1] ?? null, { timeout: 30_000 }).not.toBeNull();
    expect(await estimate.innerText()).toMatch(/Needs [\d.]+ [KMG]?B/);
    // both base precisions say what they cost
    expect(await region().getByRole("radio", { name: /Q-LoRA/ }).locator("..").innerText()).toMatch(/Needs about [\d.]+ [KMG]?B/);
    await app.screenshot("finetune-01-new-run-en-light");
    await expectNamed("the new-run form");

    // the same run as a LLaMA-Factory job for a cluster: the folder and the command to run there
    await button("Export for a cluster").click();
    const note = region().getByTestId("cluster-job");
    await visible(note, 30_000);
    expect(await note.innerText()).toMatch(/Written to .*cluster-jobs.*: \d+ conversations for .*, LLaMA-Factory template qwen3_nothink/);
    expect(await note.innerText()).toContain("FORCE_TORCHRUN=1 llamafactory-cli train train_lora.yaml");

    await button("Start").click();
    await visible(runCard(), 30_000);
    await chart().getByRole("button", { name: "Table" }).click();
    await expect.poll(() => tableRows().count(), { timeout: 120_000 }).toBeGreaterThanOrEqual(2);
    const first = await tableRows().first().locator("td").allInnerTexts();
    expect(first[0]).toBe("1");
    expect(Number(first[1])).toBeGreaterThan(0);
    app.expectClean();
  });

  it("Pause stops it with Resume offered; Resume runs it to the end with the loss down", async () => {
    await button("Pause").click();
    await expect.poll(async () => (await status().innerText()).trim(), { timeout: 60_000 }).toBe("Paused");
    console.log(`e2e: paused at ${await tableRows().count()} points`);
    await visible(button("Resume"));
    const pausedAt = await tableRows().count();
    await page.waitForTimeout(1500);
    expect(await tableRows().count(), "no step while paused").toBe(pausedAt);
    expect(pausedAt).toBeLessThan(STEPS);
    await app.screenshot("finetune-02-paused-en-light");

    await button("Resume").click();
    await expect.poll(async () => (await status().innerText()).trim(), { timeout: 180_000 }).toBe("Done");
    await expect.poll(() => tableRows().count(), { timeout: 15_000 }).toBe(STEPS);
    const rows = await tableRows().evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? "")));
    expect(rows.map((r) => Number(r[0]))).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    const firstLoss = Number(rows[0][1]);
    const lastLoss = Number(rows.at(-1)![1]);
    expect(lastLoss, `loss ${firstLoss} -> ${lastLoss}`).toBeLessThan(firstLoss / 2);
    await visible(runCard().getByRole("button", { name: /^Chat with checkpoint/ }));
    await visible(runCard().getByRole("button", { name: /^Export/ }));
    await page.mouse.move(1200, 780);
    await app.screenshot("finetune-03-done-en-light");
    await expectNamed("the finished run");
    app.expectClean();
  });

  it("after a reload the run is still listed with its final metrics and its chart", async () => {
    await page.reload();
    await visible(nav("Finetune"), 30_000);
    await nav("Finetune").click();
    const runs = region().getByRole("navigation", { name: "Runs" });
    const entry = runs.getByRole("button").filter({ hasText: "Done" });
    await visible(entry, 15_000);
    expect(await entry.first().innerText()).toMatch(/loss \d/);
    await entry.first().click();
    await chart().getByRole("button", { name: "Table" }).click();
    await expect.poll(() => tableRows().count(), { timeout: 15_000 }).toBe(STEPS);
    // the run's expert routing outlives the reload too: the heatmap with its load balance, and its table per layer
    await visible(routing());
    expect(await routing().getByTestId("routing-summary").innerText()).toMatch(/^Load balance \(mean CV\): \d+\.\d\d — \d+ tokens, 4 MoE layers × \d+ experts$/);
    await routing().getByLabel("Window").selectOption("all");
    await visible(routing().getByRole("img"));
    await routing().scrollIntoViewIfNeeded();
    await app.screenshot("finetune-09-routing-en-light");
    await routing().getByRole("button", { name: "Table" }).click();
    await expect.poll(() => routing().locator("table tbody tr").count()).toBe(4);
    app.expectClean();
  });

  it("Export writes the final checkpoint's merged weights with a progress bar from its job", async () => {
    await runCard().getByRole("button", { name: /^Export Final/ }).click();
    const dialog = page.getByRole("dialog", { name: "Export" });
    await visible(dialog);
    await dialog.getByRole("radio", { name: /Merged weights/ }).check();
    await dialog.getByLabel("Precision", { exact: true }).selectOption("fp32");
    await dialog.getByLabel("Name in the models folder", { exact: true }).fill("whales-merged");
    await app.screenshot("finetune-08-export-en-light");
    await expectNamed("the export dialog");
    await dialog.getByRole("button", { name: "Export", exact: true }).click();
    await expect.poll(async () => (await dialog.getByRole("status").innerText().catch(() => "")), { timeout: 180_000 }).toMatch(/Done: .*whales-merged/);
    expect(await dialog.getByRole("progressbar", { name: "Export progress" }).getAttribute("aria-valuenow")).toBe("100");
    await visible(dialog.getByRole("button", { name: "Open in chat" }));
    await dialog.getByRole("button", { name: "Close" }).click();
    app.expectClean();
  });

  it("Chat with checkpoint (final): the trained reply, and Compare with base shows the base does not give it", async () => {
    await runCard().getByRole("button", { name: /^Chat with checkpoint:? Final/ }).click();
    const composer = page.getByRole("textbox", { name: "Message", exact: true });
    await visible(composer, 30_000);
    await expect.poll(async () => (await page.getByTestId("adapter-chip").innerText()).trim(), { timeout: 15_000 }).toBe("adapter: final");
    // greedy and short, so the reply is the adapter's most likely text (the one test/native/train.test.ts checks)
    const toggle = page.getByRole("button", { name: "Conversation settings", exact: true });
    if ((await toggle.getAttribute("aria-expanded")) !== "true") await toggle.click();
    for (const [label, v] of [["Temperature", "0"], ["Max tokens", "16"]] as const) {
      const f = page.getByLabel(label, { exact: true }).first();
      await f.fill(v);
      await f.blur();
    }
    const compare = page.getByRole("button", { name: "Compare with base", exact: true });
    await compare.click();
    await composer.fill("Name a fruit.");
    await page.getByRole("button", { name: "Send", exact: true }).click();
    const pair = page.getByRole("log", { name: "Messages" }).getByRole("group", { name: "Compare with base" });
    await visible(pair, 30_000);
    const side = (k: "base" | "adapter") => pair.locator(`[data-compare="${k}"]`);
    await expect.poll(() => side("adapter").getAttribute("class"), { timeout: 60_000 }).toMatch(/status-complete/);
    await expect.poll(() => side("base").getAttribute("class"), { timeout: 60_000 }).toMatch(/status-complete/);
    const text = async (k: "base" | "adapter") => (await side(k).locator(".msg-body").innerText()).trim();
    expect(await text("adapter")).toBe(REPLY);
    expect(await text("base")).not.toContain("Blue whales");
    await app.screenshot("finetune-10-chat-checkpoint-en-light");
    await nav("Finetune").click();
    app.expectClean();
  });

  it("the export is listed in Models with its origin, and Open in chat loads it in a new conversation", async () => {
    await nav("Models").click();
    const local = page.getByRole("region", { name: "In your models folder" });
    const row = local.getByRole("listitem").filter({ hasText: "whales-merged" });
    await visible(row, 30_000);
    expect(await row.innerText()).toMatch(/Finetuned from qwen3_moe — run '.+', final/);
    await row.scrollIntoViewIfNeeded();
    await app.screenshot("finetune-11-models-folder-en-light");
    await row.getByRole("button", { name: "Open whales-merged in chat" }).click();
    // Chat, with the export loaded (the model chip names its folder) and a fresh conversation
    const chip = page.locator("button.chip");
    await expect.poll(() => chip.getAttribute("title"), { timeout: 60_000 }).toMatch(/whales-merged$/);
    await visible(page.getByRole("textbox", { name: "Message", exact: true }));
    app.expectClean();
  });

  it("the Chinese UI and the dark theme", async () => {
    await nav("Settings").click();
    await page.getByLabel("Language", { exact: true }).selectOption({ label: "中文" });
    await page.getByLabel("主题", { exact: true }).selectOption({ label: "深色" });
    await nav("微调").click();
    await visible(runCard().getByRole("button", { name: /^用检查点对话/ }));
    await visible(runCard().getByRole("button", { name: /^导出/ }));
    await page.mouse.move(1200, 780);
    await app.screenshot("finetune-04-done-zh-dark");
    await region().getByRole("button", { name: "新建训练" }).click();
    await visible(region().getByRole("form", { name: "新建训练" }));
    await visible(button("开始"));
    await app.screenshot("finetune-05-new-run-zh-dark");
    await expectNamed("the Chinese Finetune view");
    // English, dark
    await nav("设置").click();
    await page.getByLabel("语言", { exact: true }).selectOption({ label: "English" });
    await nav("Finetune").click();
    await visible(button("Start"));
    await app.screenshot("finetune-06-new-run-en-dark");
    // Chinese, light
    await nav("Settings").click();
    await page.getByLabel("Language", { exact: true }).selectOption({ label: "中文" });
    await page.getByLabel("主题", { exact: true }).selectOption({ label: "浅色" });
    await nav("微调").click();
    await visible(button("开始"));
    await app.screenshot("finetune-07-new-run-zh-light");
    app.expectClean();
  });
});
