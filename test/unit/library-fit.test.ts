// The fit estimate against numbers computed by hand from two real configs (test/fixtures/configs/, the published
// config.json files of Qwen3-30B-A3B-Instruct-2507 and Hunyuan-A13B-Instruct). Every number here is exact integer
// arithmetic, so the test asserts equality: no tolerance is needed.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fitEstimate, verdict, type MachineMemory } from "../../electron/library/fit.js";
import { configShape } from "../../electron/library/params.js";

const cfg = (name: string) => JSON.parse(readFileSync(join(import.meta.dirname, "../fixtures/configs", name), "utf8")) as Record<string, unknown>;
const GiB = 1024 ** 3;
// A workstation: 64 GiB RAM of which 48 GiB free, one 24 GiB GPU.
const WORKSTATION: MachineMemory = { totalRamBytes: 64 * GiB, freeRamBytes: 48 * GiB, vramBytes: 24 * GiB };

describe("fit estimate, Qwen3-30B-A3B", () => {
  // D = 2048, L = 48, H = 32, KV heads = 4, head_dim = 128 (qd = 4096, kd = 512), V = 151936, E = 128, k = 8, Ie = 768
  //   embeddings + lm_head (untied) = 2 · 151936 · 2048            =    622,329,856
  //   final norm                                                   =          2,048
  //   per layer: q 4096·2048 + k 512·2048 + v 512·2048 + o 2048·4096 = 18,874,368
  //              q_norm + k_norm (per head) 128 + 128               =            256
  //              two RMSNorms 2 · 2048                              =          4,096
  //              router 128 · 2048                                  =        262,144
  //              experts 128 · 3 · 768 · 2048                       =    603,979,776
  //              layer total                                        =    623,120,640
  //   total = 48 · 623,120,640 + 622,329,856 + 2,048                = 30,532,122,624   (published: 30.5B)
  //   active = total − 48 · (128 − 8) · 3 · 768 · 2048 = total − 27,179,089,920 = 3,353,032,704   (published: 3.3B)
  //   KV per token = 48 layers · 2 (k, v) · 512 · 4 bytes (f32 cache) = 196,608; at 4096 tokens 805,306,368
  const shape = configShape(cfg("qwen3-30b-a3b.json"));
  it("parameters and KV cache", () => {
    expect(shape.paramsTotal).toBe(30_532_122_624);
    expect(shape.paramsActive).toBe(3_353_032_704);
    expect(shape.kvBytesPerToken).toBe(196_608);
    expect(shape.numKvSlots).toBe(48);
    expect([shape.numExperts, shape.topK, shape.contextLength]).toEqual([128, 8, 262_144]);
  });
  it("bytes per precision and verdicts on a 64 GiB / 24 GiB GPU machine", () => {
    const f = fitEstimate(cfg("qwen3-30b-a3b.json"), 4096, WORKSTATION);
    expect(f.fits.map((p) => [p.precision, p.weightBytes, p.kvBytes])).toEqual([
      ["bf16", 61_064_245_248, 805_306_368], //  2 bytes per weight
      ["int8", 32_440_380_288, 805_306_368], //  total · 34 / 32
      ["int4", 17_174_318_976, 805_306_368], //  total · 144 / 256
    ]);
    // bf16: 61,869,551,616 > 0.8 · 64 GiB (54,975,581,389) but ≤ 0.95 · 64 GiB (65,283,502,899)  -> tight, CPU
    // int8: 33,245,686,656 ≤ 0.8 · 64 GiB and ≤ 48 GiB free; > 24 GiB VRAM                        -> fits, CPU
    // int4: 17,979,625,344 ≤ 0.9 · 24 GiB (23,192,823,398)                                       -> fits, GPU
    expect(f.fits.map((p) => [p.totalBytes, p.verdict, p.device])).toEqual([
      [61_869_551_616, "tight", "cpu"],
      [33_245_686_656, "fits", "cpu"],
      [17_979_625_344, "fits", "gpu"],
    ]);
  });
  it("the context is capped at the model's maximum", () => {
    const f = fitEstimate(cfg("qwen3-30b-a3b.json"), 10_000_000, WORKSTATION);
    expect(f.contextLength).toBe(262_144);
    expect(f.fits[0].kvBytes).toBe(196_608 * 262_144);
  });
});

