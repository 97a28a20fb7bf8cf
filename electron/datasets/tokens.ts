// Token counts of samples for a chosen model, without the engine: the model folder's tokenizer.json and chat
// template (electron/text). A sample is counted as the trainer sees it: its messages rendered by the chat
// template exactly as given (no default system prompt added, no generation prompt: the assistant's reply is part
// of the text), then tokenized like transformers' apply_chat_template(tokenize=True).
//
// Identity: sha256 over tokenizer.json, tokenizer_config.json and the template source. Counts are cached per
// (identity, sample revision), so swapping a model folder for one with another tokenizer never reuses counts,
// and the same tokenizer in two folders shares them.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { SampleMessage } from "../contract.js";
import { ChatTemplate } from "../text/chat-template.js";
import { TextTokenizer } from "../text/tokenizer.js";

export class SampleTokenCounter {
  private constructor(
    readonly dir: string,
    /** "sha256:<hex>" */
    readonly key: string,
    private readonly tokenizer: TextTokenizer,
    private readonly template: ChatTemplate,
  ) {}

  /** Throws a readable error naming the file when the folder has no usable tokenizer or chat template. */
  static fromFolder(dir: string): SampleTokenCounter {
    const tokenizer = TextTokenizer.fromFolder(dir);
    const template = ChatTemplate.fromFolder(dir);
    if (!template) throw new Error(`${dir}: the model folder has no chat template (tokenizer_config.json "chat_template" or chat_template.jinja)`);
    const h = createHash("sha256");
    h.update(readFileSync(join(dir, "tokenizer.json")));
    h.update("\0");
    const tc = join(dir, "tokenizer_config.json");
    if (existsSync(tc)) h.update(readFileSync(tc));
    h.update("\0");
    h.update(template.src.source);
    return new SampleTokenCounter(dir, `sha256:${h.digest("hex")}`, tokenizer, template);
  }

  /** The text the trainer tokenizes for this sample. */
  render(messages: readonly SampleMessage[]): string {
    return this.template.render(messages, { addGenerationPrompt: false, systemPrompt: null });
  }

  count(messages: readonly SampleMessage[]): number {
    return this.tokenizer.encodeChat(this.render(messages)).length;
  }
}
