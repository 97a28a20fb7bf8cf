// The engine in a worker process (EngineHost): same results as in-process, cancellation through IPC, and a
// crashed worker (SIGKILL, as an OOM kill would do) fails what was pending with a clear error while the host
// process lives on and loads the model again in a fresh worker. Needs the compiled worker (npm test builds it).
import { afterAll, describe, expect, it } from "vitest";
import { EngineHost } from "../../electron/engine/host.js";
import { fixtureNames, golden, modelDir } from "./fixtures.js";

const names = fixtureNames();
const name = names.includes("qwen3_moe") ? "qwen3_moe" : names[0];
const GREEDY = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 };
const host = new EngineHost();
afterAll(() => host.shutdown());

describe("EngineHost (worker process)", () => {
  it("loads with progress, streams the golden greedy reply, cancels", async () => {
    const g = golden(name);
    const progress: number[] = [];
    const m = await host.loadModel(modelDir(name), { threads: 2, onProgress: (d) => progress.push(d) });
    expect(progress.length).toBeGreaterThan(0);
    expect(m.info.vocabSize).toBe(g.vocab_size);
    const s = await m.chat();
    const gen = s.generate(g.messages, { ...GREEDY, maxTokens: g.greedy_ids.length, eosIds: g.eos_token_ids, systemPrompt: null });
    let text = "";
    for await (const d of gen) text += d;
    const r = await gen.result;
    expect(r.promptIds).toEqual(g.prompt_ids);
    expect(r.ids).toEqual(g.greedy_ids.slice(0, r.ids.length));
    expect(text).toBe(r.text);
    const rows = await m.logits(g.prompt_ids.slice(0, 4));
    expect(Math.abs(rows[3][0] - g.logits[3][0])).toBeLessThan(1e-4);

    const ac = new AbortController();
    const gen2 = s.generate({ ids: g.prompt_ids }, { ...GREEDY, maxTokens: 150, eosIds: [], signal: ac.signal });
    for await (const _ of gen2) ac.abort();
    const r2 = await gen2.result;
    expect(r2.stats.stopReason).toBe("cancelled");
    expect(r2.ids.length).toBeLessThan(150);
    await s.dispose();
    await m.close();
  });

  it("a killed worker fails the pending request clearly; the host survives and reloads", async () => {
    const g = golden(name);
    const m = await host.loadModel(modelDir(name), { threads: 2 });
    const s = await m.chat();
    const exited = new Promise((r) => host.once("exit", r));
    const gen = s.generate({ ids: g.prompt_ids }, { ...GREEDY, maxTokens: 200, eosIds: [] });
    process.kill(host.pid!, "SIGKILL");
    await expect(gen.result).rejects.toThrow(/engine worker exited \(signal SIGKILL\)/);
    await exited;
    await expect(m.chat()).rejects.toThrow(/restarted.*load it again/);
    const m2 = await host.loadModel(modelDir(name), { threads: 2 });
    const s2 = await m2.chat();
    const r = await s2.generate({ ids: g.prompt_ids }, { ...GREEDY, maxTokens: 3, eosIds: [] }).result;
    expect(r.ids).toEqual(g.greedy_ids.slice(0, 3));
    await m2.close();
  });

  it("errors cross the process boundary with their message", async () => {
    await expect(host.loadModel("/nonexistent/model")).rejects.toThrow(/\/nonexistent\/model: model folder not found/);
  });

  it("answers an op outside protocol.ts's table with an error naming it, and keeps serving", async () => {
    const bogus = host.request("nosuchop" as "systemInfo", {}).promise;
    await expect(bogus).rejects.toThrow(/no op "nosuchop"/);
    const info = await host.request("systemInfo", {}).promise;
    expect(info.threads).toBeGreaterThan(0);
  });
});
