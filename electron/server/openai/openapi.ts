// /openapi.json and /docs: the API described as an OpenAPI 3.1 document, and a page that renders it. The page is
// rendered here, on the server, from the same document (no script, nothing fetched from elsewhere: the app works
// offline and the page's CSP allows nothing but its own inline style, by hash).
import { createHash } from "node:crypto";

type Schema = Record<string, unknown>;

const str = (description: string, extra: Schema = {}): Schema => ({ type: "string", description, ...extra });
const num = (description: string, extra: Schema = {}): Schema => ({ type: "number", description, ...extra });
const int = (description: string, extra: Schema = {}): Schema => ({ type: "integer", description, ...extra });
const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });

const SAMPLING: Record<string, Schema> = {
  max_tokens: int("Most new tokens to generate. Default: what is left of the context (chat), 16 (completions).", { minimum: 1 }),
  temperature: num("0 is greedy. Default: the model's generation_config.json.", { minimum: 0, maximum: 2 }),
  top_p: num("Nucleus sampling. Default: the model's.", { exclusiveMinimum: 0, maximum: 1 }),
  top_k: int("Keep the k most likely tokens (0 or -1: off). Default: the model's.", { minimum: -1 }),
  min_p: num("Drop tokens less likely than min_p × the most likely.", { minimum: 0, maximum: 1 }),
  repetition_penalty: num("Hugging Face's repetition penalty over prompt and reply (1: off).", { exclusiveMinimum: 0, maximum: 10 }),
  presence_penalty: num("OpenAI's: subtracted from the logit of every token already in the reply.", { minimum: -2, maximum: 2 }),
  frequency_penalty: num("OpenAI's: subtracted once per earlier occurrence in the reply.", { minimum: -2, maximum: 2 }),
  logit_bias: { type: "object", description: "Token id (as a string) -> bias in [-100, 100] added to its logit; -100 bans the token.", additionalProperties: { type: "number", minimum: -100, maximum: 100 } },
  seed: int("Same seed, same request: same reply."),
  stop: { description: "Up to 4 strings; the reply ends before the first one (it is not included).", oneOf: [{ type: "string" }, { type: "array", items: { type: "string" }, maxItems: 4 }] },
  n: int("Only 1.", { enum: [1] }),
  stream: { type: "boolean", description: "Server-sent events: one chunk per delta, then `data: [DONE]`." },
  stream_options: { type: "object", properties: { include_usage: { type: "boolean", description: "A last chunk with usage and no choices." } } },
};

const ERROR: Schema = {
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: { message: { type: "string" }, type: { type: "string" }, param: { type: ["string", "null"] }, code: { type: ["string", "null"] } },
      required: ["message", "type"],
    },
  },
};

const errors = (...codes: number[]) =>
  Object.fromEntries(codes.map((c) => [String(c), { description: ERROR_TEXT[c], content: { "application/json": { schema: ref("Error") } } }]));
const ERROR_TEXT: Record<number, string> = {
  400: "A bad request: the message names the field (`param`).",
  401: "No key, or the wrong one (`code`: invalid_api_key).",
  404: "No such model (the loaded model and its adapters are listed by /v1/models).",
  413: "The body is over 16 MiB.",
  415: "The body is not application/json.",
  429: "64 requests are already waiting for the model.",
  503: "The engine stopped and is loading the model again: retry.",
};

