// Text side against transformers' goldens, for every fixture: tokenizer ids, decoded text, and the rendered
// chat prompt byte for byte (single turn and multi-turn), then the prompt ids apply_chat_template produced.
import { describe, expect, it } from "vitest";
import { ChatTemplate } from "../../electron/text/chat-template.js";
import { TextTokenizer } from "../../electron/text/tokenizer.js";
import { fixtureNames, golden, modelDir } from "../native/fixtures.js";

const names = fixtureNames();

describe("fixtures exist", () => {
  it("has at least one fixture with a golden", () => expect(names.length).toBeGreaterThan(0));
});

describe.each(names)("%s: text matches transformers", (name) => {
  const g = golden(name);
  const tok = TextTokenizer.fromFolder(modelDir(name));
  const tpl = ChatTemplate.fromFolder(modelDir(name));

  it("tokenize cases: ids (add_special_tokens=False and True) and decode", () => {
    for (const c of g.tokenize) {
      expect(tok.encode(c.text, { addSpecialTokens: false }), c.text).toEqual(c.ids);
      if (c.ids_with_special_tokens) expect(tok.encode(c.text), c.text).toEqual(c.ids_with_special_tokens);
      expect(tok.decode(c.ids), c.text).toBe(c.decoded);
    }
  });

  it("decode does not clean up spaces before punctuation unless the config asks (transformers 5 default)", () => {
    const text = "Hello , world . Is it ? yes ! don 't";
    const cfg = tok.config.clean_up_tokenization_spaces;
    if (cfg === true) return;
    expect(tok.decode(tok.encode(text, { addSpecialTokens: false }))).toBe(text);
  });

  it("chat prompt is byte-identical and tokenizes to the golden prompt ids", () => {
    expect(tpl).not.toBeNull();
    const prompt = tpl!.render(g.messages, { systemPrompt: null });
    expect(prompt).toBe(g.chat_prompt);
    expect(tok.encodeChat(prompt)).toEqual(g.prompt_ids);
  });

  it("multi-turn chat prompt is byte-identical and tokenizes to the golden prompt ids", () => {
    const prompt = tpl!.render(g.multi_turn.messages, { systemPrompt: null });
    expect(prompt).toBe(g.multi_turn.chat_prompt);
    expect(tok.encodeChat(prompt)).toEqual(g.multi_turn.prompt_ids);
  });

  it("the default system prompt gives the same prompt when the golden's system message is the default", () => {
    if (g.messages[0]?.role !== "system" || g.messages[0].content !== "You are a helpful assistant.") return;
    expect(tpl!.render(g.messages.slice(1))).toBe(g.chat_prompt);
  });

  it("streaming the greedy ids through the detokenizer gives decode(ids)", () => {
    const d = tok.detokenizer({ skipSpecialTokens: false });
    let text = "";
    for (const id of g.greedy_ids) text += d.push(id);
    text += d.flush();
    expect(text).toBe(tok.decode(g.greedy_ids));
  });
});
