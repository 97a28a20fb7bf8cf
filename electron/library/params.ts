// Parameter counts and KV-cache size of a model from its config.json alone (no weights), for the Discover list and
// the fit estimate, where the weights are not on this machine yet. The engine computes the same numbers from the
// safetensors headers once a model is downloaded (native/model/model.cpp: params_total_, params_active_,
// kv_bytes_per_token); test/native/library-params.test.ts checks that the two agree on every fixture model.
//
// Counting rules (the engine's, per layer; D = hidden, qd = heads·hd, kd = kv_heads·hd):
//   attention   q: qd·D, k and v: kd·D each (absent on Hunyuan-Large CLA layers i % f != 0), o: D·qd
//               + q/k/v biases (qwen2 family) + q/k norms (per head: hd each; olmoe: over the projection: qd + kd)
//   norms       2·D
//   dense MLP   3·I·D
//   MoE         router E·D + E experts of 3·Ie·D + shared MLP 3·Is·D (+ D for qwen2_moe's shared_expert_gate)
//   model       embeddings V·D + final norm D + lm_head V·D unless tied
//   active      total − Σ over MoE layers (E − k)·3·Ie·D: a token runs its top-k experts, everything else always
//   KV cache    per token: 2 (k, v) · kv_heads · hd · 4 bytes (the engine's cache is f32) per KV slot; a slot is a
//               layer, except under Hunyuan-Large's CLA, where cla_share_factor layers share one.

import type { NativeModelInfo } from "../engine/addon.js";

export const SUPPORTED_MODEL_TYPES = ["llama", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "hunyuan_v1_moe", "hunyuan"] as const;

/** Bytes of one KV-cache element in the engine (native/runtime: the cache is f32). */
export const KV_ELEMENT_BYTES = 4;

/** The numbers the engine reports in NativeModelInfo (same names, same counting: library-params.test.ts compares them
 * on every fixture), computed from config.json alone, plus the KV-cache entry count. */
export type ConfigShape = Pick<
  NativeModelInfo,
  | "modelType" | "numLayers" | "hiddenSize" | "vocabSize" | "numHeads" | "numKvHeads" | "headDim" | "contextLength"
  | "numExperts" | "topK" | "paramsTotal" | "paramsActive" | "kvBytesPerToken"
> & {
  /** KV-cache entries: layers, or layers / cla_share_factor (rounded up) under CLA. */
  numKvSlots: number;
};

type Cfg = Record<string, unknown>;

export class ConfigError extends Error {}

function field(c: Cfg, key: string): unknown {
  const v = c[key];
  return v === null ? undefined : v;
}

function int(c: Cfg, key: string, where: string, def?: number): number {
  const v = field(c, key);
  if (v === undefined) {
    if (def !== undefined) return def;
    throw new ConfigError(`${where}: missing field '${key}'`);
  }
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new ConfigError(`${where}: field '${key}' must be a non-negative integer`);
  return v;
}

function bool(c: Cfg, key: string, where: string, def: boolean): boolean {
  const v = field(c, key);
  if (v === undefined) return def;
  if (typeof v !== "boolean") throw new ConfigError(`${where}: field '${key}' must be true or false`);
  return v;
}

/** An int or a per-layer list (Hunyuan writes num_experts / moe_topk / moe_intermediate_size either way). */
function perLayer(c: Cfg, key: string, layer: number, layers: number, where: string): number {
  const v = field(c, key);
  if (v === undefined) throw new ConfigError(`${where}: missing field '${key}'`);
  if (typeof v === "number") return v;
  if (!Array.isArray(v) || v.length === 0) throw new ConfigError(`${where}: field '${key}' must be a number or a list`);
  if (v.length !== 1 && v.length !== layers) throw new ConfigError(`${where}: field '${key}' has ${v.length} entries but there are ${layers} layers`);
  const e = v.length === 1 ? v[0] : v[layer];
  if (typeof e !== "number") throw new ConfigError(`${where}: field '${key}' entries must be numbers`);
  return e;
}

function firstOf(c: Cfg, keys: string[]): string {
  for (const k of keys) if (c[k] !== undefined && c[k] !== null) return k;
  return keys[0];
}

interface LayerShape {
  moe: boolean;
  experts: number;
  topK: number;
  expertInter: number;
  sharedInter: number;
  hasKv: boolean;
}

/**
 * Shape, parameter counts and KV bytes per token from a parsed config.json. Throws an Error naming `where` and the
 * field for a config the engine would reject for the same reason (missing sizes, unsupported model_type).
 */
