// The OpenAI-compatible API as a user's tools see it: `moe-studio serve --api` started as its own process, spoken to by
// the official `openai` npm client (a client nobody here wrote). The fixture models are tiny and random, so what is
// checked is what the API promises whatever the model says: greedy replies equal transformers' greedy ids (the
// goldens), streamed text equals the plain reply, stop strings and max_tokens end it where they must, tool calls come
// back parsed with JSON arguments, a bad request is a 400 naming the field, a wrong key a 401, two clients are both
// answered, and a client that aborts mid-stream stops its generation. (Needs `npx tsc`; the web UI is a stand-in.)
import { request } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { golden, MODELS, ROOT } from "./fixtures.js";
import { fixtureCopy, serveApi, type Served } from "./serve-api.js";

const KEY = "sk-test-0123456789abcdef";
let tmp: string;

/** The template that takes tools (hermes syntax): test/fixtures/tool-calls/README.md. */
const TOOLS_TEMPLATE = join(ROOT, "test/fixtures/tool-calls/qwen2.5-tools.jinja");

const WEATHER: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: "function",
  function: { name: "get_weather", description: "The weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
};
const SEARCH: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: "function",
  function: { name: "search", description: "Search the web", parameters: { type: "object", properties: { q: { type: "string" } } } },
};

let plain: Served; // qwen3_moe as it ships (its template ignores tools: ReAct), with a key
let tools: Served; // with a template that takes tools (hermes), no key
let client: OpenAI;
const g = golden("qwen3_moe");

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "moe-openai-"));
  [plain, tools] = await Promise.all([serveApi(tmp, fixtureCopy(join(tmp, "plain", "qwen3_moe"), 2048), ["--api-key", KEY]),
    serveApi(tmp, fixtureCopy(join(tmp, "qwen3_moe-tools"), 2048, readFileSync(TOOLS_TEMPLATE, "utf8")), [])]);
  client = new OpenAI({ baseURL: plain.baseUrl, apiKey: KEY, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await Promise.all([plain?.stop(), tools?.stop()]);
  rmSync(tmp, { recursive: true, force: true });
});

const greedy = { temperature: 0, repetition_penalty: 1 } as Record<string, unknown>;

