// Chat with a remote endpoint, in Chromium against `moe-studio serve` with no model of its own: the remote is our own
// `serve --api` in another process (a real HTTP hop). Models → Remote endpoints: List models asks the remote, Add
// saves it, Chat opens a conversation whose header names it; the reply streams, Stop ends it, and a remote killed
// mid-reply shows an error on that reply with the text so far kept. Screenshots: test/artifacts/e2e/remote-*.png.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Locator, Page } from "playwright-core";
import { join } from "node:path";
import { type App, chromiumAvailable, freshDir, openApp, type Serve, startServe, unnamedControls } from "./harness.js";
import { fixtureCopy, serveApi, type Served } from "../native/serve-api.js";

const run = chromiumAvailable();
const KEY = "sk-remote-e2e-0123456789";

describe.runIf(run)("a remote endpoint in the chat, end to end in Chromium", () => {
  let remote: Served;
  let serve: Serve;
  let app: App;
  let page: Page;

  beforeAll(async () => {
    const dir = freshDir("remote");
    // a context of 8192: a reply of a few seconds on the tiny model, long enough to act on mid-stream
    remote = await serveApi(dir, fixtureCopy(join(dir, "m", "qwen3_moe"), 8192), ["--api-key", KEY]);
    serve = await startServe();
    app = await openApp(serve.url);
    page = app.page;
  });
  afterAll(async () => {
    await app?.close();
    await serve?.stop("serve-remote.log");
    await remote?.stop();
  });

  const button = (name: string) => page.getByRole("button", { name, exact: true });
  const log = () => page.getByRole("log", { name: "Messages" });
  const lastReply = (): Locator => log().locator('[data-role="assistant"]').last();
  const replyText = async () => (await lastReply().innerText()).trim();
  const nav = (name: string) => page.getByRole("navigation", { name: "Main" }).getByRole("button", { name, exact: true });
  const send = async (text: string) => {
    await page.getByRole("textbox", { name: "Message", exact: true }).fill(text);
    await button("Send").click();
  };
  const streaming = async () => {
    await expect.poll(async () => (await replyText()).length, { timeout: 30_000 }).toBeGreaterThan(0);
    const first = (await replyText()).length;
    // grown, or already over (an early eos between the two reads): sendLong then sends again
    await expect.poll(async () => (await replyText()).length > first || (await button("Send").isVisible()), { timeout: 30_000 }).toBe(true);
  };
  /**
   * Sends until a reply is still streaming once it has been seen to grow: the remote samples with the model's defaults
   * and a random seed, and the random fixture model may reach its eos early, so one reply can end before we act.
   */
  const sendLong = async (text: string) => {
    for (let attempt = 0; attempt < 5; attempt++) {
      await send(text);
      await streaming();
      if (await button("Stop").isVisible()) return;
      await button("Send").waitFor({ state: "visible", timeout: 30_000 });
    }
    throw new Error("no reply lasted long enough to act on mid-stream");
  };

  it("Models → Remote endpoints: list the remote's models, add it, open a chat with it", async () => {
    await nav("Models").click();
    const card = page.getByRole("region", { name: "Remote endpoints" });
    await card.getByLabel("Name", { exact: true }).fill("cluster");
    await card.getByLabel("Base URL", { exact: true }).fill(remote.baseUrl);
    await card.getByLabel("API key", { exact: true }).fill(KEY);
    await card.getByRole("button", { name: "List models" }).click();
    await expect.poll(() => card.getByRole("status").innerText()).toBe("1 models on this endpoint");
    expect(await card.getByLabel("Model", { exact: true }).inputValue()).toBe("qwen3_moe");
    await card.getByRole("button", { name: "Add endpoint" }).click();
    await expect.poll(() => card.locator(".endpoint-list").innerText()).toContain("cluster");
    expect(await unnamedControls(page)).toEqual([]);
    await app.screenshot("remote-1-endpoints");
    await card.getByRole("button", { name: "Chat with cluster" }).click();
    await expect.poll(() => page.getByTestId("endpoint-chip").innerText()).toBe("remote: cluster");
    app.expectClean();
  });

  it("the reply streams from the remote, and Stop ends it with its text kept", async () => {
    await sendLong("Tell me a long story about the sea.");
    await button("Stop").click({ timeout: 30_000 });
    await button("Send").waitFor({ state: "visible", timeout: 30_000 });
    const stopped = await replyText();
    expect(stopped.length).toBeGreaterThan(0);
    await expect.poll(() => lastReply().innerText()).toContain("Stopped");
    await page.waitForTimeout(300);
    expect(await replyText()).toBe(stopped);
    await app.screenshot("remote-2-stopped");
    app.expectClean();
  });

  it("a remote that dies mid-reply: the reply says so, and keeps what had arrived", async () => {
    await sendLong("Another long story, please.");
    await remote.kill();
    await button("Send").waitFor({ state: "visible", timeout: 30_000 });
    const note = lastReply().getByRole("note");
    await note.waitFor({ state: "visible", timeout: 30_000 });
    expect(await note.innerText()).toMatch(/The endpoint "cluster" \(http:\/\/127\.0\.0\.1:\d+\/v1\) (broke off the reply|closed the connection)/);
    const kept = (await lastReply().locator(".msg-body").innerText()).trim();
    expect(kept.length).toBeGreaterThan(0);
    await app.screenshot("remote-3-remote-died");
    app.expectClean();
  });
});
