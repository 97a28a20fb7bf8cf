// A fake NativeModel/NativeSession with the addon's contract (electron/engine/addon.ts): next id = a script
// keyed on the previous id, emitted asynchronously one per macrotask like the real threadsafe callback. It lets
// the engine's TypeScript logic (streaming, stop strings, cancellation, prefix reuse, errors) be tested without
// the native build.
import type { NativeGenerateResult, NativeGradResult, NativeModel, NativeModelInfo, NativeSamplingParams, NativeSession } from "../../electron/engine/addon.js";

export function fakeInfo(vocabSize: number, contextLength = 64): NativeModelInfo {
  return {
    modelType: "fake", architecture: "FakeForCausalLM", numLayers: 1, hiddenSize: 8, vocabSize, numHeads: 1, numKvHeads: 1,
    headDim: 8, numExperts: 0, topK: 0, numSharedExperts: 0, contextLength, dtype: "f32", paramsTotal: 100, paramsActive: 100,
    weightBytes: 400, kvBytesPerToken: 64, kvCache: "f32", ropeType: "default", tieWordEmbeddings: false, backend: "cpu", threads: 1,
    adapter: null,
  };
}

export class FakeSession implements NativeSession {
  cache: number[] = [];
  cancelled = false;
  emittedAfterCancel = 0;
  constructor(private readonly script: number[], readonly contextLength: number, private readonly vocab: number) {}
  async logits(ids: number[]): Promise<Float32Array> {
    return new Float32Array(ids.length * this.vocab);
  }
  async generate(ids: number[], p: NativeSamplingParams, onToken: (id: number) => void): Promise<NativeGenerateResult> {
    this.cancelled = false;
    let reused = 0;
    while (reused < ids.length && reused < this.cache.length && ids[reused] === this.cache[reused]) reused++;
    if (reused === ids.length) reused--; // the last prompt token is always recomputed for its logits
    this.cache = [...ids];
    const out: number[] = [];
    // seed + temperature pick where in the script to start, so "sampling" is seed-dependent and reproducible
    let pos = p.temperature > 0 ? p.seed % this.script.length : 0;
    for (;;) {
      if (this.cancelled) return { ids: out, stopReason: "cancelled", promptTokens: ids.length, reusedTokens: reused, prefillMs: 1, decodeMs: 1 };
      if (out.length >= p.maxTokens) return { ids: out, stopReason: "length", promptTokens: ids.length, reusedTokens: reused, prefillMs: 1, decodeMs: 1 };
      await new Promise((r) => setImmediate(r));
      const id = this.script[pos++ % this.script.length];
      if (p.eosIds.includes(id)) return { ids: out, stopReason: "eos", promptTokens: ids.length, reusedTokens: reused, prefillMs: 1, decodeMs: 1 };
      out.push(id);
      this.cache.push(id);
      onToken(id);
    }
  }
  cancel(): void {
    this.cancelled = true;
  }
  reset(): void {
    this.cache = [];
  }
  cachedIds(): number[] {
    return [...this.cache];
  }
  dispose(): void {}
}

export class FakeModel implements NativeModel {
  sessions: FakeSession[] = [];
  constructor(private readonly script: number[], private readonly vocab: number, private readonly ctx = 64) {}
  info(): NativeModelInfo {
    return fakeInfo(this.vocab, this.ctx);
  }
  createSession(opts?: { contextLength?: number }): NativeSession {
    const s = new FakeSession(this.script, opts?.contextLength ?? this.ctx, this.vocab);
    this.sessions.push(s);
    return s;
  }
  close(): void {}
  grad(): Promise<NativeGradResult> {
    return Promise.reject(new Error("the fake model has no adapter"));
  }
}