describe("serve --api with the openai client", () => {
  it("lists the loaded model", async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(["qwen3_moe"]);
    expect((await client.models.retrieve("qwen3_moe")).id).toBe("qwen3_moe");
  });

  it("answers a chat greedily with transformers' greedy tokens, and counts them", async () => {
    const r = await client.chat.completions.create({ model: "qwen3_moe", messages: g.messages as OpenAI.Chat.ChatCompletionMessageParam[], max_tokens: 24, ...greedy });
    const eosAt = g.greedy_ids.findIndex((id) => g.eos_token_ids.includes(id));
    expect(r.choices[0].message.content).toBe(g.greedy_text);
    expect(r.choices[0].finish_reason).toBe(eosAt >= 0 ? "stop" : "length");
    expect(r.usage).toEqual({ prompt_tokens: g.prompt_ids.length, completion_tokens: eosAt >= 0 ? eosAt : 24, total_tokens: g.prompt_ids.length + (eosAt >= 0 ? eosAt : 24) });
    expect(r.object).toBe("chat.completion");
    expect(r.id).toMatch(/^chatcmpl-/);
  });

  it("streams the same text, then the finish reason and the usage", async () => {
    const stream = await client.chat.completions.create({ model: "qwen3_moe", messages: g.messages as OpenAI.Chat.ChatCompletionMessageParam[], max_tokens: 24, stream: true, stream_options: { include_usage: true }, ...greedy });
    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      if (c.choices[0]?.delta.content) text += c.choices[0].delta.content;
      if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(g.greedy_text);
    expect(chunks).toBeGreaterThan(5); // token by token, not one blob
    expect(finish).not.toBeNull();
    expect(usage?.prompt_tokens).toBe(g.prompt_ids.length);
  });

  it("ends at a stop string (not included) and at max_tokens", async () => {
    const stopAt = g.greedy_text.slice(10, 13);
    const r = await client.chat.completions.create({ model: "qwen3_moe", messages: g.messages as OpenAI.Chat.ChatCompletionMessageParam[], max_tokens: 24, stop: [stopAt], ...greedy });
    expect(r.choices[0].message.content).toBe(g.greedy_text.slice(0, g.greedy_text.indexOf(stopAt)));
    expect(r.choices[0].finish_reason).toBe("stop");
    const short = await client.chat.completions.create({ model: "qwen3_moe", messages: [{ role: "user", content: "hi" }], max_tokens: 3, temperature: 0.8, seed: 7 });
    expect(short.usage?.completion_tokens).toBe(3);
    expect(short.choices[0].finish_reason).toBe("length");
    // the same seed gives the same reply
    const again = await client.chat.completions.create({ model: "qwen3_moe", messages: [{ role: "user", content: "hi" }], max_tokens: 3, temperature: 0.8, seed: 7 });
    expect(again.choices[0].message.content).toBe(short.choices[0].message.content);
  });

  it("completes raw text and token ids", async () => {
    const r = await client.completions.create({ model: "qwen3_moe", prompt: g.chat_prompt, max_tokens: 24, ...greedy });
    // the rendered chat prompt as raw text is the same ids (qwen's tokenizer adds no BOS), so the same greedy reply
    expect(r.choices[0].text).toBe(g.greedy_text);
    const ids = await client.completions.create({ model: "qwen3_moe", prompt: g.prompt_ids as unknown as string, max_tokens: 5, ...greedy });
    expect(ids.usage?.prompt_tokens).toBe(g.prompt_ids.length);
    expect(g.greedy_text.startsWith(ids.choices[0].text)).toBe(true);
  });

  it("says what is wrong: 400 naming the field, 404 for an unknown model, 401 for a wrong key", async () => {
    const bad = await client.chat.completions.create({ model: "qwen3_moe", messages: [{ role: "user", content: "hi" }], temperature: 5 }).catch((e) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect(bad.param).toBe("temperature");
    const n2 = await client.chat.completions.create({ model: "qwen3_moe", messages: [{ role: "user", content: "hi" }], n: 2 }).catch((e) => e);
    expect(n2.status).toBe(400);
    expect(n2.message).toContain("n = 1");
    const empty = await client.chat.completions.create({ model: "qwen3_moe", messages: [] }).catch((e) => e);
    expect(empty.param).toBe("messages");
    const long = await client.chat.completions.create({ model: "qwen3_moe", messages: [{ role: "user", content: "hi" }], max_tokens: 100_000 }).catch((e) => e);
    expect(long.status).toBe(400);
    expect(long.code).toBe("context_length_exceeded");
    const missing = await client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }).catch((e) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(missing.message).toContain("qwen3_moe");
    const wrong = new OpenAI({ baseURL: plain.baseUrl, apiKey: "sk-wrong-key-123456", maxRetries: 0 });
    const denied = await wrong.models.list().catch((e) => e);
    expect(denied).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(denied.code).toBe("invalid_api_key");
    // a browser form cannot start a generation: the body must be JSON
    const form = await fetch(`${plain.baseUrl}/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "text/plain" }, body: "{}" });
    expect(form.status).toBe(415);
  });

  it("refuses web pages and DNS rebinding, key or no key", async () => {
    // the keyless server: a page of another origin, or a name that is not this server's, is refused
    const url = new URL(`${tools.baseUrl}/models`);
    const get = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        request({ host: url.hostname, port: url.port, path: url.pathname, headers }, (res) => (res.resume(), resolve(res.statusCode!))).on("error", reject).end();
      });
    expect(await get({})).toBe(200);
    expect(await get({ origin: "https://evil.example" })).toBe(403);
    expect(await get({ host: `evil.example:${url.port}` })).toBe(421); // Misdirected Request: not a name of this server
    expect(await get({ host: `localhost:${url.port}` })).toBe(200);
  });

  it("answers two clients at once, each as if alone", async () => {
    const ask = (content: string) => client.chat.completions.create({ model: "qwen3_moe", messages: [{ role: "user", content }], max_tokens: 12, ...greedy });
    const alone = [(await ask("first")).choices[0].message.content, (await ask("second")).choices[0].message.content];
    const together = await Promise.all([ask("first"), ask("second")]);
    expect(together.map((r) => r.choices[0].message.content)).toEqual(alone);
  });

  it("stops the generation of a client that aborts mid-stream", async () => {
    const before = plain.err().length;
    const abort = new AbortController();
    const stream = await client.chat.completions.create(
      { model: "qwen3_moe", messages: [{ role: "user", content: "tell me a long story" }], max_tokens: 1500, temperature: 1, seed: 3, stream: true },
      { signal: abort.signal },
    );
    let got = 0;
    // openai's stream ends (or throws APIUserAbortError, by version) once its signal is aborted
    try {
      for await (const c of stream) {
        if (c.choices[0]?.delta.content) got++;
        if (got === 3) abort.abort();
      }
    } catch (e) {
      expect((e as Error).name).toMatch(/Abort/);
    }
    expect(got).toBe(3);
    // the server logs each finished generation: this one was cancelled, long before its 1500 tokens (unaborted, this
    // seed runs 1254 tokens, ~0.3 s on the tiny model: the client must abort before the server is done)
    const end = Date.now() + 10_000;
    let line: RegExpExecArray | null = null;
    while (!(line = /qwen3_moe: \d+ prompt \+ (\d+) completion tokens, cancelled/.exec(plain.err().slice(before))) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    expect(line, plain.err().slice(before)).not.toBeNull();
    expect(Number(line![1])).toBeLessThan(1000);
    // and the slot is free: the next request is answered
    const next = await client.chat.completions.create({ model: "qwen3_moe", messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
    expect(next.usage?.completion_tokens).toBeGreaterThan(0);
  });

  it("replies with one JSON object in json_object mode", async () => {
    // The random fixture model wanders inside strings, so unbiased replies mostly run out of tokens: each must still
    // open with the object and end by length or with an object JSON.parse reads.
    const vocab = JSON.parse(readFileSync(join(MODELS, "qwen3_moe/tokenizer.json"), "utf8")).model.vocab as Record<string, number>;
    const check = async (seed: number, logit_bias?: Record<string, number>) => {
      const r = await client.chat.completions.create({ model: "qwen3_moe", messages: [{ role: "user", content: "a JSON object please" }], response_format: { type: "json_object" }, temperature: 1, seed, max_tokens: 60, ...(logit_bias ? { logit_bias } : {}) });
      const text = r.choices[0].message.content!;
      expect(text.startsWith("{"), text).toBe(true);
      if (r.choices[0].finish_reason !== "stop") {
        expect(r.choices[0].finish_reason).toBe("length");
        expect(r.usage!.completion_tokens).toBe(60);
        return 0;
      }
      const v = JSON.parse(text);
      expect(typeof v === "object" && v !== null && !Array.isArray(v), text).toBe(true);
      return 1;
    };
    for (const seed of [1, 2, 3, 4]) await check(seed);
    // logit_bias towards JSON's punctuation (and a digit) makes the model close its objects: most replies complete.
    const bias = Object.fromEntries(['"', ":", "}", ",", "1"].map((t) => [String(vocab[t]), 3]));
    let complete = 0;
    for (let seed = 1; seed <= 8; seed++) complete += await check(seed, bias);
    expect(complete).toBeGreaterThanOrEqual(4);
    // a bias on an id past the vocabulary is a 400 naming it
    await expect(client.chat.completions.create({ model: "qwen3_moe", messages: [{ role: "user", content: "x" }], logit_bias: { "99999": 1 } })).rejects.toMatchObject({ status: 400, param: "logit_bias.99999" });
  });
});

describe("tool calls", () => {
  it("a forced call comes back as tool_calls with JSON arguments, and the result goes back in", async () => {
    const c = new OpenAI({ baseURL: tools.baseUrl, apiKey: "unused", maxRetries: 0 });
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: "user", content: "What is the weather in Paris?" }];
    const r = await c.chat.completions.create({ model: "qwen3_moe-tools", messages, tools: [WEATHER, SEARCH], tool_choice: { type: "function", function: { name: "get_weather" } }, temperature: 1, seed: 5, max_tokens: 200 });
    const choice = r.choices[0];
    expect(choice.finish_reason, JSON.stringify(choice)).toBe("tool_calls");
    const call = choice.message.tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe("get_weather");
    expect(call.id).toMatch(/^call_/);
    expect(typeof JSON.parse(call.function.arguments)).toBe("object");

    // the round trip: the call and its result rendered through the template, and the model answers
    const next = await c.chat.completions.create({
      model: "qwen3_moe-tools",
      messages: [...messages, choice.message, { role: "tool", tool_call_id: call.id, content: '{"temperature": 21}' }],
      tools: [WEATHER, SEARCH], max_tokens: 8, temperature: 0,
    });
    expect(next.usage!.prompt_tokens).toBeGreaterThan(r.usage!.prompt_tokens);
  });

  it('"required" picks one of the tools, streamed as a tool_calls delta', async () => {
    const c = new OpenAI({ baseURL: tools.baseUrl, apiKey: "unused", maxRetries: 0 });
    for (const seed of [1, 2]) {
      const stream = await c.chat.completions.create({ model: "qwen3_moe-tools", messages: [{ role: "user", content: "look something up" }], tools: [WEATHER, SEARCH], tool_choice: "required", temperature: 1, seed, max_tokens: 200, stream: true });
      const calls: Array<{ name?: string; arguments?: string }> = [];
      let finish = null;
      for await (const ch of stream) {
        for (const tc of ch.choices[0]?.delta.tool_calls ?? []) calls[tc.index] = { name: tc.function?.name, arguments: tc.function?.arguments };
        finish = ch.choices[0]?.finish_reason ?? finish;
      }
      expect(finish).toBe("tool_calls");
      expect(["get_weather", "search"]).toContain(calls[0].name);
      expect(typeof JSON.parse(calls[0].arguments!)).toBe("object");
    }
  });

  it("a template without tools gets them as a ReAct prompt, and the Action comes back as a call", async () => {
    const r = await client.chat.completions.create({ model: "qwen3_moe", messages: [{ role: "user", content: "search for MoE" }], tools: [WEATHER, SEARCH], tool_choice: "required", temperature: 1, seed: 9, max_tokens: 200 });
    expect(r.choices[0].finish_reason).toBe("tool_calls");
    const call = r.choices[0].message.tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    expect(["get_weather", "search"]).toContain(call.function.name);
    expect(typeof JSON.parse(call.function.arguments)).toBe("object");
    // the prompt carried the ReAct instruction: far longer than the bare question
    expect(r.usage!.prompt_tokens).toBeGreaterThan(100);
  });
});

describe("/docs", () => {
  it("serves an OpenAPI 3 document and a page that renders it, with a CSP", async () => {
    const base = plain.baseUrl.replace(/\/v1$/, "");
    const doc = await (await fetch(`${base}/openapi.json`)).json();
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/models", "/chat/completions", "/completions"]));
    const page = await fetch(`${base}/docs`);
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
    const html = await page.text();
    expect(html).toContain("/chat/completions");
    expect(html).not.toContain("<script");
  });
});
