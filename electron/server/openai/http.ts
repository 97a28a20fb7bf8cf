// The OpenAI-compatible API over HTTP: /v1/models, /v1/chat/completions, /v1/completions (JSON or server-sent
// events), /docs (the API described, an OpenAPI 3 document at /openapi.json). The logic is service.ts's; this file
// is routing, the key, the body, SSE and the client going away (which cancels its generation within a token).
//
// Who may call it:
//   - bound to 127.0.0.1 (the default), anyone on this machine who has the key, or anyone at all when no key is set
//     (as LM Studio and Ollama do); requests must name this server as their Host (a web page that resolves its own
//     name to 127.0.0.1 cannot use it: DNS rebinding) and a browser page of another origin is refused (Origin);
//   - bound to any other address, only holders of the key: startApiServer refuses to bind without one.
// POST bodies must be application/json: a cross-site form or a text/plain fetch (which needs no CORS preflight)
// cannot start a generation.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createHash, timingSafeEqual } from "node:crypto";
import { ApiError, ChatCompletionRequest, CompletionRequest, parseBody, type WireToolCall } from "./wire.js";
import type { OpenAiService, Reply } from "./service.js";
import { docsPage, openApiDocument } from "./openapi.js";

export const DEFAULT_API_PORT = 8378;
/** A chat request with a long conversation is a few hundred KiB; 16 MiB is far beyond any context. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const MIN_KEY_CHARS = 8;

export interface ApiServerOptions {
  service: OpenAiService;
  /** Default 127.0.0.1; any other address needs `key`. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  /** The key clients send as "Authorization: Bearer KEY"; null: none (loopback only). */
  key: string | null;
  /** One line per request that failed, or finished a generation. */
  log?: (line: string) => void;
}

