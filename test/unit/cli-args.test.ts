import { describe, expect, it } from "vitest";
import { parseArgs, parseIds } from "../../electron/cli.js";

describe("CLI argument parsing", () => {
  it("parses a command, value flags (both spellings) and boolean flags", () => {
    const { command, flags } = parseArgs(["generate", "--model", "/m", "--max-tokens=8", "--json", "--prompt", "--weird but fine"]);
    expect(command).toBe("generate");
    expect(flags).toEqual({ model: "/m", "max-tokens": "8", json: true, prompt: "--weird but fine" });
  });
  it("rejects unknown options, a missing value and stray arguments", () => {
    expect(() => parseArgs(["generate", "--nope"])).toThrow(/unknown option --nope/);
    expect(() => parseArgs(["generate", "--model"])).toThrow(/--model needs a value/);
    expect(() => parseArgs(["generate", "x"])).toThrow(/unexpected argument "x"/);
  });
  it("parses --ids", () => {
    expect(parseIds("1,2, 3")).toEqual([1, 2, 3]);
    expect(() => parseIds("")).toThrow(/prompt is empty/);
    expect(() => parseIds("1,-2")).toThrow(/"-2" is not a token id/);
  });
});
