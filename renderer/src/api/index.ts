// Picks the transport: Electron's preload (`window.moeApi`, IPC) when present, else a WebSocket to the serving host.
import type { ConnectionState, PreloadApi, Transport } from "./types.js";
import { ApiError } from "./types.js";
import { WebSocketTransport, wsUrlFor } from "./ws.js";

declare global {
  interface Window {
    moeApi?: PreloadApi;
  }
}

/** Wraps the preload's object; errors crossing IPC lose their class, so `code` is recovered from the message. */
export function ipcTransport(api: PreloadApi): Transport {
  return {
    kind: "ipc",
    call: (name, input) =>
      api.call(name, input).catch((e: unknown) => {
        const err = e as { code?: string; message?: string };
        const m = /^(?:Error invoking remote method '[^']*': )?(?:\w*Error: )?(?:\[(\w+)\] )?([\s\S]*)$/.exec(err?.message ?? String(e));
        throw new ApiError(err?.code ?? m?.[1] ?? "internal", m?.[2] ?? String(e));
      }),
    on: (event, listener) => api.on(event, listener),
    pathForFile: api.pathForFile ? (file) => api.pathForFile!(file) : undefined,
    connection: (): ConnectionState => "open",
    onConnection: () => () => {},
  };
}

let current: Transport | null = null;

export function createTransport(): Transport {
  if (typeof window !== "undefined" && window.moeApi) return ipcTransport(window.moeApi);
  return new WebSocketTransport(wsUrlFor(window.location));
}

/** The app's transport (created on first use). */
export function api(): Transport {
  if (!current) current = createTransport();
  return current;
}

/** Tests and alternative hosts install their own transport. */
export function setApi(transport: Transport): void {
  current = transport;
}

export { ApiError };
export type * from "./types.js";
