// The datasets UI's pure parts: the virtual window and page math behind the samples grid, the editor's draft
// reducers, how a validation error is tied to a message, what a drop is, and the upload chunk size against the
// contract. (The stores and components against the real server are exercised in test/e2e/datasets.e2e.test.ts.)
import { describe, expect, it } from "vitest";
import { UPLOAD_CHUNK_BYTES } from "../../electron/contract.js";
import { baseName, classifyDrop, isDatasetFile, UPLOAD_CHUNK } from "../../renderer/src/stores/datasets.js";
import { errorIndex, evictPages, listQuery, moveMessage, nextRole, PAGE_SIZE } from "../../renderer/src/stores/samples.js";
import { pagesFor, rowWindow } from "../../renderer/src/virtual.js";
import { en } from "../../renderer/src/i18n/en.js";
import { zh } from "../../renderer/src/i18n/zh.js";
import type { SampleMessage, SampleRow } from "../../electron/contract.js";
import { validateMessages } from "../../electron/datasets/formats.js";

describe("virtual window", () => {
  it("renders the rows in view plus the overscan, clamped to the list", () => {
    // 52 px rows, a 520 px viewport: 10 rows in view
    expect(rowWindow(0, 520, 52, 100_000, 8)).toEqual({ start: 0, end: 18 });
    // scrolled to row 1000 exactly: rows 1000..1009 in view, 8 either side
    expect(rowWindow(52_000, 520, 52, 100_000, 8)).toEqual({ start: 992, end: 1018 });
    // half a row scrolled: row 1010 is partly visible too
    expect(rowWindow(52_026, 520, 52, 100_000, 8)).toEqual({ start: 992, end: 1019 });
    // the end of 100k rows: never past the last row
    const end = rowWindow(100_000 * 52 - 520, 520, 52, 100_000, 8);
    expect(end).toEqual({ start: 99_982, end: 100_000 });
    expect(end.end - end.start).toBeLessThanOrEqual(10 + 2 * 8);
    // overscrolled (elastic scrolling, a shrinking list) still shows the last rows, not nothing
    expect(rowWindow(10_000_000, 520, 52, 100, 8)).toEqual({ start: 91, end: 100 });
    expect(rowWindow(0, 520, 52, 0)).toEqual({ start: 0, end: 0 });
    expect(rowWindow(-40, 0, 52, 5, 2)).toEqual({ start: 0, end: 3 });
  });

  it("asks for the pages that hold the window, each once", () => {
    expect(pagesFor({ start: 0, end: 18 }, 100)).toEqual([0]);
    expect(pagesFor({ start: 992, end: 1018 }, 100)).toEqual([9, 10]);
    expect(pagesFor({ start: 99_982, end: 100_000 }, 100)).toEqual([999]);
    expect(pagesFor({ start: 100, end: 200 }, 100)).toEqual([1]);
    expect(pagesFor({ start: 5, end: 5 }, 100)).toEqual([]);
  });

  it("keeps the cached pages nearest the window", () => {
    const row = {} as SampleRow;
    const pages: Record<number, SampleRow[]> = {};
    for (let p = 0; p < 10; p++) pages[p] = [row];
    const kept = evictPages(pages, { start: 800, end: 820 }, 100, 3);
    expect(Object.keys(kept).map(Number).sort((a, b) => a - b)).toEqual([7, 8, 9]);
    expect(evictPages(pages, { start: 0, end: 10 }, 100, 20)).toBe(pages);
  });
});

