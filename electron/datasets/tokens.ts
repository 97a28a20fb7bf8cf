// Token counts of samples for a chosen model, without the engine: the model folder's tokenizer.json and chat
// template (electron/text). A sample is counted as the trainer sees it: its messages rendered by the chat
// template exactly as given (no default system prompt added, no generation prompt: the assistant's reply is part
// of the text), then tokenized like transformers' apply_chat_template(tokenize=True).
//
// Identity: sha256 over tokenizer.json, tokenizer_config.json and the template source. Counts are cached per
// (identity, sample revision), so swapping a model folder for one with another tokenizer never reuses counts,
// and the same tokenizer in two folders shares them.
//
// The template is untrusted code and samples can be long: rendering and tokenizing run in the text worker
// (electron/text/bounded-text.ts), many samples per message, never on the calling thread.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { SampleMessage } from "../contract.js";
import { ChatTemplate } from "../text/chat-template.js";
import { boundedText } from "../text/bounded-text.js";
import { TextTokenizer } from "../text/tokenizer.js";

/** As the trainer renders a sample: the messages exactly as given, the assistant's reply included. */
const SAMPLE_RENDER = { addGenerationPrompt: false, systemPrompt: null } as const;

export class SampleTokenCounter {
  private constructor(
    readonly dir: string,
    /** "sha256:<hex>" */
    readonly key: string,
    private readonly template: ChatTemplate,
  ) {}

  /** Throws a readable error naming the file when the folder has no usable tokenizer or chat template. */
  static fromFolder(dir: string): SampleTokenCounter {
    // Loaded here (and again in the worker) so a folder without a usable tokenizer is refused when it is chosen.
    TextTokenizer.fromFolder(dir);
    const template = ChatTemplate.fromFolder(dir);
    if (!template) throw new Error(`${dir}: the model folder has no chat template (tokenizer_config.json "chat_template" or chat_template.jinja)`);
    const h = createHash("sha256");
    h.update(readFileSync(join(dir, "tokenizer.json")));
    h.update("\0");
    const tc = join(dir, "tokenizer_config.json");
    if (existsSync(tc)) h.update(readFileSync(tc));
    h.update("\0");
    h.update(template.src.source);
    return new SampleTokenCounter(dir, `sha256:${h.digest("hex")}`, template);
  }

  /** The text the trainer tokenizes for this sample. */
  async render(messages: readonly SampleMessage[]): Promise<string> {
    return (await boundedText().render(this.template, [{ messages, opts: SAMPLE_RENDER }]))[0];
  }

  /** Token counts of many samples, in order: one worker job for all of them. */
  countMany(samples: ReadonlyArray<readonly SampleMessage[]>): Promise<number[]> {
    return boundedText().chatCounts(this.template, this.dir, samples, SAMPLE_RENDER);
  }

  async count(messages: readonly SampleMessage[]): Promise<number> {
    return (await this.countMany([messages]))[0];
  }
}