export function configShape(config: Cfg, where = "config.json"): ConfigShape {
  const mt = config.model_type;
  if (typeof mt !== "string") throw new ConfigError(`${where}: missing field 'model_type'`);
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(mt)) {
    throw new ConfigError(`${where}: model_type '${mt}' is not supported; supported: ${SUPPORTED_MODEL_TYPES.join(", ")}`);
  }
  const D = int(config, "hidden_size", where);
  const L = int(config, "num_hidden_layers", where);
  const H = int(config, "num_attention_heads", where);
  const V = int(config, "vocab_size", where);
  const I = int(config, "intermediate_size", where);
  const Hkv = int(config, "num_key_value_heads", where, H);
  if (D <= 0 || L <= 0 || H <= 0 || V <= 0) throw new ConfigError(`${where}: field 'hidden_size' and layer/head/vocab counts must be positive`);
  const hd = mt === "hunyuan" ? Math.floor(D / H) : int(config, "head_dim", where, Math.floor(D / H));
  const ctx = int(config, "max_position_embeddings", where, 2048);
  const tied = bool(config, "tie_word_embeddings", where, mt === "hunyuan");
  const qd = H * hd;
  const kd = Hkv * hd;

  const layers: LayerShape[] = [];
  for (let i = 0; i < L; i++) {
    const l: LayerShape = { moe: false, experts: 0, topK: 0, expertInter: 0, sharedInter: 0, hasKv: true };
    if (mt === "mixtral") {
      l.moe = true;
      l.experts = int(config, firstOf(config, ["num_local_experts", "num_experts"]), where);
      l.topK = int(config, "num_experts_per_tok", where);
      l.expertInter = I;
    } else if (mt === "qwen2_moe" || mt === "qwen3_moe") {
      const step = int(config, "decoder_sparse_step", where, 1);
      const only = config.mlp_only_layers;
      const onlyMlp = Array.isArray(only) && only.includes(i);
      const E = int(config, firstOf(config, ["num_experts", "num_local_experts"]), where);
      l.moe = !onlyMlp && E > 0 && step > 0 && (i + 1) % step === 0;
      if (l.moe) {
        l.experts = E;
        l.topK = int(config, "num_experts_per_tok", where);
        l.expertInter = int(config, "moe_intermediate_size", where);
        if (mt === "qwen2_moe") l.sharedInter = int(config, "shared_expert_intermediate_size", where, 0);
      }
    } else if (mt === "olmoe") {
      l.moe = true;
      l.experts = int(config, firstOf(config, ["num_experts", "num_local_experts"]), where);
      l.topK = int(config, "num_experts_per_tok", where);
      l.expertInter = I;
    } else if (mt === "hunyuan_v1_moe") {
      // transformers' HunYuanMoEV1 (and the engine): experts and the shared MLP use intermediate_size.
      l.moe = true;
      l.experts = perLayer(config, firstOf(config, ["num_experts", "num_local_experts"]), i, L, where);
      l.topK = perLayer(config, firstOf(config, ["moe_topk", "num_experts_per_tok"]), i, L, where);
      l.expertInter = I;
      l.sharedInter = I;
    } else if (mt === "hunyuan") {
      l.moe = true;
      l.experts = perLayer(config, "num_experts", i, L, where);
      l.topK = perLayer(config, "moe_topk", i, L, where);
      l.expertInter = config.moe_intermediate_size != null ? perLayer(config, "moe_intermediate_size", i, L, where) : I;
      let nsh = config.num_shared_expert != null ? perLayer(config, "num_shared_expert", i, L, where) : 1;
      if (!bool(config, "use_mixed_mlp_moe", where, true)) nsh = 0;
      l.sharedInter = I * nsh;
    }
    if (l.moe && (l.experts <= 0 || l.topK <= 0 || l.topK > l.experts)) {
      throw new ConfigError(`${where}: layer ${i} has ${l.experts} experts and top-k ${l.topK} (need 1 <= top-k <= experts)`);
    }
    layers.push(l);
  }
  // CLA (Hunyuan-Large): layers with i % f != 0 reuse the k/v of the last layer with i % f == 0.
  const cla = mt === "hunyuan" && bool(config, "use_cla", where, false) ? int(config, "cla_share_factor", where, 1) : 1;
  if (cla < 1) throw new ConfigError(`${where}: field 'cla_share_factor' must be >= 1`);
  let slots = 0;
  layers.forEach((l, i) => {
    l.hasKv = i % cla === 0;
    if (l.hasKv) slots++;
  });

  // Biases: the qwen2 family always has q/k/v biases (transformers 5 spells it qkv_bias); others follow attention_bias.
  const qwen2Family = mt === "qwen2" || mt === "qwen2_moe";
  const attnBias = bool(config, "attention_bias", where, false);
  const qkvBias = qwen2Family ? bool(config, "qkv_bias", where, true) : attnBias;
  const oBias = !qwen2Family && attnBias;
  const mlpBias = bool(config, "mlp_bias", where, false);
  let qkNorm = 0;
  if (mt === "qwen3" || mt === "qwen3_moe" || mt === "hunyuan_v1_moe") qkNorm = 2 * hd;
  else if (mt === "hunyuan") qkNorm = bool(config, "use_qk_norm", where, true) ? 2 * hd : 0;
  else if (mt === "olmoe") qkNorm = qd + kd;

  let total = V * D + D + (tied ? 0 : V * D);
  let inactive = 0;
  for (const l of layers) {
    total += 2 * D; // input_layernorm, post_attention_layernorm
    total += qd * D + D * qd + (qkvBias ? qd : 0) + (oBias ? D : 0) + qkNorm;
    if (l.hasKv) total += 2 * kd * D + (qkvBias ? 2 * kd : 0);
    if (!l.moe) {
      total += 3 * I * D + (mlpBias ? 2 * I + D : 0);
      continue;
    }
    total += l.experts * D + l.experts * 3 * l.expertInter * D;
    if (l.sharedInter > 0) total += 3 * l.sharedInter * D + (mt === "qwen2_moe" ? D : 0);
    inactive += (l.experts - l.topK) * 3 * l.expertInter * D;
  }
  const moeLayers = layers.filter((l) => l.moe);
  return {
    modelType: mt,
    numLayers: L,
    hiddenSize: D,
    vocabSize: V,
    numHeads: H,
    numKvHeads: Hkv,
    headDim: hd,
    contextLength: ctx,
    numExperts: moeLayers.reduce((m, l) => Math.max(m, l.experts), 0),
    topK: moeLayers.reduce((m, l) => Math.max(m, l.topK), 0),
    paramsTotal: total,
    paramsActive: total - inactive,
    numKvSlots: slots,
    kvBytesPerToken: slots * 2 * kd * KV_ELEMENT_BYTES,
  };
}
