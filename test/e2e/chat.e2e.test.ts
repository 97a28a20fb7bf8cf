// The end-to-end scenario, in Debian's Chromium against `moe-studio serve` with a fixture model (random
// weights: gibberish, fast): new chat, system prompt, send, tokens stream, Stop mid-reply, Regenerate, edit and
// resend, kill the engine worker mid-reply and send again, the Models view (a model card; a bad folder), Chinese,
// dark theme, the API server switched on in Settings and used, reload with the conversation intact. Screenshots of each view go to test/artifacts/e2e/.
// The steps share one server and one page and run in order; each leaves the app where the next one starts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Locator, Page } from "playwright-core";
import { rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { type App, chromiumAvailable, fixtureModel, freshDir, longReplyModel, openApp, resetArtifacts, type Serve, startServe, unnamedControls } from "./harness.js";
import { freePort } from "../helpers/free-port.js";

const run = chromiumAvailable();

const LONG = 8_000; // max tokens for a reply that must still be streaming when we act on it (a session has 8192)
const SHORT = 12; // max tokens for a reply we want finished quickly

describe.runIf(run)("chat, end to end in Chromium", () => {
  let serve: Serve;
  let app: App;
  let page: Page;
  let model: string;

  beforeAll(async () => {
    resetArtifacts(/^(\d\d-.*\.png|serve(-first-start)?\.log)$/); // this suite's screenshots are numbered
    model = longReplyModel("qwen3_moe");
    serve = await startServe({ model });
    app = await openApp(serve.url);
    page = app.page;
  });

  afterAll(async () => {
    await app?.close();
    await serve?.stop();
    if (model) rmSync(dirname(model), { recursive: true, force: true });
  });

  // ---------- locators by accessible name (the same names screen readers get) ----------
  const composer = () => page.getByRole("textbox", { name: "Message", exact: true });
  const log = () => page.getByRole("log", { name: "Messages" });
  const button = (name: string) => page.getByRole("button", { name, exact: true });
  const mainNav = () => page.getByRole("navigation", { name: /^(Main|主导航)$/ });
  const nav = (name: string) =>
    mainNav().getByRole("button", { name, exact: true })
      .or(mainNav().getByRole("link", { name, exact: true }))
      .or(mainNav().getByRole("tab", { name, exact: true }))
      .first();
  /** Message bubbles in the log, in order, by role ("user" | "assistant"). */
  const bubbles = (role?: "user" | "assistant"): Locator =>
    log().locator(role ? `[data-role="${role}"]` : "[data-role]");
  const lastReply = () => bubbles("assistant").last();
  const replyText = async () => (await lastReply().innerText()).trim();

  // playwright-core has no web-first assertions (those are @playwright/test's): these wait the same way.
  const visible = (l: Locator, timeout = 15_000) => l.first().waitFor({ state: "visible", timeout });
  const count = (l: Locator, n: number, timeout = 15_000) => expect.poll(() => l.count(), { timeout }).toBe(n);

  /** Opens the conversation settings if its fields are not shown, and returns a field by label. */
  async function setting(label: string, toggle = "Conversation settings"): Promise<Locator> {
    const open = button(toggle);
    await open.waitFor({ state: "visible" });
    if ((await open.getAttribute("aria-expanded")) !== "true") await open.click();
    const field = page.getByLabel(label, { exact: true }).first();
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

  /**
   * A screenshot while tokens stream. The fixture model decodes ~1700 tokens/s; a renderer that repaints the whole
   * reply on every delta can be too busy to paint a frame: that is reported, not failed, so the scenario goes on.
   */
  async function streamingScreenshot(name: string, timeout: number) {
    const t0 = Date.now();
    try {
      await app.screenshot(name, { fullPage: false, timeout });
    } catch {
      console.warn(`e2e: ${name}: the page painted no frame for ${Date.now() - t0} ms while a reply streamed`);
    }
  }

  /** Relative luminance (0 black .. 1 white) of what is painted behind the middle of the window. */
  const backgroundLuminance = () =>
    page.evaluate(() => {
      for (let el = document.elementFromPoint(innerWidth / 2, innerHeight / 2); el; el = el.parentElement) {
        const m = getComputedStyle(el).backgroundColor.match(/[\d.]+/g)?.map(Number);
        if (!m || (m.length === 4 && m[3] === 0)) continue;
        const lin = (c: number) => ((c /= 255) <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
        return 0.2126 * lin(m[0]) + 0.7152 * lin(m[1]) + 0.0722 * lin(m[2]);
      }
      return 1; // nothing painted: the browser's white
    });

  /** Every visible control has a name a screen reader can say (text, aria-label/labelledby, title or a <label>). */
  async function expectNamedControls(view: string) {
    const unnamed = await unnamedControls(page);
    expect(unnamed, `unnamed controls in the ${view} view`).toEqual([]);
  }

  /** Error text on the page is for people: no "    at file.js:12:34" frames. */
  async function expectNoStackTrace() {
    expect(await page.locator("body").innerText()).not.toMatch(/\n\s*at \S+ \(?\S+:\d+:\d+\)?/);
  }

  /** Waits until no reply is running: Send is back and Stop is gone. */
  async function expectIdle(timeout = 60_000) {
    await count(button("Stop"), 0, timeout);
    await visible(button("Send"), timeout);
  }

  it("loads the app without console, page, CSP or network errors, under a strict CSP", async () => {
    await visible(composer(), 30_000);
    await log().waitFor({ state: "attached" });
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
    // before any reply the meter already shows the session's context (8192), not the model's maximum (32768)
    await expect.poll(() => page.getByRole("main").innerText()).toMatch(/Context 0 \/ 8,192/);
    const system = await setting("System prompt");
    await system.fill("You are a pirate. Answer in one short sentence.");
    await system.blur();
    await setMaxTokens(LONG);
    await app.screenshot("02-conversation-settings");
    await expectNamedControls("chat");

    await send("Hello! What is a mixture of experts?");
    await expect.poll(() => bubbles("user").last().innerText()).toContain("What is a mixture of experts?");
    await visible(button("Stop"), 30_000);
    await expectStreaming();
    // soon: the fixture decodes ~1700 tokens/s, so waiting longer would let the reply reach max tokens
    await streamingScreenshot("03-streaming", 2_000);
    await button("Stop").click({ timeout: 60_000 });
    await expectIdle();
    const stopped = await replyText();
    expect(stopped.length).toBeGreaterThan(0);
    await expect.poll(() => lastReply().innerText()).toContain("Stopped");
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
    await count(bubbles("assistant"), 1);
    await count(bubbles("user"), 1);
    // after a reply: its token count and speed, and the context it now uses out of the session's
    await expect.poll(() => lastReply().innerText()).toMatch(new RegExp(`\\b${SHORT} tokens\\b[\\s\\S]*tok/s`));
    await expect.poll(() => page.getByRole("main").innerText()).toMatch(/Context [1-9][\d,]* \/ 8,192\b/);
    // the model's expert routing since it loaded, in the conversation's panel: the tokens of both replies and their
    // prompts, a load-balance figure, one heatmap row per MoE layer (qwen3_moe: 4)
    const routing = page.getByRole("complementary", { name: "Conversation settings" }).locator("details").filter({ hasText: "Expert routing of this model" });
    await routing.locator("summary").click();
    const summary = routing.getByTestId("routing-summary");
    await expect.poll(() => summary.innerText(), { timeout: 15_000 }).toMatch(/^Load balance \(mean CV\): \d+\.\d\d — [1-9][\d,]* tokens, 4 MoE layers × 8 experts$/);
    const tokens = Number((await summary.innerText()).match(/— ([\d,]+) tokens/)![1].replace(/,/g, ""));
    await routing.locator("summary").click();  // closed again, as the later steps expect the panel
    expect(tokens).toBeGreaterThan(SHORT);
    app.expectClean();
  });

  it("editing a sent user message resends it and replaces the later turns", async () => {
    await send("A second question that the edit will remove.");
    await expectIdle();
    await count(bubbles("user"), 2);
    await count(bubbles("assistant"), 2);

    const first = bubbles("user").first();
    await first.hover();
    await first.getByRole("button", { name: "Edit", exact: true }).click();
    const editor = first.getByRole("textbox");
    await editor.fill("Edited: tell me about routers.");
    await first.getByRole("button", { name: "Save and resend", exact: true }).click();

    await expectIdle();
    await count(bubbles("user"), 1);
    await count(bubbles("assistant"), 1);
    await expect.poll(() => bubbles("user").first().innerText()).toContain("Edited: tell me about routers.");
    await expect.poll(() => log().innerText()).not.toMatch("A second question");
    await expect.poll(async () => (await replyText()).length, { timeout: 30_000 }).toBeGreaterThan(0);

    // Copy puts the message's text on the clipboard and says so
    await bubbles("user").first().getByRole("button", { name: "Copy", exact: true }).click();
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe("Edited: tell me about routers.");
    await visible(bubbles("user").first().getByText("Copied"));
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
    // the user sees what happened, in words, not a stack trace, once: on the reply that was cut off. The banner
    // (if the restart is still going) only says the engine is restarting, and goes by itself once it is ready.
    await visible(lastReply().getByRole("note"), 30_000);
    expect(await lastReply().getByRole("note").innerText()).toMatch(/The engine stopped unexpectedly \(signal SIGKILL\) and this reply was cut off/);
    await count(page.getByText(/stopped unexpectedly \(signal SIGKILL\)/), 1);
    await count(page.locator(".banners [role=alert]"), 0, 60_000);
    await expectNoStackTrace();
    // and whoever runs `serve` sees it in the terminal: one line when the worker died, one when it was back
    await expect.poll(() => serve.output(), { timeout: 30_000 }).toMatch(
      new RegExp(`moe-studio serve: the engine worker \\(pid ${workers[0]}\\) died \\(signal SIGKILL\\); restarting it\n(.*\n)*moe-studio serve: the engine worker is back \\(pid \\d+\\)`),
    );
    await app.screenshot("06-engine-killed");

    await setMaxTokens(SHORT);
    await send("Are you back?");
    await expectIdle();
    await expect.poll(async () => (await replyText()).length, { timeout: 60_000 }).toBeGreaterThan(0);
    await count(lastReply().getByRole("note"), 0);
    // a new worker, not the killed one
    expect(serve.children()).not.toContain(workers[0]);
    await app.screenshot("07-after-restart");
    // the failed request may be logged by the page once; nothing else may be
    app.expectClean();
  });

  it("conversations: a second chat is found by search, renamed and deleted", async () => {
    const list = page.getByRole("navigation", { name: "Conversations" });
    const items = list.getByRole("listitem");
    await count(items, 1);
    await button("New chat").click();
    await setMaxTokens(SHORT); // a new conversation starts from the model's defaults: this fixture never stops on eos
    await send("Bananas are yellow and curved.");
    await expectIdle();
    await count(items, 2);

    const search = page.getByRole("searchbox", { name: "Search conversations" });
    await search.fill("bananas");
    await count(items, 1);
    await expect.poll(() => items.first().innerText()).toMatch(/Bananas/);
    await search.fill("zqxj-nothing-like-this");
    await count(items, 0);
    await visible(list.getByText(/Nothing matches/));
    await search.fill("");
    await count(items, 2);

    await list.getByRole("button", { name: /^Rename: Bananas/ }).click();
    const title = list.getByRole("textbox", { name: "Conversation title" });
    await title.fill("Fruit facts");
    await title.press("Enter");
    await visible(list.getByRole("button", { name: "Delete: Fruit facts", exact: true }));
    await app.screenshot("08-conversations");

    await list.getByRole("button", { name: "Delete: Fruit facts", exact: true }).click();
    await list.getByRole("alertdialog").getByRole("button", { name: "Delete", exact: true }).click();
    await count(items, 1);
    await count(list.getByText("Fruit facts"), 0);
    // back to the first conversation for the steps after this one
    await items.first().getByRole("button").first().click();
    await expect.poll(() => bubbles("user").last().innerText()).toContain("Are you back?");
    app.expectClean();
  });

  it("Models view: a model folder opened by path shows its card; a bad folder a clear message", async () => {
    await nav("Models").click();
    const path = page.getByRole("textbox", { name: "Model folder path" });
    await path.fill(fixtureModel("olmoe"));
    await button("Open").click();
    const main = page.getByRole("main");
    await visible(main.getByText("olmoe").first(), 60_000);
    for (const label of ["Architecture", "Experts", "Context length", "Estimated memory", "Device"]) {
      await visible(main.getByText(label, { exact: true }).first());
    }
    await app.screenshot("09-models-card");
    await expectNamedControls("models");

    // both models are in Recent models; opening one from there switches back
    const recentQwen = button("Open qwen3_moe");
    await visible(recentQwen);
    await visible(button("Open olmoe"));
    await recentQwen.click();
    await visible(page.getByRole("region", { name: "Current model" }).getByText("qwen3_moe", { exact: true }), 60_000);

    // a folder that exists but holds no model, then one that does not exist: a clear message each time
    const notAModel = freshDir("not-a-model");
    writeFileSync(join(notAModel, "notes.txt"), "not a model\n");
    const problem = page.getByText("This folder is not a model MoE Studio can load");
    await path.fill(notAModel);
    await button("Open").click();
    await visible(problem, 30_000);
    await expect.poll(() => page.getByRole("main").innerText()).toMatch(/config\.json not found/);
    // the folder's path is said once (it was three times: the path, "<name> cannot be opened", "<path>/config.json")
    expect((await page.getByRole("alert").filter({ has: problem }).innerText()).split(notAModel).length - 1).toBe(1);
    await expectNoStackTrace();
    await path.fill(fixtureModel("does-not-exist"));
    await button("Open").click();
    await expect.poll(() => page.getByRole("main").innerText()).toMatch(/does-not-exist/);
    await visible(problem);
    await expectNoStackTrace();
    // serve reads only folders it was given: another one is refused with a message saying how to allow it
    await path.fill("/etc");
    await button("Open").click();
    await expect.poll(() => page.getByRole("main").innerText()).toMatch(/"\/etc" is outside the folders this server may read/);
    await expect.poll(() => page.getByRole("main").innerText()).toMatch(/--allow-dir/);
    await app.screenshot("10-models-bad-folder");
    // the loaded model is still the one that was loaded
    await visible(page.getByRole("region", { name: "Current model" }).getByText("qwen3_moe", { exact: true }));
    rmSync(notAModel, { recursive: true, force: true });
    app.expectClean();
  });

  it("Settings: the API server switched on answers an OpenAI request with the key it shows; switched off it is gone", async () => {
    await nav("Settings").click();
    const port = String(await freePort());
    await page.getByLabel("Port", { exact: true }).fill(port);
    // the switch shows the server's state: it turns on when the server says it runs, not on the click itself
    const toggle = page.getByRole("switch", { name: "Serve the API" });
    await toggle.click();
    await expect.poll(() => toggle.isChecked()).toBe(true);
    const base = `http://127.0.0.1:${port}/v1`;
    await expect.poll(() => page.locator(".facts code").first().innerText()).toBe(base);
    await page.getByRole("button", { name: "Show", exact: true }).click();
    const key = await page.getByTestId("api-key").innerText();
    expect(key).toMatch(/^sk-moe-/);
    const r = await fetch(`${base}/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "qwen3_moe", messages: [{ role: "user", content: "hi" }], max_tokens: 3 }) });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBeGreaterThan(0);
    expect((await fetch(`${base}/models`, { headers: { authorization: "Bearer sk-wrong-0000" } })).status).toBe(401);
    await app.screenshot("10b-settings-api");
    await toggle.click();
    await expect.poll(() => toggle.isChecked()).toBe(false);
    await count(page.locator(".facts code"), 0);
    await expect(fetch(`${base}/models`)).rejects.toThrow();
    app.expectClean();
  });

  it("Settings › Engine: the KV cache chosen is the one the next load uses, shown on the model's card", async () => {
    await nav("Settings").click();
    const kv = page.getByLabel("KV cache", { exact: true });
    await expect.poll(() => kv.inputValue()).toBe("f16"); // the app's default
    await kv.selectOption("int8");
    await nav("Models").click();
    const current = page.getByRole("region", { name: "Current model" });
    await visible(current.getByText("f16", { exact: true })); // the loaded model keeps the cache it was loaded with
    await button("Open qwen3_moe").click();
    await visible(current.getByText("int8", { exact: true }), 60_000);
    await nav("Settings").click();
    await expect.poll(() => kv.inputValue()).toBe("int8"); // saved: the settings came back from the server
    await kv.selectOption("f16");
    app.expectClean();
  });

  it("switching to Chinese relabels the UI; the dark theme applies", async () => {
    await nav("Settings").click();
    await expect.poll(() => nav("Settings").getAttribute("aria-current")).toBe("page");
    await expect.poll(() => nav("Models").getAttribute("aria-current")).toBe(null);
    await page.mouse.move(640, 700); // no hover highlight in the screenshot
    await app.screenshot("11-settings");
    await expectNamedControls("settings");
    await page.getByLabel("Language", { exact: true }).selectOption({ label: "中文" });
    await visible(nav("设置"));
    await count(nav("Settings"), 0);
    await expect.poll(() => page.evaluate(() => document.documentElement.lang)).toMatch(/^zh/);
    expect(await backgroundLuminance()).toBeGreaterThan(0.6);
    await page.getByLabel("主题", { exact: true }).selectOption({ label: "深色" });
    await expect.poll(backgroundLuminance).toBeLessThan(0.25);
    await app.screenshot("12-settings-zh-dark");
    await nav("对话").click();
    await visible(page.getByRole("button", { name: "发送", exact: true }));
    // the cut-off reply's error is in Chinese too (the server's English sentence is recognised, not shown raw)
    const zhLog = page.getByRole("log", { name: "消息", exact: true });
    await expect.poll(() => zhLog.innerText()).toMatch(/推理引擎意外停止（signal SIGKILL），这条回复被中断了/);
    expect(await zhLog.innerText()).not.toMatch(/cut off/);
    await visible(page.getByRole("button", { name: "新对话", exact: true }));
    await app.screenshot("13-chat-zh-dark");
    app.expectClean();
  });

  it("after a reload the conversation, its settings and the language are intact", async () => {
    const zhLog = page.getByRole("log", { name: "消息", exact: true });
    const userText = await zhLog.locator('[data-role="user"]').allInnerTexts();
    const replies = await zhLog.locator('[data-role="assistant"]').allInnerTexts();
    expect(userText.length).toBeGreaterThan(0);
    await page.reload();
    await visible(page.getByRole("textbox", { name: "消息", exact: true }), 30_000);
    await expect.poll(() => zhLog.locator("[data-role]").count(), { timeout: 30_000 }).toBe(userText.length + replies.length);
    // the conversation's own settings came back from SQLite, not from the page's memory
    const system = await setting("系统提示词", "对话设置");
    await expect.poll(() => system.inputValue(), { timeout: 15_000 }).toBe("You are a pirate. Answer in one short sentence.");
    expect(await (await setting("最大词元数", "对话设置")).inputValue()).toBe(String(SHORT));
    expect(await zhLog.locator('[data-role="user"]').allInnerTexts()).toEqual(userText);
    const after = await zhLog.locator('[data-role="assistant"]').allInnerTexts();
    expect(after.map((t) => t.slice(0, 40))).toEqual(replies.map((t) => t.slice(0, 40)));
    await app.screenshot("14-after-reload");
    app.expectClean();
    // and through all of it, including the killed worker, the server printed no stack trace
    expect(serve.output()).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
  });
});

// A first start on a Chinese, dark-themed system with no model yet: the UI follows the system, says what to do
// instead of failing, and a model opened from the Models view makes the chat work.
describe.runIf(run)("first start, in Chinese and dark, without a model", () => {
  let serve: Serve;
  let app: App;
  let page: Page;

  beforeAll(async () => {
    serve = await startServe(); // no --model, fresh data folder
    app = await openApp(serve.url, { locale: "zh-CN", colorScheme: "dark" });
    page = app.page;
  });

  afterAll(async () => {
    await app?.close();
    await serve?.stop("serve-first-start.log");
  });

  it("defaults to the system's language and theme; sending without a model says to load one; opening one fixes it", async () => {
    const composer = page.getByRole("textbox", { name: "消息", exact: true });
    await composer.waitFor({ state: "visible", timeout: 30_000 });
    await expect.poll(() => page.evaluate(() => document.documentElement.lang)).toMatch(/^zh/);
    await page.getByRole("button", { name: "新对话", exact: true }).waitFor();
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const rgb = bg.match(/\d+/g)!.map(Number);
    expect(Math.max(rgb[0], rgb[1], rgb[2]), `body background ${bg}`).toBeLessThan(80);
    await app.screenshot("15-first-start-zh-dark");

    await composer.fill("你好");
    await page.getByRole("button", { name: "发送", exact: true }).click();
    const loadFirst = page.getByText("发送消息前请先加载模型。");
    await loadFirst.first().waitFor({ timeout: 15_000 });
    // refused before anything was made: the text is still in the composer, and no (empty) conversation appeared
    expect(await composer.inputValue()).toBe("你好");
    expect(await page.getByRole("navigation", { name: "对话列表" }).getByRole("listitem").count()).toBe(0);
    expect(await loadFirst.count()).toBe(1);
    await app.screenshot("16-send-without-model");

    await page.getByRole("navigation", { name: "主导航" }).getByRole("button", { name: "模型", exact: true }).click();
    await page.getByRole("textbox", { name: "模型文件夹路径", exact: true }).fill(fixtureModel("qwen2_moe"));
    await page.getByRole("button", { name: "打开", exact: true }).click();
    await page.getByRole("button", { name: "与此模型对话", exact: true }).click({ timeout: 60_000 });
    await expect.poll(() => loadFirst.count()).toBe(0); // the banner went once the model was loaded
    await page.getByRole("button", { name: "新对话", exact: true }).click();
    await composer.fill("你好，介绍一下你自己。");
    await page.getByRole("button", { name: "发送", exact: true }).click();
    const reply = page.getByRole("log").locator('[data-role="assistant"]').last();
    await expect.poll(async () => (await reply.innerText()).length, { timeout: 60_000 }).toBeGreaterThan(0);
    await page.getByRole("button", { name: "发送", exact: true }).waitFor({ timeout: 60_000 });
    await app.screenshot("17-first-reply-zh-dark");
    app.expectClean();
  });
});
