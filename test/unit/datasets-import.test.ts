// Reading sample files: the record splitter (jsonl and JSON array, any chunking), the three formats and every
// reject reason with exact line numbers, BOM / CRLF / missing final newline, Chinese and emoji, invalid UTF-8,
// a multi-megabyte line, and the scan's progress and cancellation. Fixtures: test/fixtures/datasets (hand-made).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { normalizeRecord, parseRecord, validateMessages } from "../../electron/datasets/formats.js";
import { RecordSplitter, type RawRecord, type RecordError } from "../../electron/datasets/records.js";
import { readValidSamplesSync, scanFile, ScanCancelled, type ValidSample } from "../../electron/datasets/scan.js";

const FIX = join(import.meta.dirname, "../fixtures/datasets");
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "moe-ds-import-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Split `bytes` fed in pieces of `step` bytes; records as {line, text} or {line, error}. */
function split(bytes: Buffer, step = bytes.length || 1) {
  const out: Array<{ line: number; text?: string; error?: string }> = [];
  const s = new RecordSplitter((r: RawRecord | RecordError) => out.push("bytes" in r ? { line: r.line, text: r.bytes.toString("utf8") } : r));
  for (let i = 0; i < bytes.length; i += step) s.push(bytes.subarray(i, i + step));
  s.end();
  return { records: out, container: s.container };
}

async function scanOf(file: string) {
  const samples: ValidSample[] = [];
  const r = await scanFile(file);
  readValidSamplesSync(file, r, (s) => samples.push(s));
  return { r, samples };
}

describe("RecordSplitter", () => {
  it("cuts jsonl into lines with 1-based numbers, skipping blanks, whatever the chunk size", () => {
    const text = '{"a":1}\n\n  \n{"b":2}\r\n{"c":"x\\ny"}';
    for (const step of [1, 2, 3, 7, 1000]) {
      const { records, container } = split(Buffer.from(text), step);
      expect(container).toBe("jsonl");
      expect(records).toEqual([
        { line: 1, text: '{"a":1}' },
        { line: 4, text: '{"b":2}' },
        { line: 5, text: '{"c":"x\\ny"}' },
      ]);
    }
  });

  it("skips a UTF-8 BOM even when it arrives split across chunks", () => {
    const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a":1}\n[1]\n')]);
    for (const step of [1, 2, 4]) expect(split(bytes, step)).toEqual({ container: "jsonl", records: [{ line: 1, text: '{"a":1}' }, { line: 2, text: "[1]" }] });
  });

  it("cuts a JSON array file into its elements, each with the line it starts on", () => {
    const text = '\ufeff [\n  {"a": "[not a bracket]"},\n  {"b": "quote \\" and \\\\"},\n\n  [1, {"c": 2}], 42 , "s,]" , true\n]\n';
    for (const step of [1, 3, 5, 1000]) {
      const { records, container } = split(Buffer.from(text), step);
      expect(container).toBe("json-array");
      expect(records).toEqual([
        { line: 2, text: '{"a": "[not a bracket]"}' },
        { line: 3, text: '{"b": "quote \\" and \\\\"}' },
        { line: 5, text: '[1, {"c": 2}]' },
        { line: 5, text: "42" },
        { line: 5, text: '"s,]"' },
        { line: 5, text: "true" },
      ]);
    }
  });

  it("reports a broken JSON array at the line where it breaks, keeping the elements before it", () => {
    expect(split(Buffer.from('[\n{"a":1}\n{"b":2}]')).records).toEqual([
      { line: 2, text: '{"a":1}' },
      { line: 3, error: 'expected "," or "]" between array elements' },
    ]);
    expect(split(Buffer.from('[{"a":1},\n{"b":')).records).toEqual([
      { line: 1, text: '{"a":1}' },
      { line: 2, error: "the file ends inside this element (the JSON array is not closed)" },
    ]);
    expect(split(Buffer.from('[{"a":1}] x')).records).toEqual([{ line: 1, text: '{"a":1}' }, { line: 1, error: 'unexpected text after the closing "]"' }]);
    expect(split(Buffer.from("")).records).toEqual([]);
  });
});