export function openApiDocument(serverUrl: string): Schema {
  return {
    openapi: "3.1.0",
    info: {
      title: "MoE Studio API",
      version: "1",
      description:
        "OpenAI-compatible API of the model MoE Studio has loaded. Any OpenAI client works: set its base URL to this " +
        "server's /v1 and its API key to the key shown in Settings (or given with --api-key). One generation runs at a " +
        "time; requests wait their turn in the order they came. A client that disconnects cancels its generation.",
    },
    servers: [{ url: serverUrl }],
    security: [{ bearer: [] }],
    paths: {
      "/models": {
        get: {
          summary: "List models",
          description: "The loaded model (its folder's name) and each finetune run of it as `<model>:<run>` (its final adapter) and `<model>:<run>:step-N` (each checkpoint).",
          responses: { 200: { description: "The models", content: { "application/json": { schema: { type: "object", properties: { object: { const: "list" }, data: { type: "array", items: ref("Model") } } } } } }, ...errors(401) },
        },
      },
      "/models/{model}": {
        get: {
          summary: "One model",
          parameters: [{ name: "model", in: "path", required: true, schema: { type: "string" } }],
          responses: { 200: { description: "The model", content: { "application/json": { schema: ref("Model") } } }, ...errors(401, 404) },
        },
      },
      "/chat/completions": {
        post: {
          summary: "Chat completion",
          description:
            "The messages are rendered with the model's own chat template. With `tools`, a template that takes tools renders them and the model's " +
            "`<tool_call>` blocks come back as `tool_calls`; a template that does not gets them as a ReAct prompt (Action / Action Input). " +
            "`tool_choice` \"required\" or a named function makes the model call one, its arguments constrained to a JSON object. " +
            "`response_format` {\"type\": \"json_object\"} constrains the reply to one JSON object.",
          requestBody: { required: true, content: { "application/json": { schema: ref("ChatCompletionRequest") } } },
          responses: {
            200: {
              description: "The reply (application/json), or with stream: true server-sent events of chat.completion.chunk objects",
              content: { "application/json": { schema: ref("ChatCompletion") }, "text/event-stream": { schema: { type: "string" } } },
            },
            ...errors(400, 401, 404, 413, 415, 429, 503),
          },
        },
      },
      "/completions": {
        post: {
          summary: "Text completion",
          description: "The prompt as raw text (the tokenizer adds BOS where the model has one) or as token ids; no chat template.",
          requestBody: { required: true, content: { "application/json": { schema: ref("CompletionRequest") } } },
          responses: {
            200: { description: "The completion, or server-sent events of text_completion chunks", content: { "application/json": { schema: ref("Completion") }, "text/event-stream": { schema: { type: "string" } } } },
            ...errors(400, 401, 404, 413, 415, 429, 503),
          },
        },
      },
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "The API key (none needed on 127.0.0.1 when the server was started without one)." } },
      schemas: {
        Error: ERROR,
        Model: { type: "object", properties: { id: str("Pass it as `model`."), object: { const: "model" }, created: int("Unix seconds"), owned_by: str("moe-studio"), root: str("The base model"), parent: { type: ["string", "null"], description: "For an adapter: its base model" } } },
        Message: {
          type: "object",
          required: ["role"],
          properties: {
            role: { enum: ["system", "developer", "user", "assistant", "tool"] },
            content: { description: "A string, or text parts [{type: \"text\", text}]", oneOf: [{ type: "string" }, { type: "array", items: { type: "object", properties: { type: { const: "text" }, text: { type: "string" } } } }, { type: "null" }] },
            tool_calls: { type: "array", items: ref("ToolCall"), description: "An assistant turn's calls, sent back with the conversation" },
            tool_call_id: str("A tool turn: the call it answers"),
          },
        },
        Tool: { type: "object", required: ["type", "function"], properties: { type: { const: "function" }, function: { type: "object", required: ["name"], properties: { name: str("1-64 of A-Z a-z 0-9 _ . -"), description: str("What it does"), parameters: { type: "object", description: "JSON Schema of the arguments" } } } } },
        ToolCall: { type: "object", properties: { id: str("call_..."), type: { const: "function" }, function: { type: "object", properties: { name: { type: "string" }, arguments: str("JSON text of the arguments") } } } },
        ChatCompletionRequest: {
          type: "object",
          required: ["model", "messages"],
          properties: {
            model: str("An id from /v1/models"),
            messages: { type: "array", items: ref("Message"), minItems: 1 },
            ...SAMPLING,
            max_completion_tokens: int("Same as max_tokens.", { minimum: 1 }),
            tools: { type: "array", items: ref("Tool"), maxItems: 128 },
            tool_choice: { oneOf: [{ enum: ["none", "auto", "required"] }, { type: "object", properties: { type: { const: "function" }, function: { type: "object", properties: { name: { type: "string" } } } } }] },
            response_format: { type: "object", properties: { type: { enum: ["text", "json_object"] } } },
          },
        },
        ChatCompletion: {
          type: "object",
          properties: {
            id: str("chatcmpl-..."), object: { const: "chat.completion" }, created: int("Unix seconds"), model: { type: "string" },
            choices: { type: "array", items: { type: "object", properties: { index: int("0"), message: { type: "object", properties: { role: { const: "assistant" }, content: { type: ["string", "null"] }, tool_calls: { type: "array", items: ref("ToolCall") } } }, finish_reason: { enum: ["stop", "length", "tool_calls"] } } } },
            usage: ref("Usage"),
          },
        },
        CompletionRequest: {
          type: "object",
          required: ["model", "prompt"],
          properties: {
            model: str("An id from /v1/models"),
            prompt: { oneOf: [{ type: "string" }, { type: "array", items: { type: "string" }, maxItems: 1, minItems: 1 }, { type: "array", items: { type: "integer" }, minItems: 1 }] },
            ...SAMPLING,
            echo: { type: "boolean", description: "Start the text with the prompt" },
          },
        },
        Completion: {
          type: "object",
          properties: {
            id: str("cmpl-..."), object: { const: "text_completion" }, created: int("Unix seconds"), model: { type: "string" },
            choices: { type: "array", items: { type: "object", properties: { index: int("0"), text: { type: "string" }, finish_reason: { enum: ["stop", "length"] } } } },
            usage: ref("Usage"),
          },
        },
        Usage: { type: "object", properties: { prompt_tokens: { type: "integer" }, completion_tokens: { type: "integer" }, total_tokens: { type: "integer" } } },
      },
    },
  };
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

