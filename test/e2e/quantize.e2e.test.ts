// The model card's Quantize action, end to end in Chromium against `moe-studio serve`: open a model, export it as a
// GGUF file into the app's models folder with progress, see the comparison, find the file on disk (a real GGUF);
// quantize it to a model folder and see memory, tokens/s, KL and top-1 of both; cancel a longer export midway;
// a taken name gets a clear message; an export cut off by a crash of the app is listed as interrupted at the next
// start and Retry finishes it. Screenshots go to test/artifacts/e2e/.
import { existsSync, openSync, readdirSync, readSync, closeSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error plain ESM helper shared with check_gguf.py
import { makeLargeLlama } from "../fixtures/gguf/make_models.mjs";
import { type App, chromiumAvailable, fixtureModel, freshDir, openApp, type Serve, startServe } from "./harness.js";

const run = chromiumAvailable();

describe.runIf(run)("quantize and export, end to end in Chromium", () => {
  let serve: Serve;
  let app: App;
  let page: Page;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = freshDir("quantize-data");
    serve = await startServe({ model: fixtureModel("qwen3"), dataDir });
    app = await openApp(serve.url);
    page = app.page;
  });

  afterAll(async () => {
    await app?.close();
    await serve?.stop("serve-quantize.log");
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const button = (name: string) => page.getByRole("button", { name, exact: true });
  const visible = (l: ReturnType<Page["getByText"]>, timeout = 30_000) => l.first().waitFor({ state: "visible", timeout });
  /** Opens the model card's Quantize panel unless it is open (the button reports it with aria-expanded). */
  async function openPanel() {
    const b = page.getByRole("region", { name: "Current model" }).getByRole("button", { name: "Quantize…" });
    await b.waitFor({ state: "visible" });
    if ((await b.getAttribute("aria-expanded")) !== "true") await b.click();
    return page.getByRole("region", { name: "Quantize and export" });
  }

  it("exports the loaded model as a GGUF file with progress and a size comparison", async () => {
    await page.getByRole("navigation", { name: "Main" }).getByRole("button", { name: "Models", exact: true }).click();
    const card = page.getByRole("region", { name: "Current model" });
    await visible(card.getByText("qwen3", { exact: true }), 60_000);
    await card.getByRole("button", { name: "Quantize…" }).click();
    const panel = page.getByRole("region", { name: "Quantize and export" });
    await visible(panel.getByText("Output"));
    await panel.getByRole("combobox", { name: "Output" }).selectOption("gguf");
    await panel.getByRole("combobox", { name: "Format" }).selectOption("f16");
    const name = panel.getByRole("textbox", { name: "Name in the models folder" });
    expect(await name.inputValue()).toBe("qwen3-f16");
    await visible(panel.getByText(`Written to ${join(dataDir, "models")}`));
    await app.screenshot("20-quantize-panel");
    await panel.getByRole("button", { name: "Start" }).click();

    const out = join(dataDir, "models", "qwen3-f16.gguf");
    await visible(panel.getByText(`Done: ${out}`), 60_000);
    const table = panel.getByRole("table", { name: "Comparison" });
    await visible(table.getByText("File size"));
    // f16 of an f32 checkpoint: about half the bytes
    await expect.poll(() => table.innerText()).toMatch(/\((4\d|5\d)%\)/);
    await visible(panel.getByText(/GGUF files run in llama\.cpp/));
    await app.screenshot("21-quantize-done");

    expect(existsSync(out)).toBe(true);
    const fd = openSync(out, "r");
    const magic = Buffer.alloc(4);
    readSync(fd, magic, 0, 4, 0);
    closeSync(fd);
    expect(magic.toString("ascii")).toBe("GGUF");
    app.expectClean();
  });

  it("quantizes to a model folder the engine runs and compares memory, speed and accuracy", async () => {
    const panel = page.getByRole("region", { name: "Quantize and export" });
    await panel.getByRole("button", { name: "Start another" }).click();
    await panel.getByRole("combobox", { name: "Output" }).selectOption("model");
    await panel.getByRole("combobox", { name: "Format" }).selectOption("q8_0");
    expect(await panel.getByRole("textbox", { name: "Name in the models folder" }).inputValue()).toBe("qwen3-q8_0");
    await panel.getByRole("button", { name: "Start" }).click();
    const out = join(dataDir, "models", "qwen3-q8_0");
    await visible(panel.getByText(`Done: ${out}`), 180_000);
    const table = panel.getByRole("table", { name: "Comparison" });
    await expect.poll(() => table.innerText()).toMatch(/KL \d\.\d\de[-+]\d, top-1 \d+\.\d%/);
    await expect.poll(() => table.innerText()).toMatch(/Decode tokens\/s\s+\d+\.\d\s+\d+\.\d/);
    await app.screenshot("22-quantize-model-done");
    expect(existsSync(join(out, "config.json"))).toBe(true);
    // the quantized folder opens in the engine like any model
    await panel.getByRole("button", { name: "Open the quantized model" }).click();
    await visible(page.getByRole("region", { name: "Current model" }).getByText("qwen3-q8_0", { exact: true }), 60_000);
    app.expectClean();
    await page.getByRole("textbox", { name: "Model folder path" }).fill(fixtureModel("qwen3"));
    await button("Open").click();
    await visible(page.getByRole("region", { name: "Current model" }).getByText("qwen3", { exact: true }), 60_000);
  });

  it("Cancel during an export stops it and says nothing was written", async () => {
    // a 40M-parameter model: its Q8_0 export takes seconds, long enough to press Cancel midway
    const big = makeLargeLlama(join(dataDir, "src", "large_llama"));
    await page.getByRole("textbox", { name: "Model folder path" }).fill(big);
    await button("Open").click();
    const card = page.getByRole("region", { name: "Current model" });
    await visible(card.getByText("large_llama", { exact: true }), 120_000);
    const panel = await openPanel();
    await panel.getByRole("combobox", { name: "Output" }).selectOption("gguf");
    await panel.getByRole("combobox", { name: "Format" }).selectOption("q8_0");
    await panel.getByRole("button", { name: "Start" }).click();
    const bar = panel.getByRole("progressbar", { name: "Quantize progress" });
    await visible(bar);
    await expect.poll(async () => Number(await bar.getAttribute("aria-valuenow")), { timeout: 60_000 }).toBeGreaterThan(0);
    await app.screenshot("23-quantize-progress");
    await panel.getByRole("button", { name: "Cancel" }).click();
    await visible(panel.getByText("Cancelled. Nothing was written."), 60_000);
    expect(readdirSync(join(dataDir, "models")).filter((f) => f.startsWith("large_llama"))).toEqual([]);
    app.expectClean();
    // back to the small model for the next step
    await page.getByRole("textbox", { name: "Model folder path" }).fill(fixtureModel("qwen3"));
    await button("Open").click();
    await visible(card.getByText("qwen3", { exact: true }), 60_000);
  });

  it("a name that is taken gets a clear message and leaves the file as it was", async () => {
    const panel = await openPanel();
    await panel.getByRole("combobox", { name: "Format" }).selectOption("f16");
    await panel.getByRole("button", { name: "Start" }).click();
    await visible(panel.getByRole("alert").getByText(/qwen3-f16\.gguf already exists; choose another name/));
    await app.screenshot("24-quantize-name-taken");
    // the call failed with a clear error, which the page shows: nothing else may have gone wrong
    app.expectClean([/quantize/i]);
    expect(button("Quantize…")).toBeTruthy();
  });

  it("the activity indicator counts the running export; its panel lists it with progress and cancels it", async () => {
    const big = join(dataDir, "src", "large_llama"); // written by the Cancel test above
    await page.getByRole("textbox", { name: "Model folder path" }).fill(big);
    await button("Open").click();
    const card = page.getByRole("region", { name: "Current model" });
    await visible(card.getByText("large_llama", { exact: true }), 120_000);
    const panel = await openPanel();
    await panel.getByRole("combobox", { name: "Output" }).selectOption("gguf");
    await panel.getByRole("combobox", { name: "Format" }).selectOption("q8_0");
    await panel.getByRole("button", { name: "Start" }).click();

    const activity = page.getByRole("navigation", { name: "Main" }).getByRole("button", { name: "Activity", exact: true });
    await expect.poll(() => activity.innerText(), { timeout: 30_000 }).toMatch(/1/);
    await activity.click();
    const dialog = page.getByRole("dialog", { name: "Activity" });
    // the Cancel test above left its cancelled export of the same name in the list; the newest is on top
    const rows = dialog.getByRole("listitem", { name: "Export large_llama-q8_0.gguf (GGUF Q8_0)" });
    const row = rows.first();
    await visible(row.getByText("Running"));
    const before = await rows.count();
    expect(before).toBe(2);
    const bar = row.getByRole("progressbar");
    await expect.poll(async () => Number((await bar.getAttribute("aria-valuenow")) ?? 0), { timeout: 60_000 }).toBeGreaterThan(0);
    await app.screenshot("26-activity-panel");
    // an export cannot pause: only Cancel is offered while it runs
    expect(await row.getByRole("button", { name: "Pause" }).count()).toBe(0);
    await row.getByRole("button", { name: "Cancel", exact: true }).click();
    await visible(row.getByText("Cancelled"), 60_000);
    // the view reads the same job: the Quantize panel says so too, and nothing was written
    await visible(panel.getByText("Cancelled. Nothing was written."));
    expect(readdirSync(join(dataDir, "models")).filter((f) => f.startsWith("large_llama"))).toEqual([]);
    await expect.poll(() => activity.innerText()).not.toMatch(/\d/);
    // Remove forgets it
    await row.getByRole("button", { name: "Remove", exact: true }).click();
    await expect.poll(() => rows.count()).toBe(before - 1);
    await app.screenshot("27-activity-cancelled");
    app.expectClean();
    await page.keyboard.press("Escape");
    await page.getByRole("textbox", { name: "Model folder path" }).fill(fixtureModel("qwen3"));
    await button("Open").click();
    await visible(card.getByText("qwen3", { exact: true }), 60_000);
  });
});

describe.runIf(run)("a quantize job cut off by a crash, end to end in Chromium", () => {
  let dataDir: string;
  const servers: Serve[] = [];
  const apps: App[] = [];

  beforeAll(() => {
    dataDir = freshDir("quantize-crash-data");
  });
  afterAll(async () => {
    for (const a of apps) await a.close().catch(() => undefined);
    for (const [i, s] of servers.entries()) await s.stop(`serve-quantize-crash-${i}.log`);
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  async function start(model: string) {
    const serve = await startServe({ model, dataDir });
    servers.push(serve);
    const app = await openApp(serve.url);
    apps.push(app);
    const page = app.page;
    await page.getByRole("navigation", { name: "Main" }).getByRole("button", { name: "Models", exact: true }).click();
    const card = page.getByRole("region", { name: "Current model" });
    await card.getByText("large_llama", { exact: true }).first().waitFor({ state: "visible", timeout: 120_000 });
    await card.getByRole("button", { name: "Quantize…" }).click();
    return { serve, app, page, panel: page.getByRole("region", { name: "Quantize and export" }) };
  }

  it("after the app is killed mid-export, the next start lists the job as interrupted, nothing partial is left, and Retry finishes it", async () => {
    const big = makeLargeLlama(join(dataDir, "src", "large_llama"));
    const first = await start(big);
    await first.panel.getByRole("combobox", { name: "Output" }).selectOption("gguf");
    await first.panel.getByRole("combobox", { name: "Format" }).selectOption("q8_0");
    await first.panel.getByRole("button", { name: "Start" }).click();
    const bar = first.panel.getByRole("progressbar", { name: "Quantize progress" });
    await expect.poll(async () => Number((await bar.getAttribute("aria-valuenow").catch(() => "0")) ?? 0), { timeout: 60_000 }).toBeGreaterThan(0);
    // a crash of the whole app: the server, its engine worker and the export's CLI process die at once (SIGKILL)
    const victims = [first.serve.pid, ...first.serve.children(/./)];
    expect(first.serve.children(/export-gguf/)).toHaveLength(1);
    for (const pid of victims) process.kill(pid, "SIGKILL");
    await first.app.close();
    const models = join(dataDir, "models");
    expect(readdirSync(models).some((f) => /^large_llama-q8_0\.gguf\.tmp-\d+-\d+$/.test(f))).toBe(true); // what the crash left

    const second = await start(big);
    const row = second.panel.getByRole("list", { name: "Interrupted jobs" }).getByRole("status");
    await row.getByText(/Export large_llama-q8_0\.gguf \(GGUF Q8_0\) was interrupted at \d+%: MoE Studio stopped while it was running/).waitFor({ state: "visible", timeout: 30_000 });
    await row.first().scrollIntoViewIfNeeded();
    await second.app.screenshot("25-quantize-interrupted");
    expect(readdirSync(models)).toEqual([]); // the dead export's temporary file was swept at start
    await second.panel.getByRole("button", { name: "Retry Export large_llama-q8_0.gguf (GGUF Q8_0)" }).click();
    await second.panel.getByText(`Done: ${join(models, "large_llama-q8_0.gguf")}`).waitFor({ state: "visible", timeout: 120_000 });
    expect(await second.panel.getByRole("list", { name: "Interrupted jobs" }).count()).toBe(0);
    expect(readdirSync(models).sort()).toEqual(["large_llama-q8_0.gguf", "large_llama-q8_0.gguf.moe-studio.json"]); // the file and its origin
    second.app.expectClean();
  });
});