describe("formats", () => {
  it("normalises messages, conversations (human/gpt, system, top-level system) and instruction (input, system)", () => {
    expect(normalizeRecord({ messages: [{ role: "user", content: "a", name: "x" }, { role: "assistant", content: "b" }], id: 3 })).toEqual({
      ok: true,
      format: "messages",
      messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }],
    });
    expect(normalizeRecord({ system: "s", conversations: [{ from: "human", value: "a" }, { from: "gpt", value: "b" }] })).toEqual({
      ok: true,
      format: "conversations",
      messages: [{ role: "system", content: "s" }, { role: "user", content: "a" }, { role: "assistant", content: "b" }],
    });
    expect(normalizeRecord({ instruction: "Do", input: "this", output: "done", system: "sys" })).toEqual({
      ok: true,
      format: "instruction",
      messages: [{ role: "system", content: "sys" }, { role: "user", content: "Do\n\nthis" }, { role: "assistant", content: "done" }],
    });
    expect(normalizeRecord({ instruction: "Do", input: "", output: "done" })).toMatchObject({ messages: [{ role: "user", content: "Do" }, { role: "assistant", content: "done" }] });
  });

  it("gives each reason with the message it concerns", () => {
    const cases: Array<[unknown, string, string]> = [
      [{ messages: [{ role: "user", content: " \n" }, { role: "assistant", content: "x" }] }, "empty_content", "empty content: messages[0] (user) has empty content"],
      [{ messages: [{ role: "user", content: "a" }] }, "no_assistant_turn", "no assistant turn: the sample has no assistant message"],
      [{ messages: [] }, "no_assistant_turn", "no assistant turn: the sample has no messages"],
      [{ messages: [{ role: "user", content: "a" }, { role: "system", content: "s" }, { role: "assistant", content: "b" }] }, "wrong_role_order", "wrong role order: messages[1] is a system message; only the first message may be one"],
      [{ messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }, { role: "user", content: "c" }] }, "wrong_role_order", 'wrong role order: the last message, messages[2], is "user": a sample must end with the assistant\'s reply'],
      [{ messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }, { role: "assistant", content: "c" }] }, "wrong_role_order", 'wrong role order: messages[2] is a second "assistant" message in a row (user and assistant must alternate)'],
      [{ conversations: [{ from: "gpt", value: "a" }, { from: "human", value: "b" }] }, "wrong_role_order", 'wrong role order: conversations[0] is "assistant" but the conversation must start with "user" (after an optional system message)'],
      [{ conversations: [{ from: "function", value: "a" }] }, "unknown_shape", 'unknown shape: conversations[0].from "function" is not one of "system", "user", "human", "assistant", "gpt"'],
      [{ messages: [{ role: "user", content: [{ type: "text", text: "a" }] }] }, "unknown_shape", 'unknown shape: messages[0].content must be a string, got [{"type":"text","text":"a"}]'],
      [{ messages: "hi" }, "unknown_shape", 'unknown shape: "messages" must be an array, got "hi"'],
      [{ text: "x" }, "unknown_shape", 'unknown shape: expected "messages", "conversations" or "instruction"/"output"; the object has "text"'],
      ["just a string", "unknown_shape", 'unknown shape: a sample must be a JSON object, got "just a string"'],
      [{ instruction: "a", output: "  " }, "empty_content", 'empty content: "output" is empty'],
      [{ instruction: "a" }, "no_assistant_turn", 'no assistant turn: the instruction has no "output"'],
      [{ instruction: 5, output: "x" }, "unknown_shape", 'unknown shape: "instruction" must be a string, got 5'],
    ];
    for (const [value, reason, error] of cases) expect(normalizeRecord(value)).toEqual({ ok: false, reason, error });
    expect(parseRecord(Buffer.from('{"messages": ['))).toMatchObject({ ok: false, reason: "not_json" });
    expect(parseRecord(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]))).toEqual({ ok: false, reason: "not_json", error: "not JSON: the line is not valid UTF-8" });
    expect(validateMessages([{ role: "system", content: "s" }, { role: "user", content: "a" }, { role: "assistant", content: "b" }])).toBeNull();
  });
});

