// Engine sessions kept across requests: each holds a KV cache, and a request that continues the one before it (the
// next turn of a chat, an agent resending its growing conversation) prefills only what that cache lacks. A session
// is keyed by who uses it (the chat UI, the API) and the adapter it runs with; the least recently used is disposed
// beyond `kept`, so memory stays bounded (Qwen3-30B-A3B: an 8192-token f32 cache is 1.5 GiB).
import type { RemoteModel, RemoteSession } from "../engine/host.js";

export class SessionPool {
  /** Least recently used first. */
  private readonly sessions = new Map<string, { model: RemoteModel; session: RemoteSession }>();

  constructor(private readonly kept: number) {}

  /**
   * The session of `user` for this model and adapter (undefined: the model as loaded; null: the bare base), created
   * on first use. Sessions of another model (the user opened a new one) are disposed first. An adapter that does not
   * fit the model fails here with the engine's message naming the file and tensor.
   */
  async get(user: string, model: RemoteModel, adapter: string | null | undefined): Promise<RemoteSession> {
    const key = `${user}\0${adapter === undefined ? "" : adapter === null ? "\0base" : adapter}`;
    for (const [k, s] of this.sessions) if (s.model !== model) {
      this.sessions.delete(k);
      await s.session.dispose().catch(() => undefined);
    }
    const kept = this.sessions.get(key);
    if (kept) {
      this.sessions.delete(key);
      this.sessions.set(key, kept);
      return kept.session;
    }
    const session = await model.chat(adapter !== undefined ? { adapter } : {});
    this.sessions.set(key, { model, session });
    for (const [k, s] of this.sessions) {
      if (this.sessions.size <= this.kept) break;
      this.sessions.delete(k);
      await s.session.dispose().catch(() => undefined);
    }
    return session;
  }

  /** Forget the sessions of a model whose worker died (they are gone with it). */
  forget(model: RemoteModel): void {
    for (const [k, s] of this.sessions) if (s.model === model) this.sessions.delete(k);
  }

  async dispose(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await s.session.dispose().catch(() => undefined);
  }
}
