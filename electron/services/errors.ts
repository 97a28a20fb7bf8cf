// Shorthands for the errors services throw: RpcError codes the UI can act on, with messages a user can read.
// The sentences below also reach the UI as text (a reply's saved error, engine.status messages); the renderer
// recognises each of them (renderer/src/errors.ts) to show it in the user's language, so they are built here, once,
// and test/unit/services.test.ts checks that every one is recognised and reads the same as the English UI's.
import { RpcError } from "../contract.js";

export const notFound = (what: string) => new RpcError("not_found", what);
export const noModel = () => new RpcError("no_model", "No model is loaded. Open a model folder first.");
export const busy = (what: string) => new RpcError("busy", what);
export const engineError = (message: string) => new RpcError("engine", message);

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
};

/** A folder that cannot be opened: the path once, then the reason. */
export const folderMessages = {
  missing: (dir: string) => `${dir} does not exist`,
  isFile: (dir: string) => `${dir} is a file, not a folder: choose the folder that holds config.json and the *.safetensors weights`,
  noConfig: (dir: string) => `${dir} is not a model folder: config.json not found`,
  /** Any other problem (bad config.json, missing tokenizer, ...); `reason` names the file, relative to the folder. */
  cannotOpen: (dir: string, reason: string) => `${dir} cannot be opened as a model: ${reason}`,
};
