// train.json (electron/train/config.ts): defaults, the hunyuan_lora preset under the file's own keys, strict keys
// and ranges, and the engine config a run gets; the per-epoch order is a seeded permutation.
import { describe, expect, it } from "vitest";
import { DEFAULTS, nativeConfig, resolveTrainArgs } from "../../electron/train/config.js";
import { epochOrder } from "../../electron/train/data.js";

describe("train.json", () => {
  it("defaults and the hunyuan_lora preset (Tencent's recipe), file keys over the preset", () => {
    expect(resolveTrainArgs({})).toEqual(DEFAULTS);
    const h = resolveTrainArgs({ preset: "hunyuan_lora", max_steps: 100 });
    expect(h).toMatchObject({ lora_rank: 64, lora_alpha: 128, lora_dropout: 0.1, lr_scheduler_type: "cosine_with_min_lr", learning_rate: 1e-5, min_lr: 1e-6, warmup_ratio: 0.01, max_steps: 100 });
    expect(h.num_train_epochs).toBeUndefined();
    expect(resolveTrainArgs({ preset: "hunyuan_lora", lora_rank: 16 }).lora_rank).toBe(16);
    const n = nativeConfig(h, 100, "/m");
    expect(n).toMatchObject({ max_steps: 100, warmup_ratio: 0.01, lora_rank: 64, base_model_name_or_path: "/m", expert_lr_scale: { routed: 1, shared: 1, attention: 1 } });
    expect(resolveTrainArgs({ expert_lr_scale: { routed: 0.5 } }).expert_lr_scale).toEqual({ routed: 0.5, shared: 1, attention: 1 });
  });
  it("refuses unknown keys by name, bad values and contradictions", () => {
    expect(() => resolveTrainArgs({ lr: 1, epochs: 2 })).toThrow(/unknown keys "lr", "epochs"/);
    expect(() => resolveTrainArgs({ preset: "x" })).toThrow(/unknown preset "x"/);
    expect(() => resolveTrainArgs({ lora_rank: 2.5 })).toThrow(/lora_rank must be an integer/);
    expect(() => resolveTrainArgs({ learning_rate: -1 })).toThrow(/learning_rate/);
    expect(() => resolveTrainArgs({ lr_scheduler_type: "polynomial" })).toThrow(/lr_scheduler_type must be one of/);
    expect(() => resolveTrainArgs({ warmup_ratio: 0.1, warmup_steps: 3 })).toThrow(/not both/);
    expect(() => resolveTrainArgs({ max_steps: 3, num_train_epochs: 1 })).toThrow(/not both/);
    expect(() => resolveTrainArgs({ loss_on: "user" })).toThrow(/loss_on/);
    expect(() => resolveTrainArgs({ expert_lr_scale: { experts: 1 } })).toThrow(/unknown key "experts"/);
    expect(() => resolveTrainArgs([])).toThrow(/JSON object/);
  });
  it("epoch order: a permutation, fixed by (seed, epoch), different across epochs", () => {
    const a = epochOrder(50, 42, 0);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(epochOrder(50, 42, 0)).toEqual(a);
    expect(epochOrder(50, 42, 1)).not.toEqual(a);
    expect(epochOrder(50, 43, 0)).not.toEqual(a);
  });
});
