// Chat with a checkpoint, in Chromium against `moe-studio serve`: a conversation created the way the Finetune view
// creates one (conversations.create { title, modelDir, adapterDir }, here over the server's WebSocket) shows its
// adapter's folder name in the header, and with "Compare with base" on, one message gets two replies side by side,
// the base's and the adapter's, which are still there after a reload. Screenshot: test/artifacts/e2e/adapter-compare.png.
// (The adapter is copied to a run folder as checkpoint-200: serve lets the browser name only allowed folders.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Page } from "playwright-core";
import { cpSync } from "node:fs";
import { join } from "node:path";
import WebSocket from "ws";
import { type App, ROOT, chromiumAvailable, fixtureModel, freshDir, openApp, type Serve, startServe } from "./harness.js";

const run = chromiumAvailable();
const FIXTURE_ADAPTER = join(ROOT, "test/fixtures/goldens/train/qwen3_moe/adapter");

/** One contract call over the server's WebSocket, as the renderer makes it. */
async function wsCall(serve: Serve, name: string, input: unknown): Promise<unknown> {
  const u = new URL(serve.url);
  const ws = new WebSocket(`ws://${u.host}/api`, { origin: u.origin, headers: { authorization: `Bearer ${serve.token}` } });
  await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
  try {
    return await new Promise((resolve, reject) => {
      ws.on("message", (d) => {
        const m = JSON.parse(d.toString()) as { t: string; id?: number; ok?: boolean; output?: unknown; error?: { message: string } };
        if (m.t !== "result" || m.id !== 1) return;
        if (m.ok) resolve(m.output);
        else reject(new Error(m.error?.message));
      });
      ws.send(JSON.stringify({ t: "call", id: 1, name, input }));
    });
  } finally {
    ws.close();
  }
}

describe.runIf(run)("chat with a checkpoint, end to end in Chromium", () => {
  let serve: Serve;
  let app: App;
  let page: Page;
  let model: string;
  let adapter: string;

  beforeAll(async () => {
    model = fixtureModel("qwen3_moe");
    // where a run keeps its checkpoints (in the scratch folder serve is allowed to read, as a user's run folder is)
    adapter = join(freshDir("run"), "checkpoint-200");
    cpSync(FIXTURE_ADAPTER, adapter, { recursive: true });
    serve = await startServe({ model });
    app = await openApp(serve.url);
    page = app.page;
  });

  afterAll(async () => {
    await app?.close();
    await serve?.stop("serve-adapter.log");
  });

  it("the header names the adapter; Compare with base shows the base's and the adapter's reply side by side", async () => {
    const conv = (await wsCall(serve, "conversations.create", { title: "Checkpoint 200", modelDir: model, adapterDir: adapter })) as { id: string };
    await wsCall(serve, "conversations.update", { id: conv.id, sampling: { temperature: 0, maxTokens: 8 } });
    await page.reload();
    await page.locator("button.conv-open", { hasText: "Checkpoint 200" }).click();
    const chip = page.getByTestId("adapter-chip");
    await chip.waitFor({ state: "visible", timeout: 15_000 });
    expect((await chip.innerText()).trim()).toBe("adapter: checkpoint-200");

    const compare = page.getByRole("button", { name: "Compare with base", exact: true });
    await compare.click();
    expect(await compare.getAttribute("aria-pressed")).toBe("true");
    await page.getByRole("textbox", { name: "Message", exact: true }).fill("Tell me about the sea.");
    await page.getByRole("button", { name: "Send", exact: true }).click();

    const log = page.getByRole("log", { name: "Messages" });
    const pair = log.getByRole("group", { name: "Compare with base" });
    await pair.waitFor({ state: "visible", timeout: 30_000 });
    const base = pair.locator('[data-compare="base"]');
    const adapted = pair.locator('[data-compare="adapter"]');
    await expect.poll(() => adapted.getAttribute("class"), { timeout: 60_000 }).toMatch(/status-complete/);
    expect(await base.getAttribute("class")).toMatch(/status-complete/);
    expect(await base.getAttribute("aria-label")).toBe("Base model");
    expect(await adapted.getAttribute("aria-label")).toBe("With checkpoint-200");
    // the fixture adapter changes the greedy reply: the two sides really ran differently
    const text = async (l: typeof base) => (await l.locator(".msg-body").innerText()).trim();
    expect(await text(adapted)).not.toBe(await text(base));
    // side by side: the two replies start at the same height
    const [a, b] = [await base.boundingBox(), await adapted.boundingBox()];
    expect(a && b && Math.abs(a.y - b.y) < 2 && b.x > a.x).toBe(true);
    await app.screenshot("adapter-compare");

    await page.reload();
    await page.locator("button.conv-open", { hasText: "Checkpoint 200" }).click();
    await log.getByRole("group", { name: "Compare with base" }).waitFor({ state: "visible", timeout: 15_000 });
    app.expectClean();
  });

  it("an adapter trained elsewhere is imported in Models, listed with its base, opens in chat on it, and exports merged", async () => {
    // as a cluster's LLaMA-Factory run leaves it: saves/<run>/ with the PEFT files (in the scratch folder serve may read)
    const returned = join(freshDir("cluster"), "saves", "sailors");
    cpSync(FIXTURE_ADAPTER, returned, { recursive: true });
    await page.getByRole("navigation", { name: "Main" }).getByRole("button", { name: "Models", exact: true }).click();
    const form = page.getByRole("form", { name: "Import an adapter trained elsewhere" });
    await form.getByLabel("Adapter folder", { exact: true }).fill(returned);
    expect(await form.getByLabel("Base model folder", { exact: true }).inputValue()).toBe(model); // the loaded model
    await form.getByRole("button", { name: "Import", exact: true }).click();
    await expect.poll(() => form.getByRole("status").innerText(), { timeout: 60_000 }).toBe("Imported sailors: open it below to chat with it.");
    const row = page.locator(".local-list li", { hasText: "sailors" });
    await expect.poll(() => row.innerText()).toMatch(/trained on a cluster, for qwen3_moe/);
    await app.screenshot("adapter-imported");
    await row.getByRole("button", { name: "Open sailors" }).click();
    const chip = page.getByTestId("adapter-chip");
    await chip.waitFor({ state: "visible", timeout: 15_000 });
    expect((await chip.innerText()).trim()).toBe("adapter: sailors");
    // and its merged weights, as an export job (folded on the base it recorded), listed when the job is done
    await page.getByRole("navigation", { name: "Main" }).getByRole("button", { name: "Models", exact: true }).click();
    await row.getByRole("button", { name: "Export sailors merged" }).click();
    const merge = row.getByRole("form", { name: "Export sailors merged" });
    await merge.getByLabel("Precision", { exact: true }).selectOption("fp32");
    await merge.getByRole("button", { name: "Start export" }).click();
    const merged = page.locator(".local-list li", { hasText: "sailors-merged" });
    await expect.poll(async () => (await merged.count()) ? merged.innerText() : "", { timeout: 120_000 }).toMatch(/Model[\s\S]*merged fp32 of an adapter trained on a cluster, for qwen3_moe/);
    // one made for another model is refused with the engine's reason
    const foreign = join(freshDir("foreign"), "llama-adapter");
    cpSync(join(ROOT, "test/fixtures/goldens/train/llama/adapter"), foreign, { recursive: true });
    await form.getByLabel("Adapter folder", { exact: true }).fill(foreign);
    await form.getByRole("button", { name: "Import", exact: true }).click();
    await expect.poll(() => form.getByRole("alert").innerText(), { timeout: 60_000 }).toMatch(/has no place for/);
    app.expectClean();
  });
});
