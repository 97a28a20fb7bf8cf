// Remote OpenAI-compatible endpoints (a vLLM cluster, another MoE Studio): the list, adding and removing one, and
// asking a remote which models it serves. Chatting with one is a conversation with its endpointId (conversations.ts).
import { create } from "zustand";
import { api } from "../api/index.js";
import type { CallInput, Endpoint } from "../api/types.js";
import { useUi } from "./ui.js";

interface EndpointsState {
  list: Endpoint[] | null;
  refresh(): Promise<void>;
  /** Resolves to the new endpoint, or throws (the form shows the message). */
  add(input: CallInput<"endpoints.add">): Promise<Endpoint>;
  remove(id: string): Promise<void>;
  /** The remote's model ids (throws with the remote's reason). */
  models(input: CallInput<"endpoints.models">): Promise<string[]>;
}

export const useEndpoints = create<EndpointsState>((set, get) => ({
  list: null,
  refresh: async () => {
    try {
      set({ list: await api().call("endpoints.list", {}) });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  add: async (input) => {
    const e = await api().call("endpoints.add", input);
    set({ list: [...(get().list ?? []), e] });
    return e;
  },
  remove: async (id) => {
    try {
      await api().call("endpoints.delete", { id });
      set({ list: (get().list ?? []).filter((e) => e.id !== id) });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  models: async (input) => (await api().call("endpoints.models", input)).models,
}));

/** The endpoint a conversation talks to, from the loaded list (null: local, or not loaded yet). */
export function endpointOf(id: string | null | undefined, list: Endpoint[] | null): Endpoint | null {
  return id ? (list ?? []).find((e) => e.id === id) ?? null : null;
}
