// Chat template discovery and rendering, on templates written here (the fixture goldens check real ones).
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ChatTemplate, DEFAULT_SYSTEM_PROMPT, findChatTemplate } from "../../electron/text/chat-template.js";

const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const LLAMA = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}";

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "moe-tpl-"));
  for (const [k, v] of Object.entries(files)) writeFileSync(join(dir, k), v);
  return dir;
}

describe("findChatTemplate", () => {
  it("reads tokenizer_config.json chat_template as a string", () => {
    const dir = folder({ "tokenizer_config.json": JSON.stringify({ chat_template: CHATML }) });
    expect(findChatTemplate(dir)?.source).toBe(CHATML);
  });
  it("reads a list of {name, template} and picks default", () => {
    const dir = folder({
      "tokenizer_config.json": JSON.stringify({ chat_template: [{ name: "tool_use", template: "x" }, { name: "default", template: CHATML }] }),
    });
    expect(findChatTemplate(dir)?.source).toBe(CHATML);
    expect(findChatTemplate(dir, "tool_use")?.source).toBe("x");
  });
  it("prefers chat_template.jinja (transformers 5 layout)", () => {
    const dir = folder({ "chat_template.jinja": LLAMA, "tokenizer_config.json": JSON.stringify({ chat_template: CHATML }) });
    expect(findChatTemplate(dir)?.source).toBe(LLAMA);
  });
  it("returns null without a template and names the file for a malformed one", () => {
    expect(findChatTemplate(folder({ "tokenizer_config.json": "{}" }))).toBeNull();
    expect(() => findChatTemplate(folder({ "tokenizer_config.json": JSON.stringify({ chat_template: 3 }) }))).toThrow(/tokenizer_config.json.*chat_template/);
  });
});

describe("ChatTemplate.render", () => {
  const msgs = [{ role: "user", content: "Hi 你好" }];
  it("adds the default system prompt unless told not to", () => {
    const t = new ChatTemplate({ source: CHATML, file: "x" });
    expect(t.render(msgs)).toBe(
      `<|im_start|>system\n${DEFAULT_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\nHi 你好<|im_end|>\n<|im_start|>assistant\n`,
    );
    expect(t.render(msgs, { systemPrompt: null, addGenerationPrompt: false })).toBe("<|im_start|>user\nHi 你好<|im_end|>\n");
    expect(t.render([{ role: "system", content: "S" }, ...msgs], { systemPrompt: "ignored" })).toContain("system\nS<|im_end|>");
    expect(t.render(msgs, { systemPrompt: "Be brief." })).toContain("system\nBe brief.<|im_end|>");
  });
  it("passes the special tokens by name, from strings or {content} objects", () => {
    const t = new ChatTemplate({ source: LLAMA, file: "x" }, { bos_token: { content: "<s>" }, eos_token: "</s>" });
    expect(t.render(msgs, { systemPrompt: null })).toBe("<s>[user] Hi 你好</s>");
  });
  it("tools and documents are none, as transformers passes them", () => {
    const t = new ChatTemplate({ source: "{% if tools is not none %}T{% else %}N{% endif %}{% if documents is none %}D{% endif %}", file: "x" });
    expect(t.render(msgs)).toBe("ND");
    expect(t.render(msgs, { extra: { tools: [{ name: "f" }] } })).toBe("TD");
  });

  it("supports raise_exception with the file in the error", () => {
    const t = new ChatTemplate({ source: "{{ raise_exception('roles must alternate') }}", file: "tpl.jinja" });
    expect(() => t.render(msgs)).toThrow(/tpl.jinja.*roles must alternate/);
  });
});