describe("sample editor", () => {
  const msgs: SampleMessage[] = [
    { role: "system", content: "s" },
    { role: "user", content: "u" },
    { role: "assistant", content: "a" },
  ];

  it("reorders messages without touching the original, and ignores moves off the ends", () => {
    const moved = moveMessage(msgs, 2, -1);
    expect(moved.map((m) => m.role)).toEqual(["system", "assistant", "user"]);
    expect(msgs.map((m) => m.role)).toEqual(["system", "user", "assistant"]);
    expect(moveMessage(msgs, 0, -1)).toBe(msgs);
    expect(moveMessage(msgs, 2, 1)).toBe(msgs);
  });

  it("a new message continues the user/assistant alternation", () => {
    expect(nextRole(msgs)).toBe("user");
    expect(nextRole(msgs.slice(0, 2))).toBe("assistant");
    expect(nextRole([])).toBe("user");
    expect(nextRole(msgs.slice(0, 1))).toBe("user");
  });

  it("ties the backend's validation error to the message it names (0-based), or to none", () => {
    // the messages samples.update would refuse, and the error text the backend's own validation gives for each
    const err = (m: SampleMessage[]) => validateMessages(m)?.error ?? "";
    expect(errorIndex(err([msgs[0], msgs[1], { role: "assistant", content: "  " }]))).toBe(2);
    expect(errorIndex(err([msgs[0], { role: "assistant", content: "a" }, msgs[1], msgs[2]]))).toBe(1);
    expect(errorIndex(err([msgs[1], msgs[2], msgs[0]]))).toBe(2); // a system message that is not first
    expect(errorIndex(err([msgs[1], msgs[2], msgs[1]]))).toBe(2); // ends with the user
    expect(errorIndex(err([msgs[0], msgs[1]]))).toBeNull(); // no assistant turn: about the sample, not one message
    expect(validateMessages(msgs)).toBeNull();
  });

  it("builds the list query: token filters only with a tokenizer, search trimmed", () => {
    const f = { search: "  pineapple ", minTokens: 10, maxTokens: null, hasProblems: true };
    expect(listQuery("d1", f, null)).toEqual({ datasetId: "d1", search: "pineapple", hasProblems: true });
    expect(listQuery("d1", f, { modelDir: "/m", maxSeqLen: 2048 })).toEqual({
      datasetId: "d1",
      search: "pineapple",
      hasProblems: true,
      minTokens: 10,
      tokenizer: { modelDir: "/m", maxSeqLen: 2048 },
    });
    expect(listQuery("d1", { search: " ", minTokens: null, maxTokens: null, hasProblems: false }, null)).toEqual({ datasetId: "d1" });
    expect(PAGE_SIZE).toBeLessThanOrEqual(1000); // samples.list's limit
  });
});

describe("import", () => {
  it("uploads in chunks no bigger than the contract allows", () => {
    expect(UPLOAD_CHUNK).toBeLessThanOrEqual(UPLOAD_CHUNK_BYTES);
    // base64 of a full chunk stays under the WebSocket frame cap (16 MiB) with room for the JSON around it
    expect(Math.ceil(UPLOAD_CHUNK / 3) * 4).toBeLessThan(16 * 1024 * 1024 - 4096);
  });

  it("knows a dataset file from anything else dropped", () => {
    expect(isDatasetFile("train.jsonl")).toBe(true);
    expect(isDatasetFile("data.JSON")).toBe(true);
    expect(isDatasetFile("notes.txt")).toBe(false);
    expect(isDatasetFile("jsonl")).toBe(false);
    expect(classifyDrop("train.jsonl", false)).toBe("dataset");
    expect(classifyDrop("Qwen3-30B-A3B", true)).toBe("folder");
    expect(classifyDrop("weights.safetensors", false)).toBe("other");
    expect(baseName("/home/me/data.train.jsonl")).toBe("data.train");
    expect(baseName("C:\\x\\对话.json")).toBe("对话");
  });
});

describe("accessible names", () => {
  it("are the ones the end-to-end test and screen readers use, in both languages", () => {
    const keys = ["datasets.title", "datasets.import", "datasets.search", "datasets.grid", "datasets.save", "datasets.undo", "datasets.delete"] as const;
    expect(keys.map((k) => en[k])).toEqual(["Datasets", "Import dataset", "Search samples", "Samples", "Save sample", "Undo", "Delete dataset"]);
    expect(keys.map((k) => zh[k])).toEqual(["数据集", "导入数据集", "搜索样本", "样本", "保存样本", "撤销", "删除数据集"]);
    expect(en["nav.datasets"]).toBe("Datasets");
  });
});
