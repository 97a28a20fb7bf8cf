// The end-to-end scenario, in Debian's Chromium against `moe-studio serve` with a fixture model (random
// weights: gibberish, fast): new chat, system prompt, send, tokens stream, Stop mid-reply, Regenerate, edit and
// resend, kill the engine worker mid-reply and send again, the Models view (a model card; a bad folder), Chinese,
// dark theme, reload with the conversation intact. Screenshots of each view go to test/artifacts/e2e/.
// The steps share one server and one page and run in order; each leaves the app where the next one starts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Locator, Page } from "playwright-core";
import { type App, chromiumAvailable, fixtureModel, longReplyModel, openApp, resetArtifacts, type Serve, startServe } from "./harness.js";

const run = chromiumAvailable();
const LONG = 20_000; // max tokens for a reply that must still be streaming when we act on it
const SHORT = 12; // max tokens for a reply we want finished quickly

describe.runIf(run)("chat, end to end in Chromium", () => {
  let serve: Serve;
  let app: App;
  let page: Page;
  let model: string;

  beforeAll(async () => {
    resetArtifacts();
    model = longReplyModel("qwen3_moe");
    serve = await startServe({ model });
    app = await openApp(serve.url);
    page = app.page;
  });

  afterAll(async () => {
    await app?.close();
    await serve?.stop();
  });

  // ---------- locators by accessible name (the same names screen readers get) ----------
  const composer = () => page.getByRole("textbox", { name: "Message", exact: true });
  const log = () => page.getByRole("log", { name: "Messages" });
  const button = (name: string) => page.getByRole("button", { name, exact: true });
  const nav = (name: string) =>
    page.getByRole("navigation").getByRole("button", { name, exact: true })
      .or(page.getByRole("navigation").getByRole("link", { name, exact: true }))
      .or(page.getByRole("navigation").getByRole("tab", { name, exact: true }))
      .first();
  /** Message bubbles in the log, in order, by role ("user" | "assistant"). */
  const bubbles = (role?: "user" | "assistant"): Locator =>
    log().locator(role ? `[data-role="${role}"]` : "[data-role]");
  const lastReply = () => bubbles("assistant").last();
  const replyText = async () => (await lastReply().innerText()).trim();

  /** Opens the conversation settings if its fields are not shown, and returns a field by label. */
  async function setting(label: string): Promise<Locator> {
    const field = page.getByLabel(label, { exact: true }).first();
    if (!(await field.isVisible())) await button("Conversation settings").click();
    await field.waitFor({ state: "visible" });
    return field;
  }

  async function setMaxTokens(n: number) {
    const f = await setting("Max tokens");
    await f.fill(String(n));
    await f.blur();
    // saved: reopening the conversation is checked after the reload step; here the field keeps the value
    await expect.poll(() => f.inputValue()).toBe(String(n));
  }

  async function send(text: string) {
    await composer().fill(text);
    await button("Send").click();
  }

  /** Waits until the reply streams: its text grows between two reads. */
  async function expectStreaming() {
    await expect.poll(async () => (await replyText()).length, { timeout: 30_000 }).toBeGreaterThan(0);
    const first = (await replyText()).length;
    await expect.poll(async () => (await replyText()).length, { timeout: 30_000 }).toBeGreaterThan(first);
  }

  /** Waits until no reply is running: Send is back and Stop is gone. */
  async function expectIdle(timeout = 60_000) {
    await expect(button("Stop")).toHaveCount(0, { timeout });
    await expect(button("Send")).toBeVisible({ timeout });
  }

  it("loads the app without console, page, CSP or network errors, under a strict CSP", async () => {
    await expect(composer()).toBeVisible({ timeout: 30_000 });
    await expect(log()).toBeAttached();
    const csp = await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute("content").catch(() => null);
    const header = (await page.request.get(serve.url)).headers()["content-security-policy"];
    const policy = header ?? csp ?? "";
    expect(policy, "a Content-Security-Policy header or meta tag").toMatch(/default-src 'self'/);
    expect(policy).not.toMatch(/unsafe-eval/);
    expect(policy).not.toMatch(/script-src[^;]*unsafe-inline/);
    await app.screenshot("01-chat-start");
    app.expectClean();
  });

  it("new chat with a system prompt: the reply streams token by token, and Stop ends it mid-reply", async () => {
    await button("New chat").click();
    const system = await setting("System prompt");
    await system.fill("You are a pirate. Answer in one short sentence.");
    await system.blur();
    await setMaxTokens(LONG);
    await app.screenshot("02-conversation-settings");

    await send("Hello! What is a mixture of experts?");
    await expect(bubbles("user").last()).toContainText("What is a mixture of experts?");
    await expect(button("Stop")).toBeVisible({ timeout: 30_000 });
    await expectStreaming();
    await app.screenshot("03-streaming");

    await button("Stop").click();
    await expectIdle();
    const stopped = await replyText();
    expect(stopped.length).toBeGreaterThan(0);
    await expect(lastReply()).toContainText("Stopped");
    // it really stopped: nothing more arrives
    await page.waitForTimeout(300);
    expect(await replyText()).toBe(stopped);
    await app.screenshot("04-stopped");
    app.expectClean();
  });

  it("Regenerate replaces the last reply", async () => {
    await setMaxTokens(SHORT);
    const before = await replyText();
    await button("Regenerate").click();
    await expectIdle();
    await expect.poll(replyText, { timeout: 30_000 }).not.toBe(before);
    await expect(bubbles("assistant")).toHaveCount(1);
    await expect(bubbles("user")).toHaveCount(1);
    app.expectClean();
  });

  it("editing a sent user message resends it and replaces the later turns", async () => {
    await send("A second question that the edit will remove.");
    await expectIdle();
    await expect(bubbles("user")).toHaveCount(2);
    await expect(bubbles("assistant")).toHaveCount(2);

    const first = bubbles("user").first();
    await first.hover();
    await first.getByRole("button", { name: "Edit", exact: true }).click();
    const editor = first.getByRole("textbox");
    await editor.fill("Edited: tell me about routers.");
    await first.getByRole("button", { name: "Save and resend", exact: true }).click();

    await expectIdle();
    await expect(bubbles("user")).toHaveCount(1);
    await expect(bubbles("assistant")).toHaveCount(1);
    await expect(bubbles("user").first()).toContainText("Edited: tell me about routers.");
    await expect(log()).not.toContainText("A second question");
    await expect.poll(async () => (await replyText()).length, { timeout: 30_000 }).toBeGreaterThan(0);
    await app.screenshot("05-edited-and-resent");
    app.expectClean();
  });

  it("killing the engine worker mid-reply shows the error, and the next message works", async () => {
    await setMaxTokens(LONG);
    await send("Tell me a very long story.");
    await expectStreaming();
    const workers = serve.children();
    expect(workers.length, `engine worker under serve pid ${serve.pid}`).toBe(1);
    process.kill(workers[0], "SIGKILL");

    await expectIdle();
    // the user sees what happened (the failed reply, and/or a banner), in words, not a stack trace
    await expect(page.getByText(/engine (worker )?(exited|stopped)|worker exited/i).first()).toBeVisible({ timeout: 30_000 });
    await expect(page.getByText(/\n\s+at .+:\d+:\d+/)).toHaveCount(0);
    await app.screenshot("06-engine-killed");

    await setMaxTokens(SHORT);
    await send("Are you back?");
    await expectIdle();
    await expect.poll(async () => (await replyText()).length, { timeout: 60_000 }).toBeGreaterThan(0);
    await expect(lastReply()).not.toContainText(/exited|error/i);
    // a new worker, not the killed one
    expect(serve.children()).not.toContain(workers[0]);
    await app.screenshot("07-after-restart");
    // the failed request may be logged by the page once; nothing else may be
    app.expectClean([/engine worker exited|engine/i]);
  });

  it("Models view: a model folder opened by path shows its card; a bad folder a clear message", async () => {
    await nav("Models").click();
    const path = page.getByRole("textbox", { name: "Model folder path" });
    await path.fill(fixtureModel("olmoe"));
    await button("Open").click();
    const main = page.getByRole("main");
    await expect(main.getByText("olmoe").first()).toBeVisible({ timeout: 60_000 });
    for (const label of ["Architecture", "Experts", "Context length", "Estimated memory", "Device"]) {
      await expect(main.getByText(label, { exact: true }).first()).toBeVisible();
    }
    await app.screenshot("08-models-card");

    await path.fill(fixtureModel("does-not-exist"));
    await button("Open").click();
    await expect(page.getByText("This folder is not a model MoE Studio can load").first()).toBeVisible({ timeout: 30_000 });
    await expect(page.getByText(/\n\s+at .+:\d+:\d+/)).toHaveCount(0);
    await app.screenshot("09-models-bad-folder");
    app.expectClean([/not a model|does-not-exist|no such file|config\.json/i]);
  });

  it("switching to Chinese relabels the UI; the dark theme applies", async () => {
    await nav("Settings").click();
    await app.screenshot("10-settings");
    await page.getByLabel("Language", { exact: true }).selectOption({ label: "中文" });
    await expect(nav("设置")).toBeVisible();
    await expect(nav("Settings")).toHaveCount(0);
    await page.getByLabel("主题", { exact: true }).selectOption({ label: "深色" }).catch(async () => {
      await page.getByRole("radio", { name: "深色" }).check();
    });
    await app.screenshot("11-settings-zh-dark");
    await nav("对话").click();
    await expect(page.getByRole("button", { name: "发送", exact: true })).toBeVisible();
    await expect(page.getByRole("button", { name: "新对话", exact: true })).toBeVisible();
    await app.screenshot("12-chat-zh-dark");
    app.expectClean();
  });

  it("after a reload the conversation, its settings and the language are intact", async () => {
    const userText = await bubbles("user").allInnerTexts();
    const replies = await bubbles("assistant").allInnerTexts();
    await page.reload();
    await expect(page.getByRole("textbox", { name: "消息", exact: true })).toBeVisible({ timeout: 30_000 });
    const zhLog = page.getByRole("log").first();
    await expect.poll(() => zhLog.locator("[data-role]").count(), { timeout: 30_000 }).toBe(userText.length + replies.length);
    expect(await zhLog.locator('[data-role="user"]').allInnerTexts()).toEqual(userText);
    const after = await zhLog.locator('[data-role="assistant"]').allInnerTexts();
    expect(after.map((t) => t.slice(0, 40))).toEqual(replies.map((t) => t.slice(0, 40)));
    await app.screenshot("13-after-reload");
    app.expectClean();
  });
});
