// The one door into the services: every transport (Electron IPC in main.ts, the WebSocket in server/) calls
// dispatch(name, input) and nothing else. The call name must be in the contract, the input must parse with the
// contract's schema (strict: unknown keys are rejected) before a handler sees it, and whatever a handler throws
// comes back as an RpcError with a human-readable message and a code the UI can act on.
import { z } from "zod";
import { calls, RpcError, type CallName, type CallOutput, type RpcErrorCode } from "./contract.js";
import { asDiskFull } from "./services/errors.js";

/** A call's input after validation (what a handler receives). */
export type HandlerInput<N extends CallName> = z.output<(typeof calls)[N]["input"]>;

/** One handler per call in the contract. */
export type Handlers = { [N in CallName]: (input: HandlerInput<N>) => Promise<CallOutput<N>> | CallOutput<N> };

/** Handlers that always answer with a promise (what createAppServices returns). */
export type AsyncHandlers = { [N in CallName]: (input: HandlerInput<N>) => Promise<CallOutput<N>> };

export type Dispatch = (name: unknown, input: unknown) => Promise<unknown>;

export interface DispatcherOptions {
  /** Also validate each handler's output against the contract (tests; a mismatch is an "internal" error). */
  validateOutput?: boolean;
}

const MAX_ISSUES = 3;
const RPC_CODES = ["invalid_input", "unknown_call", "not_found", "no_model", "busy", "engine", "disk_full", "internal"] as const satisfies readonly RpcErrorCode[];

/** "content: Too big: expected string to have <=1000000 characters; conversationId: Invalid input ..." */
export function describeZodError(e: z.ZodError, what = "input"): string {
  const parts = e.issues.slice(0, MAX_ISSUES).map((i) => {
    const path = i.path.length ? i.path.map(String).join(".") : what;
    let msg = i.message;
    if (i.code === "unrecognized_keys") msg = `unknown key${i.keys.length > 1 ? "s" : ""} ${i.keys.map((k) => JSON.stringify(k)).join(", ")}`;
    return `${path}: ${msg}`;
  });
  if (e.issues.length > MAX_ISSUES) parts.push(`and ${e.issues.length - MAX_ISSUES} more`);
  return parts.join("; ");
}

function isCallName(name: unknown): name is CallName {
  return typeof name === "string" && Object.prototype.hasOwnProperty.call(calls, name);
}

export function createDispatcher(handlers: Handlers, opts: DispatcherOptions = {}): Dispatch {
  return async function dispatch(name: unknown, input: unknown): Promise<unknown> {
    if (!isCallName(name)) {
      const shown = typeof name === "string" ? JSON.stringify(name.length > 100 ? `${name.slice(0, 100)}…` : name) : typeof name;
      throw new RpcError("unknown_call", `unknown call ${shown}`);
    }
    const spec = calls[name];
    const parsed = spec.input.safeParse(input === undefined ? {} : input);
    if (!parsed.success) throw new RpcError("invalid_input", `${name}: ${describeZodError(parsed.error)}`);
    let output: unknown;
    try {
      output = await (handlers[name] as (i: unknown) => unknown)(parsed.data);
    } catch (e) {
      throw asRpcError(e);
    }
    if (opts.validateOutput) {
      const out = spec.output.safeParse(output);
      if (!out.success) throw new RpcError("internal", `${name} returned a malformed result: ${describeZodError(out.error, "output")}`);
      return out.data;
    }
    return output;
  };
}

/** Any thrown value as an RpcError with a readable message (never a stack trace). */
export function asRpcError(e: unknown): RpcError {
  if (e instanceof RpcError) return e;
  // SQLITE_FULL / ENOSPC / EDQUOT from any layer (services that know the folder have named it already)
  const full = asDiskFull(e);
  if (full) return full;
  if (e instanceof z.ZodError) return new RpcError("invalid_input", describeZodError(e));
  const message = e instanceof Error ? e.message : typeof e === "string" ? e : "unexpected error";
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === "string" && (RPC_CODES as readonly string[]).includes(code)) return new RpcError(code as RpcErrorCode, message);
  if (/engine worker (exited|restarted)/.test(message)) return new RpcError("engine", message);
  if (e instanceof Error && (e as NodeJS.ErrnoException).code === "SQLITE_BUSY") return new RpcError("busy", `the database is busy: ${message}`);
  return new RpcError("internal", message || "unexpected error");
}

/** The wire shape of an error result: { message, code }. */
export function toWireError(e: unknown): { message: string; code: RpcErrorCode } {
  const r = asRpcError(e);
  return { message: r.message, code: r.code };
}
