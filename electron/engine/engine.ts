// The app's engine API: plain Node (no `electron` import), used by the CLI, the tests and the engine worker.
//
//   const model = await loadModel(dir, { threads, onProgress });
//   const chat = model.chat();
//   const gen = chat.generate([{ role: "user", content: "hi" }], { maxTokens: 64, signal });
//   for await (const delta of gen) process.stdout.write(delta);
//   const { text, ids, stats } = await gen.result;
//
// Text lives here, ids live in the addon: the chat template renders messages to a prompt, the tokenizer turns
// it into ids, the native session generates ids on its own thread (prefilling only what its KV cache lacks),
// and an incremental detokenizer turns the ids back into text deltas.
import { given, type ModelLoadOptions } from "./load-options.js";
import { loadAddon, type NativeModel, type NativeModelInfo, type NativeSession, type NativeSamplingParams, type NativeConstraint } from "./addon.js";
import { readModelFolder, type ModelFolder, type SamplingDefaults } from "./model-folder.js";
import { TextTokenizer } from "../text/tokenizer.js";
import { tokenBytes } from "../text/token-bytes.js";
import { ChatTemplate, type ChatMessage } from "../text/chat-template.js";
import { DeltaStream } from "./delta-stream.js";
import { boundedText } from "../text/bounded-text.js";

export type { ChatMessage } from "../text/chat-template.js";
export type { SamplingDefaults } from "./model-folder.js";

export interface ModelInfo extends NativeModelInfo {
  dir: string;
  eosIds: number[];
  sampling: SamplingDefaults;
  hasChatTemplate: boolean;
  /** The context a chat session gets (what chat() opens sessions with): min(contextLength, CHAT_CONTEXT_CAP). */
  sessionContextLength: number;
  /** weights (mapped) + the KV cache of one session at sessionContextLength. */
  estimatedMemoryBytes: number;
}

/**
 * A chat session's context unless asked for more: the KV cache is kvBytesPerToken × context, allocated per
 * session, and a model's max_position_embeddings (32k–256k) would cost GiBs that a chat rarely fills (Mixtral-8x7B:
 * 128 KiB/token in f16, so 8192 tokens = 1 GiB, 32768 = 4 GiB).
 */
export const CHAT_CONTEXT_CAP = 8192;

export function sessionContextLength(info: Pick<NativeModelInfo, "contextLength">): number {
  return Math.min(info.contextLength, CHAT_CONTEXT_CAP);
}

/** loadModel's options: ModelLoadOptions (load-options.ts), and the load's progress. */
export interface LoadOptions extends ModelLoadOptions {
  onProgress?: (done: number, total: number) => void;
}

export interface GenerateOptions {
  maxTokens?: number;
  temperature?: number;          // 0 = greedy
  topP?: number;
  topK?: number;
  minP?: number;
  repetitionPenalty?: number;
  /** OpenAI's, over the generated tokens: logit -= (count > 0) * presencePenalty + count * frequencyPenalty; [-2, 2]. */
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Token id -> bias in [-100, 100] added to its logit before sampling (OpenAI's logit_bias; -100 bans it). */
  logitBias?: Record<number, number>;
  /**
   * Only text that spells one of `oneOf` (when given) and then one JSON object; generation ends (stopReason "eos")
   * when the object closes. Used for response_format json_object and forced tool calls.
   */
  constraint?: NativeConstraint;
  seed?: number;
  /** Stop when the text contains one of these; the stop string is not emitted. */
  stop?: string[];
  signal?: AbortSignal;
  /** Override the model's eos ids ([] = never stop on eos, e.g. for benchmarks). */
  eosIds?: number[];
  /** For message input: system prompt when none is given (default "You are a helpful assistant."; null = none). */
  systemPrompt?: string | null;
  /** Hide special tokens in the text (default true). */
  skipSpecialTokens?: boolean;
}

export type StopReason = "eos" | "length" | "stop" | "cancelled";

export interface GenerateStats {
  promptTokens: number;
  reusedTokens: number;
  completionTokens: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  prefillMs: number;
  decodeMs: number;
  stopReason: StopReason;
}

export interface GenerateResult {
  text: string;
  ids: number[];
  promptIds: number[];
  stats: GenerateStats;
}

/** An async iterable of text deltas, plus the final result. Generation starts immediately. */
export interface Generation extends AsyncIterable<string> {
  readonly result: Promise<GenerateResult>;
  /** Ids received from the native loop so far. */
  readonly tokens: number;
  cancel(): void;
}

export type GenerateInput = readonly ChatMessage[] | { ids: number[] } | { prompt: string };

export class LoadedModel {
  constructor(
    readonly info: ModelInfo,
    readonly native: NativeModel,
    readonly tokenizer: TextTokenizer,
    readonly template: ChatTemplate | null,
    readonly folder: ModelFolder,
  ) {}

