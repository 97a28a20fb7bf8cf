// Remote OpenAI-compatible endpoints (endpoints.*): a name, the API's base URL and the model to name, kept in the
// database; the key is not. A key the user types goes into one secret store (the keychain in the desktop app:
// endpoint-keys.bin, encrypted with safeStorage; memory under `serve`), or the endpoint names an environment variable
// to read it from at each request (keyEnv, for headless deployments). The chat asks target() for what to call.
import { randomUUID } from "node:crypto";
import type { CallOutput, Endpoint } from "../contract.js";
import type { HandlerInput } from "../rpc.js";
import type { TokenStore } from "../library/token-store.js";
import type { EndpointRecord, Repositories } from "../store/repositories.js";
import { notFound, remoteMessages } from "./errors.js";
import { remoteModels, type RemoteTarget } from "./remote/openai-stream.js";
import { RpcError } from "../contract.js";

/** A base URL as stored and called: without trailing slashes (".../v1/" and ".../v1" are one endpoint). */
const apiBase = (url: string) => url.replace(/\/+$/, "");

export class EndpointService {
  constructor(
    private readonly repos: Repositories,
    private readonly secrets: TokenStore,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  private keys(): Record<string, string> {
    const raw = this.secrets.get();
    if (!raw) return {};
    try {
      const v = JSON.parse(raw) as unknown;
      return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, string>) : {};
    } catch {
      return {};
    }
  }

  private setKey(id: string, key: string | null): void {
    const keys = this.keys();
    if (key) keys[id] = key;
    else delete keys[id];
    this.secrets.set(Object.keys(keys).length ? JSON.stringify(keys) : null);
  }

  private view(e: EndpointRecord): Endpoint {
    return { ...e, hasKey: e.id in this.keys(), keyStorage: this.secrets.kind === "safeStorage" ? "keychain" : "memory" };
  }

  private require(id: string): EndpointRecord {
    const e = this.repos.endpoints.get(id);
    if (!e) throw notFound(`Endpoint ${id} does not exist (it may have been removed).`);
    return e;
  }

  list(): CallOutput<"endpoints.list"> {
    return this.repos.endpoints.list().map((e) => this.view(e));
  }

  add(input: HandlerInput<"endpoints.add">): Endpoint {
    if (input.key && input.keyEnv) throw new RpcError("invalid_input", "Give the key or the environment variable that holds it, not both.");
    const e: EndpointRecord = { id: randomUUID(), name: input.name.trim(), baseUrl: apiBase(input.baseUrl), model: input.model.trim(), keyEnv: input.keyEnv ?? null, createdAt: Date.now() };
    this.repos.endpoints.insert(e);
    if (input.key) this.setKey(e.id, input.key);
    return this.view(e);
  }

  update(input: HandlerInput<"endpoints.update">): Endpoint {
    const old = this.require(input.id);
    const e: EndpointRecord = {
      ...old,
      ...(input.name !== undefined ? { name: input.name.trim() } : {}),
      ...(input.baseUrl !== undefined ? { baseUrl: apiBase(input.baseUrl) } : {}),
      ...(input.model !== undefined ? { model: input.model.trim() } : {}),
      ...(input.keyEnv !== undefined ? { keyEnv: input.keyEnv } : {}),
    };
    this.repos.endpoints.update(e);
    if (input.key !== undefined) this.setKey(e.id, input.key);
    return this.view(e);
  }

  delete(input: { id: string }): { ok: true } {
    this.require(input.id);
    this.repos.endpoints.delete(input.id);
    this.setKey(input.id, null);
    return { ok: true };
  }

  /** What the chat calls for an endpoint: its URL, model and key (from the variable it names, else the stored one). */
  target(id: string): RemoteTarget {
    const e = this.require(id);
    let key: string | null;
    if (e.keyEnv) {
      key = this.env[e.keyEnv] || null;
      if (!key) throw new RpcError("invalid_input", remoteMessages.keyEnvUnset(e.name, e.keyEnv));
    } else key = this.keys()[e.id] ?? null;
    return { name: e.name, baseUrl: e.baseUrl, model: e.model, key };
  }

  async models(input: HandlerInput<"endpoints.models">): Promise<CallOutput<"endpoints.models">> {
    const t = "id" in input ? this.target(input.id) : { name: input.baseUrl, baseUrl: apiBase(input.baseUrl), key: input.key ?? null };
    try {
      return { models: await remoteModels(t) };
    } catch (e) {
      throw new RpcError("invalid_input", (e as Error).message);
    }
  }
}
