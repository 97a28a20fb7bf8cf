// The OpenAI-compatible API's logic, with no HTTP in it (http.ts is the transport): which model ids exist, how a
// request becomes prompt ids and engine options, and the reply as a stream of events (content deltas, tool calls,
// the end with usage) that http.ts writes as one JSON body or as server-sent events.
//
// Model ids: the loaded model is its folder's name; each finetune run of that model is "<model>:<run>" (its final
// adapter, or its latest checkpoint while it trains) and "<model>:<run>:step-<N>" per checkpoint: a request naming
// one runs the adapter unmerged on the loaded base, as Chat with checkpoint does. The API never opens another base
// model: that is the app's (or `serve --model`'s) choice, and would pull the model out from under the chat.
//
// One generation at a time (GenerationQueue, shared with the chat UI): a request waits its turn, first come first
// served; its AbortSignal (the client went away) takes it out of the line, or stops its generation within a token.
import { basename, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import type { ChatMessage } from "../../text/chat-template.js";
import { boundedText } from "../../text/bounded-text.js";
import type { GenerateOptions, GenerateResult, StopReason } from "../../engine/engine.js";
import type { LoadedModel, ModelService } from "../../services/models.js";
import { workerExitReason } from "../../services/models.js";
import { GenerationQueue, QueueFullError } from "../../services/generation-queue.js";
import type { SessionPool } from "../../services/session-pool.js";
import { ApiError, badRequest, type ChatCompletionRequest, type CompletionRequest, type FinishReason, type ModelObject, type Usage, type WireMessage, type WireToolCall } from "./wire.js";
import { forcedCall, newCallId, REACT_STOP, reactMessages, ToolCallStream, type ToolDef, type ToolSyntax } from "./tools.js";

/** A trained adapter the API can serve: a finetune run's final adapter or one checkpoint. */
export interface AdapterEntry {
  /** The base model folder it was trained on. */
  modelDir: string;
  run: string;
  /** null: the run's final adapter (or its latest checkpoint while it trains). */
  step: number | null;
  dir: string;
  createdAt: number;
}

export interface OpenAiServiceDeps {
  models: ModelService;
  /** Every adapter of every finetune run (the service keeps those of the loaded model). */
  adapters: () => AdapterEntry[];
  queue: GenerationQueue;
  sessions: SessionPool;
  /** One line per finished request (`serve` prints them). */
  log?: (line: string) => void;
}

/** What a reply says as it is written. */
export type ReplyEvent =
  | { type: "content"; text: string }
  | { type: "tool_call"; index: number; call: WireToolCall }
  | { type: "done"; finish: FinishReason; usage: Usage; stopReason: StopReason };

export interface Reply {
  id: string;
  created: number;
  model: string;
  promptTokens: number;
  events: AsyncIterable<ReplyEvent>;
}

interface Target {
  id: string;
  loaded: LoadedModel;
  /** undefined: the model as loaded; a folder: that adapter. */
  adapter: string | undefined;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** Text of a message's content: a string, or its text parts joined by newlines (vLLM's reading). */
function contentText(c: WireMessage["content"]): string {
  if (c === null || c === undefined) return "";
  if (typeof c === "string") return c;
  return c.map((p) => (p as { text: string }).text).join("\n");
}

/** OpenAI's messages as the chat template reads them: tool call arguments as objects, "developer" as "system". */
export function templateMessages(messages: readonly WireMessage[]): ChatMessage[] {
  return messages.map((m) => {
    if (m.role === "assistant") {
      const out: ChatMessage = { role: "assistant", content: contentText(m.content) };
      if (m.tool_calls?.length) {
        out.tool_calls = m.tool_calls.map((c) => {
          let args: unknown = c.function.arguments;
          try {
            args = JSON.parse(c.function.arguments);
          } catch {
            // a client's malformed arguments stay the string it sent
          }
          return { ...(c.id ? { id: c.id } : {}), type: "function" as const, function: { name: c.function.name, arguments: args } };
        });
      }
      return out;
    }
    if (m.role === "tool") return { role: "tool", content: contentText(m.content), tool_call_id: m.tool_call_id };
    return { role: m.role === "developer" ? "system" : m.role, content: contentText(m.content) };
  });
}

export class OpenAiService {
  /** Per model folder: whether its template renders `tools` (hermes) or ignores them (react). */
  private readonly syntaxOf = new Map<string, ToolSyntax>();

  constructor(private readonly deps: OpenAiServiceDeps) {}

  /** The loaded model and its adapters, as /v1/models lists them (waiting for a load in progress). */
  async listModels(): Promise<ModelObject[]> {
    const loaded = this.deps.models.current() ?? (await this.deps.models.ready().catch(() => null));
    if (!loaded) return [];
    return this.targets(loaded).map(({ id, entry }) => ({
      id,
      object: "model",
      created: Math.floor((entry?.createdAt ?? Date.now()) / 1000),
      owned_by: "moe-studio",
      root: basename(loaded.dir),
      parent: entry ? basename(loaded.dir) : null,
    }));
  }

  private targets(loaded: LoadedModel): Array<{ id: string; entry: AdapterEntry | null }> {
    const base = basename(loaded.dir);
    const out: Array<{ id: string; entry: AdapterEntry | null }> = [{ id: base, entry: null }];
    const seen = new Set([base]);
    for (const a of this.deps.adapters()) {
      if (resolve(a.modelDir) !== resolve(loaded.dir)) continue;
      const id = a.step === null ? `${base}:${a.run}` : `${base}:${a.run}:step-${a.step}`;
      if (seen.has(id)) continue; // two runs of one name: the first (newest) keeps it
      seen.add(id);
      out.push({ id, entry: a });
    }
    return out;
  }

  private async target(model: string): Promise<Target> {
    const loaded = this.deps.models.current() ?? (await this.deps.models.ready().catch(() => null));
    if (!loaded) {
      throw new ApiError(404, `The model '${model}' does not exist: no model is loaded (open one in MoE Studio, or start "moe-studio serve --model DIR")`, "not_found_error", "model", "model_not_found");
    }
    const t = this.targets(loaded).find((x) => x.id === model);
    if (!t) {
      const ids = this.targets(loaded).map((x) => x.id);
      throw new ApiError(404, `The model '${model}' does not exist; this server has: ${ids.join(", ")}`, "not_found_error", "model", "model_not_found");
    }
    return { id: t.id, loaded, adapter: t.entry?.dir };
  }

  /** hermes if the model's template writes the tools into the prompt, react if it ignores them (or there is none). */
  private async toolSyntax(loaded: LoadedModel): Promise<ToolSyntax> {
    const known = this.syntaxOf.get(loaded.dir);
    if (known) return known;
    let syntax: ToolSyntax = "react";
    if (loaded.template) {
      const probe: ChatMessage[] = [{ role: "user", content: "hi" }];
      const tool = { type: "function", function: { name: "probe_tool_7f3a", description: "probe", parameters: { type: "object", properties: {} } } };
      const [plain, withTools] = await boundedText().render(loaded.template, [
        { messages: probe, opts: { systemPrompt: null } },
        { messages: probe, opts: { systemPrompt: null, extra: { tools: [tool] } } },
      ]);
      if (plain !== withTools && withTools.includes("probe_tool_7f3a")) syntax = "hermes";
    }
    this.syntaxOf.set(loaded.dir, syntax);
    return syntax;
  }

  /** Prompt text for messages: the model's template, or a plain transcript it can continue when it has none. */
  private async renderPrompt(loaded: LoadedModel, messages: ChatMessage[], tools: readonly ToolDef[] | null): Promise<string> {
    if (loaded.template) {
      const extra = tools ? { tools } : {};
      return (await boundedText().render(loaded.template, [{ messages, opts: { systemPrompt: null, addGenerationPrompt: true, extra } }]))[0];
    }
    const who = (r: string) => (r === "user" ? "User" : r === "assistant" ? "Assistant" : r === "system" ? "System" : r[0].toUpperCase() + r.slice(1));
    return [...messages.map((m) => `${who(m.role)}: ${m.content}`), "Assistant:"].join("\n\n");
  }

  async chat(req: ChatCompletionRequest, signal: AbortSignal): Promise<Reply> {
    const t = await this.target(req.model);
    const tools = req.tools?.length && req.tool_choice !== "none" ? (req.tools as ToolDef[]) : null;
    const choice = req.tool_choice ?? "auto";
    if (choice === "required" && !tools) throw badRequest('tool_choice "required" needs tools', "tool_choice");
    let forcedNames: string[] | null = null;
    if (typeof choice === "object") {
      if (!tools?.some((x) => x.function.name === choice.function.name)) {
        throw badRequest(`tool_choice names the function '${choice.function.name}', which is not in tools`, "tool_choice.function.name");
      }
      forcedNames = [choice.function.name];
    } else if (choice === "required") forcedNames = tools!.map((x) => x.function.name);
    const json = req.response_format?.type === "json_object";
    if (json && tools) throw badRequest("response_format json_object cannot be combined with tools: a tool call is not a JSON object reply", "response_format");

    const syntax = tools ? await this.toolSyntax(t.loaded) : null;
    let messages = templateMessages(req.messages);
    if (tools && syntax === "react") messages = reactMessages(messages, tools);
    let prompt = await this.renderPrompt(t.loaded, messages, tools && syntax === "hermes" ? tools : null);
    const forced = forcedNames && syntax ? forcedCall(syntax, forcedNames) : null;
    if (forced) prompt += forced.prefix;
    const ids = await boundedText().encode(t.loaded.dir, prompt, { addSpecialTokens: false });

    const stops = typeof req.stop === "string" ? [req.stop] : [...(req.stop ?? [])];
    if (syntax === "react") stops.push(REACT_STOP);
    const options = this.options(t, req, req.max_completion_tokens ?? req.max_tokens, ids.length, stops, "messages");
    if (forced) options.constraint = { oneOf: forced.oneOf, jsonObject: true };
    else if (json) options.constraint = { jsonObject: true };

    const split = syntax ? new ToolCallStream(syntax) : null;
    const prefix = forced?.prefix ?? "";
    const suffix = forced?.suffix ?? "";
    return this.run(t, ids, options, signal, "chatcmpl", async function* (deltas, result) {
      let index = 0;
      const calls = (list: ReturnType<ToolCallStream["push"]>["calls"]) =>
        list.map((c) => ({ type: "tool_call" as const, index: index++, call: { id: newCallId(), type: "function" as const, function: c } }));
      const content = (text: string) => (text ? [{ type: "content" as const, text }] : []);
      if (split && prefix) {
        const o = split.push(prefix);
        yield* content(o.content);
        yield* calls(o.calls);
      }
      for await (const d of deltas) {
        if (!split) {
          yield* content(d);
          continue;
        }
        const o = split.push(d);
        yield* content(o.content);
        yield* calls(o.calls);
      }
      const r = await result;
      if (split) {
        // a forced call is closed here, unless the arguments ran out of tokens first (then it stays text)
        const o1 = forced && r.stats.stopReason === "eos" ? split.push(suffix) : { content: "", calls: [] };
        const o2 = split.end();
        yield* content(o1.content + o2.content);
        yield* calls([...o1.calls, ...o2.calls]);
      }
      return index > 0;
    });
  }

  async completion(req: CompletionRequest, signal: AbortSignal): Promise<Reply> {
    const t = await this.target(req.model);
    const p = req.prompt;
    const isIds = Array.isArray(p) && typeof p[0] === "number";
    const text = isIds ? null : typeof p === "string" ? p : (p as string[])[0];
    const ids = isIds ? [...(p as number[])] : await boundedText().encode(t.loaded.dir, text!, { addSpecialTokens: true });
    if (ids.length === 0) throw badRequest("prompt is empty", "prompt");
    const vocab = t.loaded.model.info.vocabSize;
    if (isIds) for (const [i, id] of ids.entries()) if (id >= vocab) throw badRequest(`prompt[${i}]: token id ${id} is outside the vocabulary [0, ${vocab})`, `prompt[${i}]`);
    const stops = typeof req.stop === "string" ? [req.stop] : [...(req.stop ?? [])];
    const options = this.options(t, req, req.max_tokens ?? 16, ids.length, stops, "prompt");
    const echo = req.echo ? (text ?? t.loaded.tokenizer.decode(ids)) : "";
    return this.run(t, ids, options, signal, "cmpl", async function* (deltas) {
      if (echo) yield { type: "content" as const, text: echo };
      for await (const d of deltas) if (d) yield { type: "content" as const, text: d };
      return false;
    });
  }

  /** logit_bias with its ids checked against the vocabulary (a 400 naming the key). */
  private logitBias(t: Target, bias: Record<string, number>): Record<number, number> {
    const vocab = t.loaded.model.info.vocabSize;
    const out: Record<number, number> = {};
    for (const [k, v] of Object.entries(bias)) {
      const id = Number(k);
      if (id >= vocab) throw badRequest(`logit_bias: token id ${k} is outside the vocabulary [0, ${vocab})`, `logit_bias.${k}`);
      out[id] = v;
    }
    return out;
  }

  /** Engine options from the request; the model's generation_config fills what the request leaves out. */
  private options(t: Target, req: ChatCompletionRequest | CompletionRequest, maxTokens: number | null | undefined, promptTokens: number, stop: string[], promptName: string): GenerateOptions {
    const ctx = t.loaded.card.sessionContextLength;
    if (promptTokens >= ctx) {
      throw badRequest(`This model's maximum context length is ${ctx} tokens. However, your ${promptName} resulted in ${promptTokens} tokens. Please reduce the length of the ${promptName}.`, promptName, "context_length_exceeded");
    }
    if (maxTokens != null && promptTokens + maxTokens > ctx) {
      throw badRequest(
        `This model's maximum context length is ${ctx} tokens. However, you requested ${promptTokens + maxTokens} tokens (${promptTokens} in the ${promptName}, ${maxTokens} in the completion). Please reduce the length of the ${promptName} or completion.`,
        "max_tokens", "context_length_exceeded");
    }
    // what the request leaves out, the engine takes from the model's generation_config (LoadedModel.info.sampling)
    const o: GenerateOptions = { maxTokens: maxTokens ?? ctx - promptTokens };
    if (req.temperature != null) o.temperature = req.temperature;
    if (req.top_p != null) o.topP = req.top_p;
    if (req.top_k != null) o.topK = req.top_k;
    if (req.min_p != null) o.minP = req.min_p;
    if (req.repetition_penalty != null) o.repetitionPenalty = req.repetition_penalty;
    if (req.presence_penalty) o.presencePenalty = req.presence_penalty;
    if (req.frequency_penalty) o.frequencyPenalty = req.frequency_penalty;
    if (req.logit_bias && Object.keys(req.logit_bias).length) o.logitBias = this.logitBias(t, req.logit_bias);
    if (req.seed != null) o.seed = req.seed >>> 0;
    if (stop.length) o.stop = stop;
    return o;
  }

  /**
   * Wait for the slot, generate, and hand the deltas to `shape` (content / tool calls); the slot is released when the
   * reply ends, however it ends. shape returns whether it produced tool calls (finish_reason "tool_calls").
   */
  private async run(t: Target, ids: number[], options: GenerateOptions, signal: AbortSignal, prefix: string,
    shape: (deltas: AsyncIterable<string>, result: Promise<GenerateResult>) => AsyncGenerator<ReplyEvent, boolean>): Promise<Reply> {
    let release: () => void;
    try {
      release = await this.deps.queue.acquire(signal, "api");
    } catch (e) {
      if (e instanceof QueueFullError) throw new ApiError(429, e.message, "rate_limit_error", null, "queue_full");
      throw e;
    }
    const id = `${prefix}-${randomBytes(12).toString("hex")}`;
    const created = nowSeconds();
    const started = Date.now();
    const log = this.deps.log;
    const sessions = this.deps.sessions;
    let gen;
    try {
      const session = await sessions.get("api", t.loaded.model, t.adapter);
      gen = session.generate({ ids }, { ...options, signal });
    } catch (e) {
      release();
      throw engineFailure(e, sessions, t);
    }
    const generation = gen;
    // the engine is free once the generation has ended, whether or not anyone read the reply to its end
    void generation.result.then(release, release);
    async function* events(): AsyncGenerator<ReplyEvent> {
      let stats: GenerateResult["stats"] | null = null;
      try {
        const calls = yield* shape(generation, generation.result);
        const r = await generation.result;
        stats = r.stats;
        const finish: FinishReason = calls ? "tool_calls" : r.stats.stopReason === "length" ? "length" : "stop";
        const usage = { prompt_tokens: ids.length, completion_tokens: r.stats.completionTokens, total_tokens: ids.length + r.stats.completionTokens };
        yield { type: "done", finish, usage, stopReason: r.stats.stopReason };
      } catch (e) {
        throw engineFailure(e, sessions, t);
      } finally {
        // a consumer that stops reading (the client went away) ends the generation too
        if (!stats) generation.cancel();
        await generation.result.catch(() => undefined);
        const s = stats ?? (await generation.result.then((r) => r.stats, () => null));
        log?.(`${t.id}: ${ids.length} prompt + ${s?.completionTokens ?? 0} completion tokens, ${s?.stopReason ?? "failed"}, ${Date.now() - started} ms`);
      }
    }
    return { id, created, model: t.id, promptTokens: ids.length, events: events() };
  }
}

/** An engine failure as the API reports it: 503 when the worker died (the app is loading the model again). */
function engineFailure(e: unknown, sessions: SessionPool, t: Target): Error {
  if (e instanceof ApiError) return e;
  const why = workerExitReason(e);
  if (why) {
    sessions.forget(t.loaded.model);
    return new ApiError(503, `The engine stopped unexpectedly (${why}); the model is being loaded again. Retry the request.`, "service_unavailable", null, "engine_restarted");
  }
  return new ApiError(500, (e instanceof Error ? e.message : String(e)).split("\n")[0], "server_error");
}
