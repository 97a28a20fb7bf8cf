// quantize's config.json keeps the source's text (numbers as written: transformers 5's strict config classes refuse
// a float field written as 0) and gains quantization_config as its last key.
import { describe, expect, it } from "vitest";
import { withQuantizationConfig, type QuantizationConfig } from "../../electron/engine/quantize.js";

const qc = { quant_method: "moe-studio", version: 1, format: "q8_0", bits: 8, embeddings: "q8_0", block_layout: "gguf",
  modules_not_quantized: [], fallbacks: {} } as unknown as QuantizationConfig;

describe("withQuantizationConfig", () => {
  it("keeps 0.0 and every other byte of the source, and parses to the source plus quantization_config", () => {
    const src = '{\n  "model_type": "mixtral",\n  "router_jitter_noise": 0.0,\n  "rope_theta": 1e6\n}\n';
    const out = withQuantizationConfig(src, "config.json", qc);
    expect(out.startsWith('{\n  "model_type": "mixtral",\n  "router_jitter_noise": 0.0,\n  "rope_theta": 1e6,\n  "quantization_config": {')).toBe(true);
    expect(JSON.parse(out)).toEqual({ ...JSON.parse(src), quantization_config: qc });
  });
  it("an empty object and a non-object", () => {
    expect(JSON.parse(withQuantizationConfig("{}", "c.json", qc))).toEqual({ quantization_config: qc });
    expect(() => withQuantizationConfig("[1]", "c.json", qc)).toThrow(/not a JSON object/);
  });
});