describe("scanning the fixture files", () => {
  it("messages.jsonl: single- and multi-turn, system, content kept exactly (no trimming)", async () => {
    const { r, samples } = await scanOf(join(FIX, "messages.jsonl"));
    expect(r).toMatchObject({ container: "jsonl", records: 3, valid: 3, rejectedCount: 0, formats: { messages: 3, conversations: 0, instruction: 0 } });
    expect(samples.map((s) => s.messages.length)).toEqual([2, 5, 2]);
    expect(samples[2].messages[1].content).toBe("  hi  ");
    expect(samples[2].messages[0].content).toBe('Say "hi" with a tab\tand a newline\n.');
  });

  it("conversations.jsonl and the same as one JSON array file (element lines reported)", async () => {
    const a = await scanOf(join(FIX, "conversations.jsonl"));
    expect(a.r).toMatchObject({ valid: 3, formats: { conversations: 3 } });
    const b = await scanOf(join(FIX, "conversations-array.json"));
    expect(b.r).toMatchObject({ container: "json-array", records: 4, valid: 3, rejectedCount: 1 });
    expect(b.samples.map((s) => s.messages)).toEqual(a.samples.map((s) => s.messages));
    // each element's first line in the pretty-printed file
    const lines = readFileSync(join(FIX, "conversations-array.json"), "utf8").split("\n");
    expect(b.samples.map((s) => lines[s.line - 1].trim())).toEqual(["{", "{", "{"]);
    expect(b.r.rejected).toEqual([{ line: 54, reason: "wrong_role_order", error: expect.stringContaining("conversations[0]") }]);
    expect(lines[54 - 1].trim()).toBe("{");
    expect(lines[54]).toContain('"id": "bad"');
  });

  it("instruction.jsonl: with and without input, with system", async () => {
    const { r, samples } = await scanOf(join(FIX, "instruction.jsonl"));
    expect(r).toMatchObject({ valid: 4, formats: { instruction: 4 } });
    expect(samples[0].messages).toEqual([{ role: "user", content: "Translate to French.\n\ncat" }, { role: "assistant", content: "chat" }]);
    expect(samples[2].messages[0]).toEqual({ role: "system", content: "You summarise." });
  });

  it("mixed-invalid.jsonl: every reason at its exact line; a blank line counts for numbering only", async () => {
    const { r, samples } = await scanOf(join(FIX, "mixed-invalid.jsonl"));
    expect(r.records).toBe(13);
    expect(r.valid).toBe(3);
    expect(samples.map((s) => [s.line, s.format])).toEqual([[1, "messages"], [8, "instruction"], [14, "conversations"]]);
    expect(r.rejected.map((x) => [x.line, x.reason])).toEqual([
      [2, "not_json"],
      [3, "unknown_shape"],
      [5, "empty_content"],
      [6, "wrong_role_order"],
      [7, "no_assistant_turn"],
      [9, "wrong_role_order"],
      [10, "unknown_shape"],
      [11, "empty_content"],
      [12, "unknown_shape"],
      [13, "no_assistant_turn"],
    ]);
    expect(r.formats).toEqual({ messages: 1, conversations: 1, instruction: 1 });
  });

  it("bom-crlf.jsonl: BOM, CRLF endings and a last line without newline give clean content", async () => {
    const raw = readFileSync(join(FIX, "bom-crlf.jsonl"));
    expect([...raw.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf]);
    expect(raw.includes("\r\n")).toBe(true);
    expect(raw[raw.length - 1]).not.toBe(0x0a);
    const { r, samples } = await scanOf(join(FIX, "bom-crlf.jsonl"));
    expect(r).toMatchObject({ records: 3, valid: 3, rejectedCount: 0 });
    expect(samples.map((s) => s.messages[1].content)).toEqual(["line 1", "line 2", "line 3"]);
    expect(samples[0].messages[0].content).toBe("crlf 1");
  });

  it("chinese-emoji.jsonl: multi-byte and 4-byte characters survive, even read in 1-byte chunks", async () => {
    const { samples } = await scanOf(join(FIX, "chinese-emoji.jsonl"));
    expect(samples[0].messages[1].content).toBe("你好，世界！🌍");
    expect(samples[1].messages[1].content).toBe("混合专家模型（MoE）让每个词元只经过少数专家网络。🧠✨");
    expect(samples[2].messages[1].content).toBe("The weather is nice today. ☀️");
    const recs = split(readFileSync(join(FIX, "chinese-emoji.jsonl")), 1).records;
    expect(recs.map((x) => parseRecord(Buffer.from(x.text!)))).toEqual(samples.map((s) => ({ ok: true, format: s.format, messages: s.messages })));
  });
});

