// Chat completions from a remote OpenAI-compatible server (vLLM, another MoE Studio, llama.cpp's server, OpenAI),
// streamed: POST {baseUrl}/chat/completions with stream: true, then server-sent events, one JSON chunk per
// `data:` line until `data: [DONE]`. Only what every such server speaks is sent: the sampling fields OpenAI defines,
// plus top_k / repetition_penalty (vLLM's and ours) only when the user set them.
//
// A reply ends one of four ways: finish_reason arrives (done), the caller aborts (stopped, text kept), the server
// answers with an error status (its error message), or the stream breaks before finish_reason / [DONE] (the remote
// went away: an error naming it, text kept).
import { remoteMessages } from "../errors.js";

export interface RemoteTarget {
  name: string;
  baseUrl: string;
  model: string;
  key: string | null;
}

export interface RemoteSampling {
  temperature?: number | undefined;
  top_p?: number | undefined;
  top_k?: number | undefined;
  repetition_penalty?: number | undefined;
  max_tokens?: number | undefined;
  seed?: number | undefined;
}

export interface RemoteResult {
  text: string;
  /** OpenAI's finish_reason: "stop", "length", "tool_calls", ... ; null when stopped by the caller. */
  finishReason: string | null;
  stopped: boolean;
  usage: { promptTokens: number; completionTokens: number } | null;
  /** Chunks that carried text (a token count where the server sends no usage). */
  chunks: number;
  /** From the request to the first text, and from there to the end. */
  firstTextMs: number;
  totalMs: number;
}

export class RemoteError extends Error {}

const TIMEOUT_MS = 5 * 60_000; // a first byte later than this: the remote is not answering

function endpointUrl(baseUrl: string, path: string): string {
  return baseUrl.replace(/\/+$/, "") + path;
}

function where(t: Pick<RemoteTarget, "name" | "baseUrl">): string {
  return `The endpoint "${t.name}" (${t.baseUrl})`;
}

/** The error message an OpenAI-style server puts in its body, or the status line. */
async function errorOf(res: Response): Promise<string> {
  const body = await res.text().catch(() => "");
  try {
    const j = JSON.parse(body) as { error?: { message?: string } | string; message?: string; detail?: string };
    const m = typeof j.error === "string" ? j.error : j.error?.message ?? j.message ?? j.detail;
    if (m) return String(m).split("\n")[0].slice(0, 500);
  } catch {
    // not JSON
  }
  return `${res.status} ${res.statusText}`.trim() + (body && body.length < 200 ? `: ${body.trim()}` : "");
}

