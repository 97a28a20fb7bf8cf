// The OpenAI API's wire format, as far as this server speaks it: request schemas (zod, so a bad request is a 400
// naming the field, as OpenAI's `param`), response shapes, and OpenAI's error JSON.
//
// Requests are read leniently where clients differ (unknown fields are ignored, as vLLM and LM Studio do: SDKs
// add fields such as `store` or `metadata` that mean nothing here) and strictly where a field would change the answer
// and this server cannot honour it (n > 1, logprobs, images, json_schema): those are refused, never silently dropped.
import { z } from "zod";

// ---------------------------------------------------------------- errors

export type ApiErrorType = "invalid_request_error" | "authentication_error" | "not_found_error" | "rate_limit_error" | "server_error" | "service_unavailable";

/** An error the HTTP layer writes as OpenAI does: {"error": {message, type, param, code}} with `status`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }

  body(): { error: { message: string; type: ApiErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null) => new ApiError(400, message, "invalid_request_error", param, code);

/** "messages[1].content" from zod's path ["messages", 1, "content"]. */
export function paramPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

/** The first problem of a request body, as a 400 naming its field. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const param = paramPath(issue.path);
  throw badRequest(param ? `${param}: ${issue.message}` : issue.message, param || null);
}

// ---------------------------------------------------------------- shared request fields

const stop = z.union([z.string(), z.array(z.string()).max(4, "at most 4 stop sequences")]).nullish();

/** Sampling fields of both endpoints. OpenAI's ranges; top_k, min_p and repetition_penalty are vLLM's extensions. */
const sampling = {
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.number().int().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  logit_bias: z.record(z.string().regex(/^\d+$/, "logit_bias keys are token ids"), z.number().min(-100).max(100)).nullish(),
  seed: z.number().int().nullish(),
  stop,
  n: z.literal(1, { message: "only n = 1 is supported" }).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  logprobs: z.union([z.literal(false), z.null()], { message: "logprobs are not supported" }).optional(),
  user: z.string().nullish(),
};

// ---------------------------------------------------------------- chat completions

const textPart = z.object({ type: z.literal("text"), text: z.string() });
/** Message content: a string, or parts of which only text is understood here (no vision models yet). */
const content = z.union([
  z.string(),
  z.array(z.union([textPart, z.object({ type: z.string() }).loose().transform((p, ctx) => {
    ctx.addIssue({ code: "custom", message: `content parts of type "${p.type}" are not supported (text only)` });
    return z.NEVER;
  })])),
]);

const toolCall = z.object({
  id: z.string().optional(),
  type: z.literal("function"),
  function: z.object({ name: z.string().min(1), arguments: z.string() }),
});

const message = z.discriminatedUnion("role", [
  z.object({ role: z.literal("system"), content, name: z.string().optional() }),
  // "developer" is the newer name OpenAI gives the system role
  z.object({ role: z.literal("developer"), content, name: z.string().optional() }),
  z.object({ role: z.literal("user"), content, name: z.string().optional() }),
  z.object({ role: z.literal("assistant"), content: content.nullish(), tool_calls: z.array(toolCall).nullish(), name: z.string().optional() }),
  z.object({ role: z.literal("tool"), content, tool_call_id: z.string() }),
]);
export type WireMessage = z.infer<typeof message>;

const functionName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "a function name is 1 to 64 letters, digits, _ . or -");
const tool = z.object({
  type: z.literal("function"),
  function: z.object({
    name: functionName,
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().nullish(),
  }),
});

const toolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) }),
]);

const responseFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({ type: z.literal("json_schema") }).loose().transform((_, ctx) => {
    ctx.addIssue({ code: "custom", message: 'json_schema is not supported; use {"type": "json_object"}' });
    return z.NEVER;
  }),
]);

export const ChatCompletionRequest = z.object({
  model: z.string().min(1),
  messages: z.array(message).min(1, "at least one message"),
  ...sampling,
  max_completion_tokens: z.number().int().min(1).nullish(),
  tools: z.array(tool).max(128).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  response_format: responseFormat.nullish(),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest>;

// ---------------------------------------------------------------- completions

export const CompletionRequest = z.object({
  model: z.string().min(1),
  // a string, one string in a list, or token ids (OpenAI's forms; a batch of several prompts is not supported)
  prompt: z.union([z.string(), z.array(z.string()).length(1, "only one prompt per request"), z.array(z.number().int().min(0)).min(1)]),
  ...sampling,
  echo: z.boolean().nullish(),
  suffix: z.null({ message: "suffix (fill-in-the-middle) is not supported" }).optional(),
  best_of: z.literal(1, { message: "only best_of = 1 is supported" }).nullish(),
});
export type CompletionRequest = z.infer<typeof CompletionRequest>;

// ---------------------------------------------------------------- responses

export type FinishReason = "stop" | "length" | "tool_calls";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface WireToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface ModelObject {
  id: string;
  object: "model";
  created: number;
  owned_by: string;
  /** MoE Studio's own: the base model folder's name, and for an adapter the run and checkpoint. */
  root?: string;
  parent?: string | null;
}
