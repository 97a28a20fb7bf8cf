// The TypeScript parameter count (electron/library/params.ts, from config.json alone, for models not downloaded yet)
// must agree exactly with the engine's (native/model/model.cpp, from the safetensors headers) on every fixture model:
// total and active parameters and KV-cache bytes per token. Exact: both are integer counts of the same tensors.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadAddon } from "../../electron/engine/addon.js";
import { configShape } from "../../electron/library/params.js";
import { MODELS, fixtureNames } from "./fixtures.js";

describe.each(fixtureNames())("params from config agree with the engine: %s", (name) => {
  it("paramsTotal, paramsActive, kvBytesPerToken, experts", async () => {
    const dir = join(MODELS, name);
    const model = await loadAddon().loadModel(dir, { threads: 1 });
    try {
      const info = model.info();
      const shape = configShape(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>);
      expect({ total: shape.paramsTotal, active: shape.paramsActive, kv: shape.kvBytesPerToken, experts: shape.numExperts, topK: shape.topK, layers: shape.numLayers }).toEqual({
        total: info.paramsTotal,
        active: info.paramsActive,
        kv: info.kvBytesPerToken,
        experts: info.numExperts,
        topK: info.topK,
        layers: info.numLayers,
      });
    } finally {
      model.close();
    }
  });
});