/** A schema as one line of text: its type, enum or reference, for the tables. */
function typeOf(s: Schema | undefined): string {
  if (!s) return "";
  if (typeof s.$ref === "string") return s.$ref.split("/").pop()!;
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (Array.isArray(s.oneOf)) return (s.oneOf as Schema[]).map(typeOf).join(" | ");
  if (s.type === "array") return `${typeOf(s.items as Schema)}[]`;
  return Array.isArray(s.type) ? s.type.join(" | ") : String(s.type ?? "object");
}

function schemaTable(name: string, s: Schema): string {
  const props = (s.properties ?? {}) as Record<string, Schema>;
  const required = new Set((s.required as string[] | undefined) ?? []);
  const rows = Object.entries(props)
    .map(([k, v]) => `<tr><td><code>${esc(k)}</code>${required.has(k) ? " *" : ""}</td><td><code>${esc(typeOf(v))}</code></td><td>${esc(String(v.description ?? ""))}</td></tr>`)
    .join("");
  return `<h3 id="schema-${esc(name)}">${esc(name)}</h3>${rows ? `<table><tr><th>field</th><th>type</th><th></th></tr>${rows}</table>` : ""}`;
}

const STYLE =
  "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}" +
  "code{font:13px ui-monospace,monospace;background:#f3f3f3;padding:0 .25em;border-radius:3px}" +
  "table{border-collapse:collapse;margin:.5rem 0 1.5rem;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}" +
  ".op{border-left:4px solid #3a7;padding-left:1rem;margin:1.5rem 0}.m{font-weight:700;text-transform:uppercase}";

export function docsPage(doc: Schema): { html: string; csp: string } {
  const info = doc.info as { title: string; description: string };
  const server = (doc.servers as Array<{ url: string }>)[0].url;
  const ops: string[] = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, Schema>>)) {
    for (const [method, op] of Object.entries(item)) {
      const body = ((op.requestBody as Schema | undefined)?.content as Record<string, { schema: Schema }> | undefined)?.["application/json"]?.schema;
      const responses = Object.entries(op.responses as Record<string, { description: string }>).map(([c, r]) => `<tr><td>${esc(c)}</td><td>${esc(r.description)}</td></tr>`).join("");
      ops.push(
        `<div class="op"><h2><span class="m">${esc(method)}</span> <code>${esc(server + path)}</code></h2><p>${esc(String(op.summary))}. ${esc(String(op.description ?? ""))}</p>` +
          (body ? `<p>Body: <a href="#schema-${esc(typeOf(body))}">${esc(typeOf(body))}</a></p>` : "") +
          `<table><tr><th>status</th><th></th></tr>${responses}</table></div>`,
      );
    }
  }
  const schemas = Object.entries((doc.components as { schemas: Record<string, Schema> }).schemas).map(([n, s]) => schemaTable(n, s)).join("");
  const html =
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(info.title)}</title><style>${STYLE}</style></head><body>` +
    `<h1>${esc(info.title)}</h1><p>${esc(info.description)}</p>` +
    `<pre><code>from openai import OpenAI\nclient = OpenAI(base_url="${esc(server)}", api_key="KEY")\nclient.chat.completions.create(model="MODEL", messages=[{"role": "user", "content": "Hello"}])</code></pre>` +
    `<p>The machine-readable document: <a href="/openapi.json">/openapi.json</a></p>${ops.join("")}<h2>Schemas</h2>${schemas}</body></html>`;
  const hash = createHash("sha256").update(STYLE).digest("base64");
  return { html, csp: `default-src 'none'; style-src 'sha256-${hash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'` };
}