function headers(key: string | null, json: boolean): Record<string, string> {
  return { ...(json ? { "content-type": "application/json" } : {}), accept: json ? "text/event-stream" : "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) };
}

/** The sentence for a remote's error status: its key refused (401 / 403), or the request. */
async function refusal(t: Pick<RemoteTarget, "name" | "baseUrl">, res: Response): Promise<string> {
  const why = await errorOf(res);
  return res.status === 401 || res.status === 403 ? remoteMessages.keyRefused(t.name, t.baseUrl, res.status, why) : remoteMessages.refused(t.name, t.baseUrl, res.status, why);
}

/** GET {baseUrl}/models: the ids the remote serves. */
export async function remoteModels(t: Omit<RemoteTarget, "model">, signal?: AbortSignal): Promise<string[]> {
  let res: Response;
  try {
    res = await fetch(endpointUrl(t.baseUrl, "/models"), { headers: headers(t.key, false), signal: signal ?? AbortSignal.timeout(15_000) });
  } catch (e) {
    throw new RemoteError(remoteMessages.unreachable(t.name, t.baseUrl, reason(e)));
  }
  if (!res.ok) throw new RemoteError(await refusal(t, res));
  const j = (await res.json().catch(() => null)) as { data?: Array<{ id?: unknown }> } | null;
  if (!j || !Array.isArray(j.data)) throw new RemoteError(`${where(t)}: GET /models did not answer OpenAI's list ({"data": [...]}); is the URL the API's base (ending in /v1)?`);
  return j.data.map((m) => m.id).filter((id): id is string => typeof id === "string");
}

function reason(e: unknown): string {
  const err = e as { cause?: { code?: string; message?: string }; message?: string };
  return err.cause?.code ?? err.cause?.message ?? err.message ?? String(e);
}

/**
 * Stream one reply. onText gets each text delta as it arrives, with the count of text chunks so far (the caller keeps the text so far). Throws RemoteError
 * when the remote refuses or breaks off; returns with stopped: true when `signal` aborts.
 */
export async function streamChat(t: RemoteTarget, messages: Array<{ role: string; content: string }>, sampling: RemoteSampling,
  signal: AbortSignal, onText: (delta: string, chunks: number) => void): Promise<RemoteResult> {
  const started = Date.now();
  let text = "";
  let chunks = 0;
  let firstAt = 0;
  let finishReason: string | null = null;
  let usage: RemoteResult["usage"] = null;
  const fail = (msg: string): never => {
    throw new RemoteError(msg);
  };
  const result = (stopped: boolean): RemoteResult => ({ text, finishReason, stopped, usage, chunks, firstTextMs: firstAt ? firstAt - started : 0, totalMs: Date.now() - started });

  const body = JSON.stringify({ model: t.model, messages, stream: true, stream_options: { include_usage: true }, ...sampling });
  let res: Response;
  try {
    res = await fetch(endpointUrl(t.baseUrl, "/chat/completions"), { method: "POST", headers: headers(t.key, true), body, signal: AbortSignal.any([signal, AbortSignal.timeout(TIMEOUT_MS)]) });
  } catch (e) {
    if (signal.aborted) return result(true);
    return fail(remoteMessages.unreachable(t.name, t.baseUrl, reason(e)));
  }
  if (!res.ok || !res.body) return fail(await refusal(t, res));
  // Server-sent events: lines, an event per blank line; only `data:` fields matter here.
  const decoder = new TextDecoder();
  let buf = "";
  let done = false;
  const onData = (data: string) => {
    if (data === "[DONE]") {
      done = true;
      return;
    }
    let chunk: { choices?: Array<{ delta?: { content?: string | null }; finish_reason?: string | null }>; usage?: { prompt_tokens?: number; completion_tokens?: number } | null; error?: { message?: string } };
    try {
      chunk = JSON.parse(data);
    } catch {
      return fail(`${where(t)} sent a stream chunk that is not JSON: ${data.slice(0, 120)}`);
    }
    if (chunk.error) return fail(`${where(t)} reported an error mid-reply: ${chunk.error.message ?? "unknown"}`);
    const c = chunk.choices?.[0];
    const delta = c?.delta?.content;
    if (typeof delta === "string" && delta) {
      if (!firstAt) firstAt = Date.now();
      text += delta;
      chunks++;
      onText(delta, chunks);
    }
    if (c?.finish_reason) finishReason = c.finish_reason;
    if (chunk.usage && typeof chunk.usage.prompt_tokens === "number") usage = { promptTokens: chunk.usage.prompt_tokens, completionTokens: chunk.usage.completion_tokens ?? 0 };
  };
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { value, done: eof } = await reader.read();
      if (eof) break;
      buf += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, "");
        buf = buf.slice(nl + 1);
        if (line.startsWith("data:")) onData(line.slice(5).trimStart());
      }
      if (done) break;
    }
  } catch (e) {
    if (e instanceof RemoteError) throw e;
    if (signal.aborted) return result(true);
    return fail(remoteMessages.brokeOff(t.name, t.baseUrl, reason(e)));
  } finally {
    reader.cancel().catch(() => {});
  }
  if (signal.aborted) return result(true);
  if (!done && finishReason === null) return fail(remoteMessages.closedEarly(t.name, t.baseUrl));
  return result(false);
}