export interface RunningApiServer {
  /** http://HOST:PORT/v1 — what an OpenAI client takes as its base URL. */
  baseUrl: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

export function isLoopback(host: string): boolean {
  return host === "127.0.0.1" || host === "::1" || host === "localhost";
}

/** A key the user chose, or an Error naming `source` and the rule it breaks. */
export function checkApiKey(key: string, source: string): string {
  if (key.length < MIN_KEY_CHARS) throw new Error(`${source}: an API key needs at least ${MIN_KEY_CHARS} characters, got ${key.length}`);
  if (key.length > 512) throw new Error(`${source}: an API key has at most 512 characters`);
  if (!/^[\x21-\x7e]+$/.test(key)) throw new Error(`${source}: an API key is printable ASCII without spaces`);
  return key;
}

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest();

export async function startApiServer(opts: ApiServerOptions): Promise<RunningApiServer> {
  const host = opts.host ?? "127.0.0.1";
  if (!isLoopback(host) && !opts.key) throw new Error(`the API binds to ${host} only with a key (--api-key KEY): any machine that can reach it could use the model`);
  if (opts.key) checkApiKey(opts.key, "API key");
  const keyDigest = opts.key ? sha256(opts.key) : null;
  let port = 0;
  const hostNames = () => [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];

  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      const err = e instanceof ApiError ? e : new ApiError(500, e instanceof Error ? e.message : String(e), "server_error");
      if (err.status >= 500) opts.log?.(`${req.method} ${req.url}: ${err.status} ${err.message}`);
      if (!res.headersSent) sendJson(res, err.status, err.body());
      else if (!res.writableEnded) {
        // mid-stream: the error as an SSE event (OpenAI's SDKs raise it), then the end
        res.write(`data: ${JSON.stringify(err.body())}\n\n`);
        res.end();
      }
    });
  });
  // generations can run for minutes; the request timeout must not cut a stream off
  server.requestTimeout = 0;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    const path = url.pathname.replace(/\/+$/, "") || "/";
    if (!keyDigest && !hostNames().includes(req.headers.host ?? "")) throw new ApiError(421, "this server answers only to 127.0.0.1 and localhost", "invalid_request_error");
    const origin = req.headers.origin;
    if (origin && !hostNames().some((h) => origin === `http://${h}`)) throw new ApiError(403, `requests from the web page ${origin} are not allowed`, "invalid_request_error");

    if (path === "/docs" || path === "/openapi.json") {
      if (req.method !== "GET" && req.method !== "HEAD") throw methodNotAllowed("GET");
      const doc = openApiDocument(baseUrl());
      if (path === "/openapi.json") return sendJson(res, 200, doc);
      const page = docsPage(doc);
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": page.csp, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache" });
      res.end(req.method === "HEAD" ? undefined : page.html);
      return;
    }
    if (!path.startsWith("/v1/") && path !== "/v1") throw new ApiError(404, `no such path ${path} (the API is under /v1; see /docs)`, "not_found_error");
    if (keyDigest) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
      if (!m || !timingSafeEqual(sha256(m[1]), keyDigest)) {
        throw new ApiError(401, m ? "Incorrect API key provided." : "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.", "invalid_request_error", null, "invalid_api_key");
      }
    }

    if (path === "/v1/models") {
      if (req.method !== "GET") throw methodNotAllowed("GET");
      return sendJson(res, 200, { object: "list", data: await opts.service.listModels() });
    }
    if (path.startsWith("/v1/models/")) {
      if (req.method !== "GET") throw methodNotAllowed("GET");
      const id = decodeURIComponent(path.slice("/v1/models/".length));
      const m = (await opts.service.listModels()).find((x) => x.id === id);
      if (!m) throw new ApiError(404, `The model '${id}' does not exist`, "not_found_error", "model", "model_not_found");
      return sendJson(res, 200, m);
    }
    if (path === "/v1/chat/completions" || path === "/v1/completions") {
      if (req.method !== "POST") throw methodNotAllowed("POST");
      const body = await readJson(req);
      // the client going away: out of the queue, or its generation stopped within a token
      const abort = new AbortController();
      res.on("close", () => {
        if (!res.writableFinished) abort.abort();
      });
      if (path === "/v1/chat/completions") {
        const r = parseBody(ChatCompletionRequest, body);
        const reply = await opts.service.chat(r, abort.signal);
        return r.stream ? streamChat(res, reply, !!r.stream_options?.include_usage) : sendChat(res, reply);
      }
      const r = parseBody(CompletionRequest, body);
      const reply = await opts.service.completion(r, abort.signal);
      return r.stream ? streamCompletion(res, reply, !!r.stream_options?.include_usage) : sendCompletion(res, reply);
    }
    throw new ApiError(404, `no such endpoint ${req.method} ${path} (see /docs)`, "not_found_error");
  }

  const baseUrl = () => `http://${host.includes(":") ? `[${host}]` : host}:${port}/v1`;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | null = null;
  return {
    baseUrl: baseUrl(),
    host,
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

function methodNotAllowed(allow: string): ApiError {
  return new ApiError(405, `use ${allow} here`, "invalid_request_error");
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(text)), "Cache-Control": "no-store" });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const type = (req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
  if (type !== "application/json") throw new ApiError(415, `send the request body as application/json (got ${type || "no Content-Type"})`, "invalid_request_error");
  const declared = Number(req.headers["content-length"]);
  if (declared > MAX_BODY_BYTES) throw new ApiError(413, `the request body is ${declared} bytes; at most ${MAX_BODY_BYTES} are accepted`, "invalid_request_error");
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new ApiError(413, `the request body is over ${MAX_BODY_BYTES} bytes`, "invalid_request_error");
    chunks.push(c as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (e) {
    throw new ApiError(400, `the request body is not JSON (${(e as Error).message})`, "invalid_request_error");
  }
}

function sseHeaders(res: ServerResponse): void {
  res.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", Connection: "keep-alive", "X-Accel-Buffering": "no" });
  res.flushHeaders();
}

const sse = (res: ServerResponse, data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);

// ---------------------------------------------------------------- chat completions

async function sendChat(res: ServerResponse, reply: Reply): Promise<void> {
  let content = "";
  const calls: WireToolCall[] = [];
  for await (const e of reply.events) {
    if (e.type === "content") content += e.text;
    else if (e.type === "tool_call") calls.push(e.call);
    else {
      const text = calls.length ? content.trim() : content;
      const message = { role: "assistant", content: calls.length && !text ? null : text, ...(calls.length ? { tool_calls: calls } : {}) };
      sendJson(res, 200, {
        id: reply.id, object: "chat.completion", created: reply.created, model: reply.model, system_fingerprint: null,
        choices: [{ index: 0, message, logprobs: null, finish_reason: e.finish }],
        usage: e.usage,
      });
    }
  }
}

async function streamChat(res: ServerResponse, reply: Reply, includeUsage: boolean): Promise<void> {
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
    id: reply.id, object: "chat.completion.chunk", created: reply.created, model: reply.model, system_fingerprint: null,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  });
  sseHeaders(res);
  sse(res, chunk({ role: "assistant", content: "" }));
  for await (const e of reply.events) {
    if (e.type === "content") sse(res, chunk({ content: e.text }));
    else if (e.type === "tool_call") sse(res, chunk({ tool_calls: [{ index: e.index, ...e.call }] }));
    else {
      sse(res, chunk({}, e.finish));
      if (includeUsage) sse(res, { id: reply.id, object: "chat.completion.chunk", created: reply.created, model: reply.model, choices: [], usage: e.usage });
    }
  }
  res.end("data: [DONE]\n\n");
}

// ---------------------------------------------------------------- completions

async function sendCompletion(res: ServerResponse, reply: Reply): Promise<void> {
  let text = "";
  for await (const e of reply.events) {
    if (e.type === "content") text += e.text;
    else if (e.type === "done") {
      sendJson(res, 200, {
        id: reply.id, object: "text_completion", created: reply.created, model: reply.model, system_fingerprint: null,
        choices: [{ index: 0, text, logprobs: null, finish_reason: e.finish }],
        usage: e.usage,
      });
    }
  }
}

async function streamCompletion(res: ServerResponse, reply: Reply, includeUsage: boolean): Promise<void> {
  const chunk = (text: string, finish: string | null) => ({
    id: reply.id, object: "text_completion", created: reply.created, model: reply.model, system_fingerprint: null,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
  });
  sseHeaders(res);
  for await (const e of reply.events) {
    if (e.type === "content") sse(res, chunk(e.text, null));
    else if (e.type === "done") {
      sse(res, chunk("", e.finish));
      if (includeUsage) sse(res, { id: reply.id, object: "text_completion", created: reply.created, model: reply.model, choices: [], usage: e.usage });
    }
  }
  res.end("data: [DONE]\n\n");
}
