// Datasets, end to end in Debian's Chromium against `moe-studio serve` (real services, SQLite, uploads over the
// WebSocket): a jsonl file dropped on the window with a real drag-and-drop event sequence, the import report with
// every bad line and its number, importing the valid rows, searching, editing and saving a sample, the edit still
// there after a reload, undo, a non-dataset file refused with a message, the export downloaded, the Chinese UI and
// the dark theme, delete with confirmation; then a 100k-sample dataset scrolled to its end with only a few rows in
// the DOM. Screenshots go to test/artifacts/e2e/datasets-*.png.
//
// The 100k dataset is generated at test time and imported by the backend's own CLI (`moe-studio dataset import`)
// into a second data folder, in the background from the start (its one 100k-row transaction takes ~12 s of CPU,
// far more on a loaded machine); a second `serve` on that folder shows it at the end. A separate folder, so that
// long write transaction never makes the first server's writes wait.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Locator, Page } from "playwright-core";
import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { type App, chromiumAvailable, fixtureModel, freshDir, openApp, ROOT, type Serve, startServe, unnamedControls } from "./harness.js";

const run = chromiumAvailable();

// Line numbers matter: the report must name exactly these lines. Line 6 is blank (skipped, not an error).
const LINES = [
  /* 1 */ JSON.stringify({ messages: [{ role: "user", content: "What is the capital of France?" }, { role: "assistant", content: "Paris." }] }),
  /* 2 */ JSON.stringify({ conversations: [{ from: "human", value: "Which fruit wears a crown? A pineapple?" }, { from: "gpt", value: "Yes: the pineapple keeps its leafy crown." }] }),
  /* 3 */ "this line is not JSON {",
  /* 4 */ JSON.stringify({ instruction: "Translate to French", input: "cat", output: "chat" }),
  /* 5 */ JSON.stringify({ text: "a JSON object of no known shape" }),
  /* 6 */ "",
  /* 7 */ JSON.stringify({ messages: [{ role: "user", content: "   " }, { role: "assistant", content: "x" }] }),
  /* 8 */ JSON.stringify({ messages: [{ role: "assistant", content: "I speak first" }, { role: "user", content: "no" }, { role: "assistant", content: "yes" }] }),
  /* 9 */ JSON.stringify({ messages: [{ role: "user", content: "Is anyone there?" }] }),
  /* 10 */ JSON.stringify({ messages: [{ role: "system", content: "Answer briefly." }, { role: "user", content: "你好，什么是混合专家模型？🤖" }, { role: "assistant", content: "每个词元只激活少数几个专家。" }] }),
];
const BAD: [number, string][] = [
  [3, "not JSON"],
  [5, "unknown shape"],
  [7, "empty content"],
  [8, "wrong role order"],
  [9, "no assistant turn"],
];
const VALID = 4;
const BIG = 100_000;

/** Writes BIG samples into a file in `dir` and imports them with the CLI into `dir`'s database. */
function importBigInBackground(dir: string): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const file = join(dir, "big.jsonl");
  const lines: string[] = [];
  for (let i = 0; i < BIG; i++) {
    lines.push(JSON.stringify({ messages: [{ role: "user", content: `Question number ${i + 1}: how many experts does layer ${i % 48} route to?` }, { role: "assistant", content: `Answer ${i + 1}: top-${1 + (i % 8)}.` }] }));
  }
  writeFileSync(file, lines.join("\n") + "\n");
  const t0 = Date.now();
  const child = spawn(process.execPath, [join(ROOT, "electron/bin/moe-studio.mjs"), "dataset", "import", file, "--db", join(dir, "moe-studio.db"), "--name", "big"], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr, ms: Date.now() - t0 })));
}

