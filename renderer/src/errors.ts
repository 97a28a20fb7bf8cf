// Errors in the user's language. The services answer in English (RpcError code + message; a reply's saved error;
// engine.status messages). Each known sentence (electron/services/errors.ts builds them) becomes a translation key
// with its values; anything else gets its code's message, and the server's own text only as a detail line.
// test/unit/services.test.ts feeds every sentence the services can say through describeError.
import type { MessageKey } from "./i18n/index.js";

export interface DescribedError {
  key: MessageKey;
  vars?: Record<string, string | number>;
  /** The untranslated server text, shown small under the message when it adds something. */
  detail?: string;
}

type Rule = [RegExp, MessageKey, (m: RegExpExecArray) => Record<string, string | number>];

const RULES: Rule[] = [
  [/^The engine stopped unexpectedly \(([^)]+)\) and this reply was cut off\./, "error.replyCrashed", (m) => ({ why: m[1] })],
  [/^The engine stopped unexpectedly \(([^)]+)\); restarting it\./, "error.restarting", (m) => ({ why: m[1] })],
  [/^The engine stopped unexpectedly \(([^)]+)\) (\d+) times within a minute/, "error.crashLoop", (m) => ({ why: m[1], n: m[2] })],
  [/^The engine stopped while loading (.+) \(([^)]+)\)\./, "error.loadCrashed", (m) => ({ name: m[1], why: m[2] })],
  [/^This message is (\d+) tokens long, more than this chat's context of (\d+) tokens/, "error.promptTooLong", (m) => ({ n: m[1], ctx: m[2] })],
  [/^This message is (\d+) characters long, at least (\d+) tokens, more than this chat's context of (\d+) tokens/, "error.promptTooLongAtLeast", (m) => ({ chars: m[1], n: m[2], ctx: m[3] })],
  [/^The app closed while this reply was being written/, "error.interrupted", () => ({})],
  [/^A reply is still being written in this conversation/, "error.busyHere", () => ({})],
  [/^The model is answering in another conversation/, "error.busyOther", () => ({})],
  [/^The model is answering a request of the API server/, "error.busyApi", () => ({})],
  [/^The endpoint "(.+)" \((\S+)\) cannot be reached \((.*)\)\.$/, "error.remoteUnreachable", (m) => ({ name: m[1], url: m[2], why: m[3] })],
  [/^The endpoint "(.+)" \((\S+)\) broke off the reply \((.*)\); the text so far is kept\.$/, "error.remoteBrokeOff", (m) => ({ name: m[1], url: m[2], why: m[3] })],
  [/^The endpoint "(.+)" \((\S+)\) closed the connection before the reply was finished/, "error.remoteClosedEarly", (m) => ({ name: m[1], url: m[2] })],
  [/^The endpoint "(.+)" \((\S+)\) refused the key \((\d+)\): (.*)$/, "error.remoteKeyRefused", (m) => ({ name: m[1], url: m[2], status: m[3], why: m[4] })],
  [/^The endpoint "(.+)" \((\S+)\) answered (\d+): (.*)$/, "error.remoteRefused", (m) => ({ name: m[1], url: m[2], status: m[3], why: m[4] })],
  [/^The endpoint "(.+)" reads its key from the environment variable (\S+), which is not set\.$/, "error.remoteKeyEnvUnset", (m) => ({ name: m[1], env: m[2] })],
  [/^(.+) is not a model folder: config\.json not found$/, "error.noConfig", (m) => ({ path: m[1] })],
  [/^(.+) is a file, not a folder/, "error.isFile", (m) => ({ path: m[1] })],
  [/^(.+) does not exist$/, "error.folderMissing", (m) => ({ path: m[1] })],
];

/** Code → message when the text itself is not one we know; the text becomes the detail. */
const BY_CODE: Record<string, MessageKey> = {
  no_model: "error.noModel",
  busy: "error.busy",
  disconnected: "error.disconnected",
  invalid_input: "error.invalidInput",
  unknown_call: "error.unknownCall",
  not_found: "error.notFound",
  engine: "error.engine",
  disk_full: "error.diskFull",
  internal: "error.internal",
};

/** Codes whose message says all there is: no detail line under them. */
const SELF_EXPLAINING = new Set(["no_model", "disconnected"]);

export function describeError(code: string | null | undefined, message: string | null | undefined): DescribedError {
  const text = (message ?? "").trim();
  for (const [re, key, vars] of RULES) {
    const m = re.exec(text);
    if (m) return { key, vars: vars(m) };
  }
  // "<folder> cannot be opened as a model: <reason>": the reason is the engine's words (a detail)
  const open = /^(.+) cannot be opened as a model: ([\s\S]+)$/.exec(text);
  if (open) return { key: "error.cannotOpen", vars: { path: open[1] }, detail: open[2] };
  const key = (code && BY_CODE[code]) || "error.unexpected";
  return text && !SELF_EXPLAINING.has(code ?? "") ? { key, detail: text } : { key };
}