  private tokenBytesSet = false;

  /** Hands the addon every token's bytes, once, before the first constrained generation (text/token-bytes.ts). */
  ensureTokenBytes(): void {
    if (this.tokenBytesSet) return;
    const t = tokenBytes(this.tokenizer, this.info.vocabSize);
    this.native.setTokenBytes(t.data, t.offsets);
    this.tokenBytesSet = true;
  }

  /**
   * A conversation with its own KV cache (of info.sessionContextLength tokens unless asked for another size).
   * adapter: a PEFT adapter folder this session applies unmerged instead of the model's own (LoadOptions.adapter);
   * null: the bare base even when the model was loaded with an adapter.
   */
  chat(opts: { contextLength?: number; adapter?: string | null } = {}): ChatSession {
    return new ChatSession(this, this.native.createSession({ contextLength: opts.contextLength || this.info.sessionContextLength,
      ...(opts.adapter !== undefined ? { adapter: opts.adapter } : {}) }));
  }

  /**
   * Render messages with the model's chat template (default system prompt unless systemPrompt is null), in the text
   * worker under its limits (the template is untrusted code: electron/text/bounded-text.ts).
   */
  async renderChat(messages: readonly ChatMessage[], systemPrompt?: string | null): Promise<string> {
    if (!this.template) throw new Error(`${this.info.dir}: the model has no chat template (tokenizer_config.json "chat_template" or chat_template.jinja); pass token ids or raw text instead`);
    return (await boundedText().render(this.template, [{ messages, opts: { systemPrompt, addGenerationPrompt: true } }]))[0];
  }

  /** Logits of every position from a single prefill on a fresh cache: rows of vocabSize floats. */
  async logits(ids: number[], opts: { adapter?: string | null } = {}): Promise<Float32Array[]> {
    if (ids.length === 0) throw new Error("prompt is empty");
    const s = this.native.createSession(opts.adapter !== undefined ? { adapter: opts.adapter } : {});
    try {
      if (ids.length > s.contextLength) throw new Error(`prompt is ${ids.length} tokens, longer than the context of ${s.contextLength} tokens`);
      const flat = await s.logits(ids);
      const V = this.info.vocabSize;
      const rows: Float32Array[] = [];
      for (let t = 0; t < ids.length; t++) rows.push(flat.subarray(t * V, (t + 1) * V));
      return rows;
    } finally {
      s.dispose();
    }
  }

  close(): void {
    this.native.close();
  }
}

/** Load a model folder: native weights (mmap) + tokenizer + chat template + generation defaults. */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const folder = readModelFolder(dir);
  const tokenizer = TextTokenizer.fromFolder(dir);
  const template = ChatTemplate.fromFolder(dir);
  const { onProgress, ...options } = opts;
  const native = await loadAddon().loadModel(dir, given(options), onProgress);
  const ni = native.info();
  const info: ModelInfo = {
    ...ni,
    dir,
    eosIds: folder.eosIds,
    sampling: folder.sampling,
    hasChatTemplate: template !== null,
    sessionContextLength: sessionContextLength(ni),
    estimatedMemoryBytes: ni.weightBytes + ni.kvBytesPerToken * sessionContextLength(ni),
  };
  return new LoadedModel(info, native, tokenizer, template, folder);
}

