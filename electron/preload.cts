// The preload of the sandboxed renderer: exposes exactly the contract's `Api` (call + on) as window.moeApi, plus
// pathForFile for a model folder dropped onto the window. Nothing else crosses: no ipcRenderer, no Electron event
// objects, no channel names the page chooses. (Sandboxed preloads are CommonJS and may only require "electron",
// so the channel names are repeated here; test/unit/window-options.test.ts checks they match contract.ts.)
import { contextBridge, ipcRenderer, webUtils, type IpcRendererEvent } from "electron";

const IPC_CALL_CHANNEL = "moe:call";
const IPC_EVENT_CHANNEL = "moe:event";

type Listener = (payload: unknown) => void;
const listeners = new Map<string, Set<Listener>>();

// One IPC listener for every event; each page listener gets only the payload of its own event.
ipcRenderer.on(IPC_EVENT_CHANNEL, (_event: IpcRendererEvent, message: unknown) => {
  const m = message as { t?: unknown; name?: unknown; payload?: unknown } | null;
  if (!m || m.t !== "event" || typeof m.name !== "string") return;
  for (const l of [...(listeners.get(m.name) ?? [])]) {
    try {
      l(m.payload);
    } catch (e) {
      console.error(e);
    }
  }
});

type WireResult = { ok: true; output: unknown } | { ok: false; error: { message: string; code: string } };

const moeApi = {
  /**
   * Invoke a contract call. Errors crossing the context bridge keep only their message, so a failed call rejects
   * with Error("[code] message"), code being the contract's RpcErrorCode (the renderer's api module parses it).
   */
  async call(name: string, input: unknown): Promise<unknown> {
    if (typeof name !== "string") throw new TypeError("call(name, input): name must be a string");
    const r = (await ipcRenderer.invoke(IPC_CALL_CHANNEL, { name, input })) as WireResult;
    if (r.ok) return r.output;
    throw new Error(`[${r.error.code}] ${r.error.message}`);
  },
  /** Listen to a contract event; returns the function that stops listening. */
  on(event: string, listener: Listener): () => void {
    if (typeof event !== "string" || typeof listener !== "function") throw new TypeError("on(event, listener): expects a name and a function");
    let set = listeners.get(event);
    if (!set) listeners.set(event, (set = new Set()));
    // a wrapper per registration, so the same function registered twice is removed once per unsubscribe
    const wrapper: Listener = (payload) => listener(payload);
    set.add(wrapper);
    return () => {
      listeners.get(event)?.delete(wrapper);
    };
  },
  /** The filesystem path of a File from a drop event (a model folder dragged onto the window). */
  pathForFile(file: Parameters<typeof webUtils.getPathForFile>[0]): string {
    return webUtils.getPathForFile(file);
  },
};

contextBridge.exposeInMainWorld("moeApi", moeApi);