describe("fit estimate, Hunyuan-A13B", () => {
  // D = 4096, L = 32, H = 32, KV heads = 8, head_dim = 128 (qd = 4096, kd = 1024), V = 128167, E = 64, k = 8,
  // experts and the shared MLP both of intermediate_size I = 3072 (hunyuan_v1_moe), tied embeddings, no CLA.
  //   embeddings (tied: no lm_head) 128167 · 4096                  =    524,972,032
  //   final norm                                                   =          4,096
  //   per layer: q 4096·4096 + k 1024·4096 + v 1024·4096 + o 4096·4096 = 41,943,040
  //              query/key layernorm per head 128 + 128            =            256
  //              two RMSNorms                                      =          8,192
  //              router 64 · 4096                                  =        262,144
  //              experts 64 · 3 · 3072 · 4096                      =  2,415,919,104
  //              shared MLP 3 · 3072 · 4096                        =     37,748,736
  //              layer total                                       =  2,495,881,472
  //   total = 32 · 2,495,881,472 + 524,972,032 + 4,096             = 80,393,183,232   (published: 80B)
  //   active = total − 32 · (64 − 8) · 37,748,736 = total − 67,645,734,912 = 12,747,448,320   (published: 13B)
  //   KV per token = 32 · 2 · 1024 · 4 = 262,144; at 4096 tokens 1,073,741,824
  const f = fitEstimate(cfg("hunyuan-a13b.json"), 4096, WORKSTATION);
  it("parameters, bytes and verdicts", () => {
    expect([f.paramsTotal, f.paramsActive, f.kvBytesPerToken]).toEqual([80_393_183_232, 12_747_448_320, 262_144]);
    // bf16 160,786,366,464 + kv and int8 85,417,757,184 + kv exceed 0.95 · 64 GiB      -> does not fit
    // int4 45,221,165,568 + 1,073,741,824 = 46,294,907,392 ≤ 0.8 · 64 GiB, ≤ 48 GiB free -> fits, CPU
    expect(f.fits.map((p) => [p.precision, p.weightBytes, p.totalBytes, p.verdict, p.device])).toEqual([
      ["bf16", 160_786_366_464, 161_860_108_288, "no", "cpu"],
      ["int8", 85_417_757_184, 86_491_499_008, "no", "cpu"],
      ["int4", 45_221_165_568, 46_294_907_392, "fits", "cpu"],
    ]);
  });
  it("on a laptop without a GPU (16 GiB RAM, 6 GiB free) nothing fits; tight means it loads only if others make room", () => {
    const laptop = { totalRamBytes: 16 * GiB, freeRamBytes: 6 * GiB, vramBytes: 0 };
    expect(fitEstimate(cfg("hunyuan-a13b.json"), 4096, laptop).fits.map((p) => p.verdict)).toEqual(["no", "no", "no"]);
    // 10 GiB needed: ≤ 0.8 · 16 GiB but more than the 6 GiB free -> tight; with 12 GiB free -> fits
    expect(verdict(10 * GiB, laptop)).toEqual({ verdict: "tight", device: "cpu" });
    expect(verdict(10 * GiB, { ...laptop, freeRamBytes: 12 * GiB })).toEqual({ verdict: "fits", device: "cpu" });
  });
});

describe("CLA (Hunyuan-Large): layers share KV slots", () => {
  it("4 layers with cla_share_factor 2 have 2 KV slots and no k/v projections on layers 1 and 3", () => {
    const base = JSON.parse(readFileSync(join(import.meta.dirname, "../fixtures/models/hunyuan_large/config.json"), "utf8")) as Record<string, unknown>;
    const cla = configShape(base);
    const noCla = configShape({ ...base, use_cla: false });
    // kv heads 2 · head_dim (64 / 4 = 16) = kd 32: per token 2 slots · 2 · 32 · 4 bytes = 512 (4 slots without CLA: 1024)
    expect([cla.numKvSlots, cla.kvBytesPerToken]).toEqual([2, 512]);
    expect([noCla.numKvSlots, noCla.kvBytesPerToken]).toEqual([4, 1024]);
    // two layers lose k_proj and v_proj: 2 · 2 · (32 · 64) = 8192 parameters
    expect(noCla.paramsTotal - cla.paramsTotal).toBe(8192);
  });
  it("bad configs name the file and field", () => {
    expect(() => configShape({ model_type: "gpt2" }, "x/config.json")).toThrow("x/config.json: model_type 'gpt2' is not supported");
    expect(() => configShape({ model_type: "qwen3", hidden_size: 8 }, "c.json")).toThrow("c.json: missing field 'num_hidden_layers'");
  });
});
