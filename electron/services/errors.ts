// Shorthands for the errors services throw: RpcError codes the UI can act on, with messages a user can read.
// The sentences below also reach the UI as text (a reply's saved error, engine.status messages); the renderer
// recognises each of them (renderer/src/errors.ts) to show it in the user's language, so they are built here, once,
// and test/unit/services.test.ts checks that every one is recognised and reads the same as the English UI's.
import { statfsSync } from "node:fs";
import { dirname } from "node:path";
import { RpcError } from "../contract.js";

export const notFound = (what: string) => new RpcError("not_found", what);
export const noModel = () => new RpcError("no_model", "No model is loaded. Open a model folder first.");
export const busy = (what: string) => new RpcError("busy", what);
export const engineError = (message: string) => new RpcError("engine", message);

/** A remote endpoint's failures (services/remote/openai-stream.ts): on the reply it broke, in the form. */
export const remoteMessages = {
  unreachable: (name: string, url: string, why: string) => `The endpoint "${name}" (${url}) cannot be reached (${why}).`,
  brokeOff: (name: string, url: string, why: string) => `The endpoint "${name}" (${url}) broke off the reply (${why}); the text so far is kept.`,
  closedEarly: (name: string, url: string) => `The endpoint "${name}" (${url}) closed the connection before the reply was finished; the text so far is kept.`,
  keyRefused: (name: string, url: string, status: number, why: string) => `The endpoint "${name}" (${url}) refused the key (${status}): ${why}`,
  refused: (name: string, url: string, status: number, why: string) => `The endpoint "${name}" (${url}) answered ${status}: ${why}`,
  keyEnvUnset: (name: string, env: string) => `The endpoint "${name}" reads its key from the environment variable ${env}, which is not set.`,
};

/** The text of the engine's known failures (why: "signal SIGKILL" / "code 134"). */
export const engineMessages = {
  /** On a reply cut off by the worker dying. */
  replyCrashed: (why: string) => `The engine stopped unexpectedly (${why}) and this reply was cut off. Send again to retry.`,
  /** engine.status "crashed": a fresh worker is loading the model again. */
  restarting: (why: string) => `The engine stopped unexpectedly (${why}); restarting it.`,
  /** engine.status "error" after too many crashes in a row. */
  crashLoop: (why: string, times: number) => `The engine stopped unexpectedly (${why}) ${times} times within a minute. Open the model again to retry.`,
  /** The worker died while loading (most often: out of memory). */
  loadCrashed: (name: string, why: string) => `The engine stopped while loading ${name} (${why}). The model may need more memory than this machine has.`,
  promptTooLong: (tokens: number, context: number) =>
    `This message is ${tokens} tokens long, more than this chat's context of ${context} tokens. Shorten it or start a new chat.`,
  /** Refused before tokenizing: `tokens` is a lower bound from the message's length. */
  promptTooLongAtLeast: (chars: number, tokens: number, context: number) =>
    `This message is ${chars} characters long, at least ${tokens} tokens, more than this chat's context of ${context} tokens. Shorten it or start a new chat.`,
  interrupted: () => "The app closed while this reply was being written.",
  busyHere: () => "A reply is still being written in this conversation; stop it first.",
  busyOther: () => "The model is answering in another conversation; wait for it or stop it first.",
  busyApi: () => "The model is answering a request of the API server; send again when it is done.",
};

/** A folder that cannot be opened: the path once, then the reason. */
export const folderMessages = {
  missing: (dir: string) => `${dir} does not exist`,
  isFile: (dir: string) => `${dir} is a file, not a folder: choose the folder that holds config.json and the *.safetensors weights`,
  noConfig: (dir: string) => `${dir} is not a model folder: config.json not found`,
  /** Any other problem (bad config.json, missing tokenizer, ...); `reason` names the file, relative to the folder. */
  cannotOpen: (dir: string, reason: string) => `${dir} cannot be opened as a model: ${reason}`,
};

// ---------- a full disk ----------
// SQLite says SQLITE_FULL ("database or disk is full"), Node's fs ENOSPC or EDQUOT (a quota): the same thing to
// the user, whichever layer hit it. asRpcError (rpc.ts) maps any of them to code "disk_full"; a caller that knows
// where it was writing names the folder, so the message can say how much room is left there.

const DISK_FULL_CODES = new Set(["ENOSPC", "EDQUOT", "SQLITE_FULL"]);

/** True for an error (or its `cause`) that means the disk or the user's quota is full. */
export function isDiskFull(e: unknown): boolean {
  for (let x: unknown = e, depth = 0; x && typeof x === "object" && depth < 4; x = (x as { cause?: unknown }).cause, depth++) {
    const code = (x as { code?: unknown }).code;
    if (typeof code === "string" && (DISK_FULL_CODES.has(code) || code.startsWith("SQLITE_FULL"))) return true;
    if (x instanceof RpcError && x.code === "disk_full") return true;
  }
  return false;
}

/** Free space in MB (10^6 bytes, as file managers show it) for an unprivileged user in `dir`'s file system. */
export function freeMegabytes(dir: string): number | null {
  try {
    const s = statfsSync(dir);
    return Math.floor((Number(s.bavail) * Number(s.bsize)) / 1e6);
  } catch {
    return null;
  }
}

/** "disk full: <what> (free 12 MB in /data)"; without a folder that can be asked, the free space is left out. */
export function diskFull(what: string, dir: string | null): RpcError {
  const free = dir ? freeMegabytes(dir) : null;
  return new RpcError("disk_full", `disk full: ${what}${free !== null ? ` (free ${free} MB in ${dir})` : ""}`);
}

/**
 * `e` as a disk_full RpcError when it is one, else null. The folder: `dir` if the caller knows where it wrote,
 * else the path an fs error names. An error that is already disk_full passes through unchanged.
 */
export function asDiskFull(e: unknown, dir?: string | null): RpcError | null {
  if (!isDiskFull(e)) return null;
  if (e instanceof RpcError && e.code === "disk_full") return e;
  const fsPath = (e as { path?: unknown }).path;
  const where = dir ?? (typeof fsPath === "string" ? dirname(fsPath) : null);
  const message = e instanceof Error ? e.message : String(e);
  return diskFull(message, where);
}

/** Handlers whose disk-full failures name `dir` (the data folder: the database and uploads live there). */
export function withDiskFullIn<H extends Record<string, (input: never) => Promise<unknown>>>(handlers: H, dir: string): H {
  const out: Record<string, (input: never) => Promise<unknown>> = {};
  for (const [name, fn] of Object.entries(handlers)) {
    out[name] = async (input: never) => {
      try {
        return await fn(input);
      } catch (e) {
        throw asDiskFull(e, dir) ?? e;
      }
    };
  }
  return out as H;
}