describe.runIf(run)("datasets, end to end in Chromium", () => {
  let serve: Serve;
  let app: App;
  let page: Page;
  let bigDir: string;
  let bigImport: ReturnType<typeof importBigInBackground>;

  beforeAll(async () => {
    bigDir = freshDir("datasets-100k");
    bigImport = importBigInBackground(bigDir);
    // a model, so the tokenizer choice has one to offer (counting tokens needs only its tokenizer and template)
    serve = await startServe({ model: fixtureModel("qwen3_moe") });
    app = await openApp(serve.url);
    page = app.page;
  });

  afterAll(async () => {
    await app?.close();
    await serve?.stop("serve-datasets.log");
    if (bigDir) {
      await bigImport;
      rmSync(bigDir, { recursive: true, force: true });
    }
  });

  const region = () => page.getByRole("region", { name: /^(Datasets|数据集)$/ });
  const button = (name: string | RegExp) => page.getByRole("button", { name, exact: typeof name === "string" });
  const nav = (name: string) => page.getByRole("navigation", { name: /^(Main|主导航)$/ }).getByRole("button", { name, exact: true });
  const grid = () => page.getByRole("grid", { name: /^(Samples|样本)$/ });
  const bodyRows = () => grid().locator(".sgrid-body [role=row]");
  const loadedRows = () => grid().locator(".sgrid-body [role=row]:not(.placeholder)");
  const datasetList = () => page.getByRole("navigation", { name: /^(Dataset list|数据集列表)$/ });
  /** The list entry of the dataset named exactly `name`. */
  const datasetEntry = (name: string) => datasetList().locator("li").filter({ has: page.locator(".conv-title").getByText(name, { exact: true }) }).getByRole("button");
  const tokenCells = async () => (await loadedRows().locator(".c-tokens").allInnerTexts()).map((s) => Number(s.replace(/[^\d]/g, "")));
  const visible = (l: Locator, timeout = 15_000) => l.first().waitFor({ state: "visible", timeout });
  const gone = (l: Locator, timeout = 15_000) => expect.poll(() => l.count(), { timeout }).toBe(0);

  /** A drag-and-drop as a browser delivers it: dragenter, dragover and drop carrying a DataTransfer with a File. */
  async function startDrag(name: string, text: string) {
    await page.evaluate(
      ({ name, text }) => {
        const dt = new DataTransfer();
        dt.items.add(new File([text], name, { type: name.endsWith(".txt") ? "text/plain" : "application/jsonl" }));
        (window as unknown as { __dt: DataTransfer }).__dt = dt;
        for (const type of ["dragenter", "dragover"]) document.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
      },
      { name, text },
    );
  }
  async function finishDrop() {
    const accepted = await page.evaluate(() => {
      const dt = (window as unknown as { __dt: DataTransfer }).__dt;
      // dispatchEvent returns false when a listener called preventDefault: the page took the file
      return !document.dispatchEvent(new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer: dt }));
    });
    expect(accepted, "the drop was handled (preventDefault), not left to the browser").toBe(true);
  }

  /** Every visible control has an accessible name. */
  async function expectNamedControls(where: string) {
    const unnamed = await unnamedControls(page);
    expect(unnamed, `unnamed controls in ${where}`).toEqual([]);
  }

  it("the Datasets view starts empty and says what to drop", async () => {
    await visible(nav("Datasets"), 30_000);
    await nav("Datasets").click();
    await visible(region());
    await visible(region().getByText("Bring your conversations"));
    await visible(button("Import dataset"));
    await page.mouse.move(900, 700);
    await app.screenshot("datasets-01-empty");
    await expectNamedControls("the empty Datasets view");
    app.expectClean();
  });

  it("a jsonl dropped on the window shows an overlay, then a report naming every bad line", async () => {
    await startDrag("mixed.jsonl", LINES.join("\n") + "\n");
    const overlay = page.getByText("Drop a .jsonl or .json file to import it as a dataset");
    await visible(overlay);
    await app.screenshot("datasets-02-drop-overlay");
    await finishDrop();
    await gone(overlay);

    const report = page.getByRole("dialog", { name: "Import report" });
    await visible(report, 30_000);
    const bad = report.getByRole("list", { name: "Bad lines" });
    await expect.poll(() => bad.getByRole("listitem").count()).toBe(BAD.length);
    const items = await bad.getByRole("listitem").allInnerTexts();
    BAD.forEach(([line, reason], i) => {
      expect(items[i]).toContain(`Line ${line}`);
      expect(items[i]).toContain(reason);
    });
    const stats = await report.locator(".report-stats").innerText();
    expect(stats).toMatch(/Records\s+9\b/);
    expect(stats).toMatch(new RegExp(`Valid\\s+${VALID}\\b`));
    expect(stats).toMatch(new RegExp(`Rejected\\s+${BAD.length}\\b`));
    expect(stats).toMatch(/messages 2/);
    expect(stats).toMatch(/conversations 1/);
    expect(stats).toMatch(/instruction 1/);
    await app.screenshot("datasets-03-report");
    await expectNamedControls("the import report");
    app.expectClean();
  });

  it("importing the valid rows makes a dataset with exactly those samples", async () => {
    await button(`Import ${VALID} valid samples`).click();
    await gone(page.getByRole("dialog"), 30_000);
    await visible(datasetEntry("mixed"));
    await visible(grid());
    await expect.poll(() => loadedRows().count(), { timeout: 15_000 }).toBe(VALID);
    const previews = await loadedRows().locator(".p-user").allInnerTexts();
    expect(previews).toEqual(["What is the capital of France?", "Which fruit wears a crown? A pineapple?", "Translate to French cat", "你好，什么是混合专家模型？🤖"]);
    await page.mouse.move(900, 760);
    await app.screenshot("datasets-04-imported");
    await expectNamedControls("the Datasets view");
    app.expectClean();
  });

  it("a sample found by search is edited and saved; a bad edit is refused next to its message", async () => {
    const search = page.getByRole("textbox", { name: "Search samples" });
    await search.fill("pineapple");
    await expect.poll(() => loadedRows().count()).toBe(1);
    await loadedRows().first().click();
    const editor = page.getByRole("complementary", { name: "Sample #2" });
    await visible(editor);

    // an empty assistant turn breaks the rules: the backend says why, shown at that message, nothing saved
    const reply = editor.getByRole("textbox", { name: "Message 2 text" });
    await reply.fill("  ");
    await editor.getByRole("button", { name: "Save sample" }).click();
    const alert = editor.getByRole("listitem").nth(1).getByRole("alert");
    await visible(alert);
    expect(await alert.innerText()).toMatch(/empty/i);
    await app.screenshot("datasets-05-invalid-edit");

    await reply.fill("Edited: the pineapple's crown can be planted to grow a new one.");
    await editor.getByRole("button", { name: "Save sample" }).click();
    await gone(editor.getByRole("alert"));
    await expect.poll(() => editor.getByRole("button", { name: "Save sample" }).isDisabled()).toBe(true);
    // the row shows it too (search matched the new text)
    await expect.poll(() => loadedRows().first().innerText()).toMatch(/pineapple/);
    await app.screenshot("datasets-06-edited");
    app.expectClean();
  });

  it("after a reload the edit is still there; Undo brings the previous text back", async () => {
    await page.reload();
    await visible(nav("Datasets"), 30_000);
    await nav("Datasets").click();
    const search = page.getByRole("textbox", { name: "Search samples" });
    await search.fill("crown can be planted");
    await expect.poll(() => loadedRows().count(), { timeout: 15_000 }).toBe(1);
    await loadedRows().first().click();
    const editor = page.getByRole("complementary", { name: "Sample #2" });
    await expect.poll(() => editor.getByRole("textbox", { name: "Message 2 text" }).inputValue()).toBe("Edited: the pineapple's crown can be planted to grow a new one.");

    await button("Undo").click();
    await expect.poll(() => editor.getByRole("textbox", { name: "Message 2 text" }).inputValue()).toBe("Yes: the pineapple keeps its leafy crown.");
    // the search for the edited text finds nothing now
    await expect.poll(() => loadedRows().count()).toBe(0);
    await search.fill("");
    await expect.poll(() => loadedRows().count()).toBe(VALID);
    await app.screenshot("datasets-07-undone");
    app.expectClean();
  });

  it("token counts for the chosen model's tokenizer; samples over the max sequence length are flagged and filtered", async () => {
    await page.getByLabel("Tokenizer model").selectOption({ label: "qwen3_moe" });
    // every row gets its count (the fixture's tokenizer and chat template, counted by the backend)
    await expect.poll(async () => (await tokenCells()).filter((n) => n > 0).length, { timeout: 30_000 }).toBe(VALID);
    const counts = await tokenCells();
    const longest = Math.max(...counts);
    const over = counts.filter((n) => n > longest - 1).length;
    const maxLen = page.getByLabel("Max sequence length");
    await maxLen.fill(String(longest - 1));
    await maxLen.press("Enter");
    await expect.poll(() => loadedRows().filter({ hasText: "Would be truncated" }).count(), { timeout: 15_000 }).toBe(over);
    await page.mouse.move(900, 760);
    await app.screenshot("datasets-08-token-counts");
    await page.getByLabel("Has problems").check();
    await expect.poll(() => loadedRows().count()).toBe(over);
    await page.getByLabel("Has problems").uncheck();
    await expect.poll(() => loadedRows().count()).toBe(VALID);
    // the token length filter: only the longest sample(s)
    const min = page.getByRole("spinbutton", { name: "Min tokens" });
    await min.fill(String(longest));
    await min.press("Enter");
    await expect.poll(() => loadedRows().count()).toBe(counts.filter((n) => n >= longest).length);
    await min.fill("");
    await min.press("Enter");
    await expect.poll(() => loadedRows().count()).toBe(VALID);
    app.expectClean();
  });

  it("a sample's messages: add, change role, reorder (a wrong order is refused at that message), delete", async () => {
    await loadedRows().first().click(); // "What is the capital of France?"
    const editor = page.getByRole("complementary", { name: "Sample #1" });
    await visible(editor);
    const text = (n: number) => editor.getByRole("textbox", { name: `Message ${n} text` });
    const role = (n: number) => editor.getByRole("combobox", { name: `Message ${n} role` });
    const save = editor.getByRole("button", { name: "Save sample" });

    await editor.getByRole("button", { name: "Add message" }).click();
    await expect.poll(() => role(3).inputValue()).toBe("user"); // a new message continues the alternation
    await text(3).fill("And of Germany?");
    await editor.getByRole("button", { name: "Add message" }).click();
    await text(4).fill("Berlin.");
    await role(4).selectOption({ label: "Assistant" });
    // the reply moved above its question: two assistant turns in a row
    await editor.getByRole("button", { name: "Move message 4 up" }).click();
    await expect.poll(() => text(3).inputValue()).toBe("Berlin.");
    await save.click();
    const alert = editor.getByRole("listitem").nth(2).getByRole("alert");
    await visible(alert);
    expect(await alert.innerText()).toMatch(/wrong role order/);
    await editor.getByRole("button", { name: "Move message 3 down" }).click();
    await save.click();
    await gone(editor.getByRole("alert"));
    await expect.poll(() => save.isDisabled()).toBe(true);
    await expect.poll(() => loadedRows().first().locator(".c-turns").innerText()).toBe("4");

    // and back to one question and its answer
    await editor.getByRole("button", { name: "Delete message 4" }).click();
    await editor.getByRole("button", { name: "Delete message 3" }).click();
    await save.click();
    await expect.poll(() => save.isDisabled()).toBe(true);
    await expect.poll(() => loadedRows().first().locator(".c-turns").innerText()).toBe("2");
    expect([await text(1).inputValue(), await text(2).inputValue()]).toEqual(["What is the capital of France?", "Paris."]);
    app.expectClean();
  });

  it("duplicate (flagged), undo, deduplicate; add and delete a sample", async () => {
    const editor = page.getByRole("complementary", { name: /^Sample #/ });
    await editor.getByRole("button", { name: "Duplicate sample" }).click();
    await expect.poll(() => loadedRows().count()).toBe(VALID + 1);
    await expect.poll(() => loadedRows().filter({ hasText: "Duplicate" }).count()).toBe(1);
    await button("Undo").click();
    await expect.poll(() => loadedRows().count()).toBe(VALID);
    await editor.first().waitFor({ state: "detached" }).catch(() => {}); // undoing a duplicate deletes the copy it showed
    await loadedRows().first().click();
    await page.getByRole("complementary", { name: "Sample #1" }).getByRole("button", { name: "Duplicate sample" }).click();
    await expect.poll(() => loadedRows().count()).toBe(VALID + 1);
    await button("Deduplicate").click();
    await visible(page.getByText("Removed 1 duplicate samples."));
    await expect.poll(() => loadedRows().count()).toBe(VALID);
    await button("Dismiss").first().click();

    await button("Add sample").click();
    await expect.poll(() => loadedRows().count()).toBe(VALID + 1);
    await page.getByRole("complementary", { name: `Sample #${VALID + 1}` }).getByRole("button", { name: "Delete sample" }).click();
    await expect.poll(() => loadedRows().count()).toBe(VALID);
    app.expectClean();
  });

  it("rename, and a seeded split into train and validation datasets", async () => {
    await button("Rename dataset").click();
    const name = page.getByRole("textbox", { name: "Dataset name" });
    await name.fill("mixed-fruit");
    await name.press("Enter");
    await visible(datasetEntry("mixed-fruit"));
    await button("Split").click();
    await page.getByLabel("Validation share (%)").fill("50");
    await page.getByLabel("Seed").fill("7");
    await button("Create train and validation").click();
    await visible(datasetEntry("mixed-fruit (train)"));
    await visible(datasetEntry("mixed-fruit (validation)"));
    // the new train set is opened: half of the samples each
    await expect.poll(() => loadedRows().count()).toBe(VALID / 2);
    await datasetEntry("mixed-fruit (validation)").click();
    await expect.poll(() => loadedRows().count()).toBe(VALID / 2);
    await datasetEntry("mixed-fruit").click();
    await expect.poll(() => loadedRows().count()).toBe(VALID);
    app.expectClean();
  });

  it("the export downloads the dataset as messages-format jsonl", async () => {
    const [download] = await Promise.all([page.waitForEvent("download", { timeout: 30_000 }), button("Export as JSONL").click()]);
    const path = await download.path();
    const lines = readFileSync(path, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { messages: { role: string; content: string }[] });
    expect(lines).toHaveLength(VALID);
    expect(lines[1].messages).toEqual([
      { role: "user", content: "Which fruit wears a crown? A pineapple?" },
      { role: "assistant", content: "Yes: the pineapple keeps its leafy crown." },
    ]);
    expect(lines[3].messages[1].content).toBe("你好，什么是混合专家模型？🤖");
    app.expectClean();
  });

  it("a file that is not a dataset is refused with a message", async () => {
    await startDrag("notes.txt", "just some notes\n");
    await finishDrop();
    await visible(page.getByText("“notes.txt” is not a dataset file. Drop a .jsonl (one conversation per line) or a .json array."));
    await gone(page.getByRole("dialog"));
    await app.screenshot("datasets-09-not-a-dataset");
    await button("Dismiss").first().click();
    app.expectClean();
  });

  it("Import dataset picks a file; a large one shows upload and scan progress, and Cancel leaves nothing behind", async () => {
    const before = await datasetList().getByRole("listitem").count();
    // ~40 MB: many upload pieces and a scan long enough to see
    const line = JSON.stringify({ messages: [{ role: "user", content: "x".repeat(400) }, { role: "assistant", content: "y".repeat(400) }] });
    const large = join(freshDir("large"), "large.jsonl");
    writeFileSync(large, (line + "\n").repeat(48_000));
    const [chooser] = await Promise.all([page.waitForEvent("filechooser"), button("Import dataset").first().click()]);
    await chooser.setFiles(large); // a path: the browser reads the file itself, as when a person picks it
    const dialog = page.getByRole("dialog");
    await visible(dialog);
    const cancel = button("Cancel import");
    if (await cancel.isVisible()) {
      await visible(dialog.getByRole("progressbar", { name: "Import progress" }));
      await app.screenshot("datasets-10-import-progress", { fullPage: false, timeout: 5_000 }).catch(() => {});
    }
    // Cancel while it runs; on a fast machine the report may already be there: "Import nothing" is the same choice
    await cancel.or(button("Import nothing")).first().click();
    await gone(dialog);
    rmSync(dirname(large), { recursive: true, force: true });
    await page.waitForTimeout(300);
    expect(await datasetList().getByRole("listitem").count()).toBe(before);
    app.expectClean();
  });

  it("the Chinese UI and the dark theme", async () => {
    await nav("Settings").click();
    await page.getByLabel("Language", { exact: true }).selectOption({ label: "中文" });
    await page.getByLabel("主题", { exact: true }).selectOption({ label: "深色" });
    await nav("数据集").click();
    await datasetEntry("mixed-fruit").click();
    await visible(page.getByRole("grid", { name: "样本" }));
    await expect.poll(() => loadedRows().count()).toBe(VALID);
    await loadedRows().nth(3).click();
    await visible(page.getByRole("complementary", { name: "样本 #4" }));
    await visible(page.getByRole("textbox", { name: "搜索样本" }));
    await visible(page.getByRole("button", { name: "导入数据集" }));
    await page.mouse.move(900, 760);
    await app.screenshot("datasets-11-zh-dark");
    await expectNamedControls("the Chinese Datasets view");
    app.expectClean();
  });

  it("deleting a dataset asks first", async () => {
    await page.getByRole("button", { name: "删除数据集", exact: true }).click();
    const confirm = page.getByRole("alertdialog");
    await visible(confirm);
    await app.screenshot("datasets-12-delete-confirm");
    await confirm.getByRole("button", { name: "删除", exact: true }).click();
    await gone(datasetEntry("mixed-fruit"));
    await visible(datasetEntry("mixed-fruit (train)"));
    app.expectClean();
  });

  it(`a ${BIG.toLocaleString("en")}-sample dataset scrolls to its end with a bounded number of rows in the DOM`, async () => {
    const cli = await bigImport;
    console.log(`e2e: the CLI imported ${BIG} samples in ${(cli.ms / 1000).toFixed(1)} s (in the background, while the steps above ran)`);
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ imported: BIG, rejected: [] });
    const big = await startServe({ dataDir: bigDir });
    try {
      await page.goto(big.url);
      // a fresh data folder: settings are the defaults again (the browser's English, light)
      await visible(nav("Datasets"), 30_000);
      await nav("Datasets").click();
      await visible(page.getByRole("navigation", { name: "Dataset list" }).getByRole("button", { name: /^big/ }));
      await expect.poll(() => grid().getAttribute("aria-rowcount"), { timeout: 15_000 }).toBe(String(BIG + 1));
      await visible(loadedRows().filter({ hasText: "Question number 1:" }));

      const scroller = grid().locator(".sgrid-scroll");
      const maxRows = 60; // a 1280×800 window shows ~12 rows of 52 px; the overscan adds 16
      const counts: number[] = [];
      for (const frac of [0.25, 0.5, 0.75, 1]) {
        await scroller.evaluate((el, f) => (el.scrollTop = (el.scrollHeight - el.clientHeight) * f), frac);
        await page.waitForTimeout(50);
        counts.push(await bodyRows().count());
      }
      const tEnd = Date.now();
      await visible(loadedRows().filter({ hasText: `Question number ${BIG}:` }), 15_000);
      const endMs = Date.now() - tEnd;
      counts.push(await bodyRows().count());

      // a number, not an assertion: frame times while the table scrolls 10 rows per frame for 150 frames
      const frames = await scroller.evaluate(async (el) => {
        el.scrollTop = 0;
        const times: number[] = [];
        let last = performance.now();
        for (let i = 0; i < 150; i++) {
          await new Promise(requestAnimationFrame);
          const now = performance.now();
          times.push(now - last);
          last = now;
          el.scrollTop += 520;
        }
        times.sort((a, b) => a - b);
        return { p50: times[75], p95: times[142], max: times[149], rows: el.querySelectorAll("[role=row]").length };
      });
      console.log(
        `e2e: 100k samples: last row shown ${endMs} ms after the jump to the end; scrolling 10 rows/frame: frame p50 ${frames.p50.toFixed(1)} ms, ` +
          `p95 ${frames.p95.toFixed(1)} ms, max ${frames.max.toFixed(1)} ms; ${frames.rows} rows in the DOM`,
      );
      counts.push(await bodyRows().count());
      expect(Math.max(...counts), `rows in the DOM while scrolling: ${counts.join(", ")}`).toBeLessThanOrEqual(maxRows);
      await scroller.evaluate((el) => (el.scrollTop = el.scrollHeight));
      await visible(loadedRows().filter({ hasText: `Question number ${BIG}:` }), 15_000);
      expect(await loadedRows().last().locator(".c-index").innerText()).toBe(String(BIG));
      await app.screenshot("datasets-13-100k-end");
      app.expectClean();
    } finally {
      await big.stop("serve-datasets-100k.log");
    }
  }, 300_000);
});