/** Longest suffix of `text` that is a proper prefix of some stop string: that much must be held back. */
export function stopHoldback(text: string, stops: readonly string[]): number {
  let hold = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > hold; k--) {
      if (text.endsWith(s.slice(0, k))) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

export class ChatSession {
  private busy = false;
  private current: { cancel(): void } | null = null;

  constructor(readonly model: LoadedModel, readonly native: NativeSession) {}

  get contextLength(): number {
    return this.native.contextLength;
  }

  /** Ids currently in the KV cache. */
  cachedIds(): number[] {
    return this.native.cachedIds();
  }

  /** Prompt ids for an input: messages go through the chat template, {prompt} is raw text (+ BOS if the tokenizer adds one). */
  async promptIds(input: GenerateInput, systemPrompt?: string | null): Promise<number[]> {
    if (Array.isArray(input)) {
      if (input.length === 0) throw new Error("prompt is empty");
      return this.model.tokenizer.encodeChat(await this.model.renderChat(input as ChatMessage[], systemPrompt));
    }
    if ("ids" in (input as object)) return [...(input as { ids: number[] }).ids];
    return this.model.tokenizer.encode((input as { prompt: string }).prompt, { addSpecialTokens: true });
  }

  generate(input: GenerateInput, options: GenerateOptions = {}): Generation {
    const stream = new DeltaStream();
    let stopRequested = false;
    let cancelRequested = false;
    const cancel = () => {
      cancelRequested = true;
      this.native.cancel();
    };

    const result = (async (): Promise<GenerateResult> => {
      if (this.busy) throw new Error("this chat session is already generating; cancel it or wait for it to finish");
      this.busy = true;
      this.current = { cancel };
      const onAbort = () => cancel();
      try {
        const promptIds = await this.promptIds(input, options.systemPrompt);
        if (promptIds.length === 0) throw new Error("prompt is empty");
        const ctx = this.native.contextLength;
        if (promptIds.length >= ctx) {
          throw new Error(`prompt is ${promptIds.length} tokens, longer than the context of ${ctx} tokens (it must leave room for at least one new token)`);
        }
        const vocab = this.model.info.vocabSize;
        for (const id of promptIds) {
          if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new Error(`prompt token id ${id} is outside the vocabulary [0, ${vocab})`);
        }
        const d = this.model.info.sampling;
        const maxTokens = Math.min(options.maxTokens ?? d.maxTokens, ctx - promptIds.length);
        if (!(maxTokens >= 1)) throw new Error(`maxTokens must be >= 1, got ${options.maxTokens}`);
        if (options.constraint) this.model.ensureTokenBytes();
        const params: NativeSamplingParams = {
          temperature: options.temperature ?? d.temperature,
          topK: options.topK ?? d.topK,
          topP: options.topP ?? d.topP,
          minP: options.minP ?? d.minP,
          repetitionPenalty: options.repetitionPenalty ?? d.repetitionPenalty,
          ...(options.presencePenalty ? { presencePenalty: options.presencePenalty } : {}),
          ...(options.frequencyPenalty ? { frequencyPenalty: options.frequencyPenalty } : {}),
          ...(options.logitBias && Object.keys(options.logitBias).length ? { logitBias: options.logitBias } : {}),
          ...(options.constraint ? { constraint: options.constraint } : {}),
          seed: (options.seed ?? Math.floor(Math.random() * 0x100000000)) >>> 0,
          maxTokens,
          eosIds: options.eosIds ?? this.model.info.eosIds,
        };

        const stops = (options.stop ?? []).filter((s) => s.length > 0);
        const detok = this.model.tokenizer.detokenizer({ skipSpecialTokens: options.skipSpecialTokens ?? true });
        const ids: number[] = [];
        let text = "";          // all decoded text
        let emitted = 0;        // text[0:emitted] has been handed to the consumer
        const emit = (upto: number) => {
          if (upto > emitted) {
            stream.push(text.slice(emitted, upto));
            emitted = upto;
          }
        };
        // Stop strings: search only the region a new delta can complete, hold back a partial match at the end.
        const maxStop = stops.reduce((m, s) => Math.max(m, s.length), 0);
        const onText = (delta: string, final: boolean) => {
          if (stopRequested) return;
          const searchFrom = Math.max(0, text.length - maxStop + 1);
          text += delta;
          for (const s of stops) {
            const at = text.indexOf(s, searchFrom);
            if (at >= 0) {
              stopRequested = true;
              text = text.slice(0, at);
              emit(text.length);
              this.native.cancel();
              return;
            }
          }
          emit(final ? text.length : text.length - stopHoldback(text, stops));
        };

        if (options.signal?.aborted) cancelRequested = true;
        options.signal?.addEventListener("abort", onAbort, { once: true });
        let nres;
        if (cancelRequested) {
          nres = { ids: [], stopReason: "cancelled" as const, promptTokens: promptIds.length, reusedTokens: 0, prefillMs: 0, decodeMs: 0 };
        } else {
          nres = await this.native.generate(promptIds, params, (id) => {
            if (stopRequested) return;
            ids.push(id);
            stream.tokens = ids.length;
            onText(detok.push(id), false);
          });
        }
        if (!stopRequested) onText(detok.flush(), true);

        const stopReason: StopReason = stopRequested ? "stop" : nres.stopReason;
        const prefilled = nres.promptTokens - nres.reusedTokens;
        const stats: GenerateStats = {
          promptTokens: nres.promptTokens,
          reusedTokens: nres.reusedTokens,
          completionTokens: ids.length,
          prefillMs: nres.prefillMs,
          decodeMs: nres.decodeMs,
          prefillTokensPerSecond: nres.prefillMs > 0 ? (prefilled * 1000) / nres.prefillMs : 0,
          decodeTokensPerSecond: nres.decodeMs > 0 ? (nres.ids.length * 1000) / nres.decodeMs : 0,
          stopReason,
        };
        return { text, ids, promptIds, stats };
      } finally {
        options.signal?.removeEventListener("abort", onAbort);
        this.busy = false;
        this.current = null;
      }
    })();
    return stream.generation(result, cancel);
  }

  /** Stop the running generation (within one token). */
  cancel(): void {
    this.current?.cancel();
  }

  /** Forget the conversation's KV cache. */
  reset(): void {
    this.native.reset();
  }

  dispose(): void {
    this.native.dispose();
  }
}