describe("scanFile", () => {
  it("reads a line of several MB and a line with invalid UTF-8, and names a missing file", async () => {
    const dir = tempDir();
    const big = "长".repeat(3 * 1024 * 1024); // 9 MiB of UTF-8 in one line, across many 1 MiB chunks
    const file = join(dir, "big.jsonl");
    writeFileSync(
      file,
      Buffer.concat([
        Buffer.from(JSON.stringify({ messages: [{ role: "user", content: big }, { role: "assistant", content: "ok" }] }) + "\n"),
        Buffer.from('{"messages":[{"role":"user","content":"\xff"}]}\n', "latin1"),
      ]),
    );
    const { r, samples } = await scanOf(file);
    expect(samples[0].messages[0].content).toBe(big);
    expect(r.rejected).toEqual([{ line: 2, reason: "not_json", error: "not JSON: the line is not valid UTF-8" }]);
    await expect(scanFile(join(dir, "nope.jsonl"))).rejects.toThrow(`${join(dir, "nope.jsonl")}: file not found`);
    await expect(scanFile(dir)).rejects.toThrow("is a folder");
  });

  it("reports progress and stops at once when cancelled", async () => {
    const dir = tempDir();
    const file = join(dir, "many.jsonl");
    const line = JSON.stringify({ messages: [{ role: "user", content: "x".repeat(500) }, { role: "assistant", content: "y" }] }) + "\n";
    writeFileSync(file, line.repeat(20_000)); // ~10 MB: ten 1 MiB chunks
    const seen: number[] = [];
    const ac = new AbortController();
    await expect(
      scanFile(file, {
        signal: ac.signal,
        progressIntervalMs: 0,
        onProgress: (p) => {
          seen.push(p.bytesRead);
          if (p.bytesRead >= 3 * 1024 * 1024) ac.abort();
        },
      }),
    ).rejects.toBeInstanceOf(ScanCancelled);
    expect(seen.length).toBeGreaterThanOrEqual(3);
    expect(seen[seen.length - 1]).toBeLessThan(line.length * 20_000);
  });

  it("the commit's pass refuses a file changed since the scan", async () => {
    const dir = tempDir();
    const file = join(dir, "f.jsonl");
    writeFileSync(file, readFileSync(join(FIX, "messages.jsonl")));
    const r = await scanFile(file);
    writeFileSync(file, readFileSync(join(FIX, "messages.jsonl"), "utf8") + readFileSync(join(FIX, "messages.jsonl"), "utf8"));
    expect(() => readValidSamplesSync(file, r, () => undefined)).toThrow("the file changed since it was scanned");
  });
});
