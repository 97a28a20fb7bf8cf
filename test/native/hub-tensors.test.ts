// addon.hubTensors (native/binding/names.cpp): the engine's names table as Node sees it. On every fixture model folder
// each stored tensor is one the table lists (unknown is empty) and each tensor it requires is stored; the experts'
// form follows the folder; a config the engine refuses is refused with the engine's message.
import { readdirSync, readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadAddon } from "../../electron/engine/addon.js";
import { SafetensorsFolder } from "../../electron/gguf/safetensors.js";
import { MODELS } from "./fixtures.js";

const addon = loadAddon();
const models = readdirSync(MODELS).filter((m) => existsSync(join(MODELS, m, "config.json"))).sort();

describe("hubTensors", () => {
  it.each(models)("%s: every stored tensor is listed once and every required one is stored", (m) => {
    const dir = join(MODELS, m);
    const st = new SafetensorsFolder(dir);
    try {
      const present = [...st.tensors.keys()];
      const r = addon.hubTensors(readFileSync(join(dir, "config.json"), "utf8"), join(dir, "config.json"), present);
      expect(r.unknown).toEqual([]);
      const listed = new Map(r.tensors.map((t) => [t.name, t]));
      expect(listed.size).toBe(r.tensors.length); // no name twice
      for (const n of present) expect(listed.has(n), n).toBe(true);
      for (const t of r.tensors) if (!t.optional) expect(st.has(t.name), t.name).toBe(true);
      expect(r.tensors.every((t) => t.form === "per_expert")).toBe(true);
      expect(r.tensors[0]).toMatchObject({ name: "model.embed_tokens.weight", role: "embedding", layer: -1, expert: -1, bias: false });
    } finally {
      st.close();
    }
  });

  it("lists a layer's experts in the form the folder stores them", () => {
    const cfg = readFileSync(join(MODELS, "mixtral", "config.json"), "utf8");
    const hub = addon.hubTensors(cfg, "config.json");
    expect(hub.tensors.find((t) => t.role === "expert.up_proj" && t.layer === 1 && t.expert === 7)?.name).toBe("model.layers.1.block_sparse_moe.experts.7.w3.weight");
    const fused = addon.hubTensors(cfg, "config.json", ["model.layers.1.mlp.experts.gate_up_proj", "model.layers.1.mlp.gate.weight", "model.layers.1.nonsense"]);
    const l1 = fused.tensors.filter((t) => t.layer === 1 && !t.bias && t.form === "fused").map((t) => t.name);
    expect(l1).toEqual(["model.layers.1.mlp.gate.weight", "model.layers.1.mlp.experts.gate_up_proj", "model.layers.1.mlp.experts.down_proj"]);
    expect(fused.tensors.some((t) => t.layer === 1 && t.role === "expert.gate_proj")).toBe(false);
    expect(fused.unknown).toEqual(["model.layers.1.nonsense"]);
  });

  it("refuses a config the engine refuses, naming the source", () => {
    const cfg = JSON.parse(readFileSync(join(MODELS, "qwen3", "config.json"), "utf8"));
    expect(() => addon.hubTensors(JSON.stringify({ ...cfg, model_type: "gpt2" }), "/x/config.json")).toThrow(/\/x\/config\.json.*gpt2/);
    expect(() => addon.hubTensors("{", "/x/config.json")).toThrow(/\/x\/config\.json/);
    expect(() => addon.hubTensors(JSON.stringify(cfg), "c", [1 as unknown as string])).toThrow(/present\[0\] is not a string/);
  });
});
