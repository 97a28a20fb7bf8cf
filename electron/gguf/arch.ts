// Hugging Face checkpoint -> llama.cpp GGUF: per architecture, the metadata llama.cpp reads and the tensor plan
// (GGUF name, shape in GGUF order, type, source tensors and the transform), with llama.cpp's names (gguf-py
// constants.py / tensor_mapping.py and convert_hf_to_gguf.py are the reference; nothing here is copied from them).
//
// | model_type      | general.architecture | notes                                                               |
// |-----------------|----------------------|---------------------------------------------------------------------|
// | llama           | llama                | Q/K rows permuted (see permuteRows); llama3 rope -> rope_freqs      |
// | mixtral         | llama                | + ffn_gate_inp and stacked ffn_{gate,up,down}_exps (w1, w3, w2)      |
// | qwen2 / qwen3   | qwen2 / qwen3        | qkv biases (qwen2); per-head q/k norms (qwen3)                       |
// | qwen2_moe       | qwen2moe             | + shared expert (ffn_*_shexp) and its gate (ffn_gate_inp_shexp)      |
// | qwen3_moe       | qwen3moe             |                                                                     |
// | olmoe           | olmoe                | q/k norms over the whole projection                                 |
// | hunyuan_v1_moe  | hunyuan-moe          | Hunyuan-A13B: shared MLP -> ffn_*_shexp; NTK-alpha folded into the base |
// | hunyuan (Large) | —                    | llama.cpp has no architecture for it: a clear error                 |
import { basename, resolve } from "node:path";
import { loadAddon, type HubTensorRole, type NativeHubTensor } from "../engine/addon.js";
import { GGMLType, kv, type GGUFKV } from "./format.js";
import { chooseType, fileType, type ExportType, type TensorRole } from "./quant.js";
import type { SafetensorsFolder, SourceTensor } from "./safetensors.js";
import { tokenizerKVs } from "./vocab.js";

type Json = Record<string, unknown>;

/** Blocks a quantized model folder already holds are copied as these GGUF types, never quantized twice. */
const STORED_TYPE = { q8_0: GGMLType.Q8_0, q4_0: GGMLType.Q4_0, q4_k: GGMLType.Q4_K } as const;

export interface PlannedTensor {
  name: string;
  role: TensorRole;
  ne: number[];               // GGUF order (ne[0] = row length)
  type: GGMLType;
  sources: SourceTensor[];    // one, or one per expert stacked along the slowest dimension
  permuteHeads?: number;      // llama-arch Q/K: regroup each head's rows (see permuteRows)
  data?: Float32Array;        // a computed tensor (rope_freqs)
}

export interface ExportPlan {
  arch: string;
  kvs: GGUFKV[];
  tensors: PlannedTensor[];
  notes: string[];            // what the user should know (ignored config, fallbacks)
}

export const SUPPORTED_MODEL_TYPES = ["llama", "mixtral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "olmoe", "hunyuan_v1_moe"];

const ARCH: Record<string, string> = {
  llama: "llama",
  mixtral: "llama",
  qwen2: "qwen2",
  qwen3: "qwen3",
  qwen2_moe: "qwen2moe",
  qwen3_moe: "qwen3moe",
  olmoe: "olmoe",
  hunyuan_v1_moe: "hunyuan-moe",
};

/**
 * llama.cpp runs llama-arch attention with the "normal" (interleaved pairs) RoPE, while HF Llama rotates the two
 * halves of each head (rotate_half). convert_hf_to_gguf therefore permutes the rows of q_proj/k_proj per head:
 * within a head of d rows, output row 2i+j is input row j·(d/2)+i (i < d/2, j ∈ {0,1}), so that the pairs
 * (x_i, x_{i+d/2}) HF rotates together become adjacent. Applied to whole heads; `rows` holds nHeads·d rows.
 */
export function permuteRows<T extends Float32Array | Uint8Array>(src: T, rows: number, cols: number, rowsPerHead: number): T {
  // (also moves rows of quantized blocks: a block never spans two rows, so a row's bytes move as a unit)
  const out = new (src.constructor as new (n: number) => T)(src.length);
  const half = rowsPerHead / 2;
  for (let h = 0; h < rows / rowsPerHead; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = (h * rowsPerHead + j * half + i) * cols;
        const to = (h * rowsPerHead + 2 * i + j) * cols;
        out.set(src.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

class Config {
  constructor(readonly c: Json, readonly file: string) {}
  opt(...keys: string[]): unknown {
    for (const k of keys) if (this.c[k] !== undefined && this.c[k] !== null) return this.c[k];
    return undefined;
  }
  num(...keys: string[]): number {
    const found = keys.find((k) => this.c[k] !== undefined && this.c[k] !== null);
    const v = this.opt(...keys);
    if (typeof v === "number" && Number.isFinite(v)) return v;
    // per-layer lists (Hunyuan-A13B writes moe_topk etc. per layer): one value for all layers, or an error
    if (Array.isArray(v) && v.length > 0 && v.every((x) => x === v[0]) && typeof v[0] === "number") return v[0];
    if (Array.isArray(v)) {
      throw new Error(`${this.file}: "${found}" differs between layers (${JSON.stringify(v)}); llama.cpp's GGUF has one value for all layers`);
    }
    throw new Error(`${this.file}: field "${keys[0]}" is missing or not a number`);
  }
  int(...keys: string[]): number {
    const n = this.num(...keys);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${this.file}: field "${keys[0]}" must be a non-negative integer, got ${n}`);
    return n;
  }
}

/** Rope scaling in either config dialect: {type|rope_type, factor, ...} or null. */
function ropeScaling(c: Json): Json | null {
  const s = (c.rope_scaling ?? c.rope_parameters) as Json | null | undefined;
  if (!s || typeof s !== "object") return null;
  const type = s.rope_type ?? s.type;
  if (type === undefined || type === "default") return null;
  return { ...s, rope_type: type };
}

function ropeTheta(c: Json): number {
  const p = c.rope_parameters as Json | undefined;
  const t = c.rope_theta ?? p?.rope_theta ?? 10000;
  if (typeof t !== "number") throw new Error(`config.json: rope_theta must be a number`);
  return t;
}

/**
 * llama3 rope as per-frequency divisors (llama.cpp's rope_freqs tensor, d/2 floats): frequency f_k = θ^(-2k/d) with
 * wavelength λ = 2π/f_k keeps factor 1 when λ < L/high_freq_factor, is divided by `factor` when
 * λ > L/low_freq_factor, and in between interpolates smoothly: s = (L/λ - low)/(high - low), divisor
 * 1/((1-s)/factor + s). L = original_max_position_embeddings.
 */
export function llama3RopeFactors(theta: number, headDim: number, s: Json): Float32Array {
  const factor = Number(s.factor ?? 8);
  const low = Number(s.low_freq_factor ?? 1);
  const high = Number(s.high_freq_factor ?? 4);
  const L = Number(s.original_max_position_embeddings ?? 8192);
  const lowWavelen = L / low;
  const highWavelen = L / high;
  const out = new Float32Array(headDim / 2);
  for (let k = 0; k < headDim / 2; k++) {
    const freq = 1 / theta ** ((2 * k) / headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[k] = 1;
    else if (wavelen > lowWavelen) out[k] = factor;
    else {
      const smooth = (L / wavelen - low) / (high - low);
      out[k] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}

export function planExport(dir: string, config: Json, st: SafetensorsFolder, target: ExportType): ExportPlan {
  const file = resolve(dir, "config.json");
  const modelType = config.model_type;
  if (modelType === "hunyuan") {
    throw new Error(
      `${file}: model_type "hunyuan" (Hunyuan-Large, HunYuanForCausalLM) has no llama.cpp architecture: llama.cpp names ` +
        `hunyuan-moe (Hunyuan-A13B, model_type hunyuan_v1_moe) and hunyuan-dense, but not Hunyuan-Large's cross-layer ` +
        `attention (CLA), so no GGUF it could load can be written`,
    );
  }
  if (typeof modelType !== "string" || !ARCH[modelType]) {
    throw new Error(`${file}: model_type ${JSON.stringify(modelType)} cannot be exported to GGUF (supported: ${SUPPORTED_MODEL_TYPES.join(", ")})`);
  }
  const arch = ARCH[modelType];
  const cfg = new Config(config, file);
  const notes: string[] = [];
  const L = cfg.int("num_hidden_layers");
  const hidden = cfg.int("hidden_size");
  const nHead = cfg.int("num_attention_heads");
  const nKv = cfg.opt("num_key_value_heads") !== undefined ? cfg.int("num_key_value_heads") : nHead;
  const explicitHeadDim = cfg.opt("head_dim", "attention_head_dim");
  const headDim = explicitHeadDim !== undefined ? cfg.int("head_dim", "attention_head_dim") : hidden / nHead;
  const vocab = cfg.int("vocab_size");
  const tied = config.tie_word_embeddings === true;
  const isMoe = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "hunyuan_v1_moe"].includes(modelType);
  const nExpert = isMoe ? cfg.int("num_local_experts", "num_experts") : 0;

  if (modelType === "qwen2_moe" || modelType === "qwen3_moe") {
    const step = config.decoder_sparse_step ?? 1;
    const dense = (config.mlp_only_layers ?? []) as number[];
    if (step !== 1 || dense.length > 0) {
      const denseLayers = [...Array(L).keys()].filter((i) => dense.includes(i) || !((i + 1) % (step as number) === 0));
      throw new Error(
        `${file}: layers ${denseLayers.join(", ")} are dense (decoder_sparse_step ${step}, mlp_only_layers ${JSON.stringify(dense)}); ` +
          `llama.cpp's ${arch} has experts in every layer, so it could not load this model`,
      );
    }
  }
  if (modelType === "olmoe" && nKv !== nHead) {
    // HF OLMoE normalises k over its whole projection (num_key_value_heads·head_dim); llama.cpp's olmoe creates
    // attn_k_norm with n_embd entries, i.e. it assumes no GQA (true of the released OLMoE models).
    throw new Error(`${file}: num_key_value_heads ${nKv} != num_attention_heads ${nHead}; llama.cpp's olmoe expects k_norm over the whole hidden size (no grouped-query attention), so it could not load this model`);
  }
  if (modelType === "hunyuan_v1_moe" && config.use_cla === true) {
    throw new Error(`${file}: use_cla is true; llama.cpp's hunyuan-moe has no cross-layer attention`);
  }

  // ---- metadata ----
  const A = arch;
  const kvs: GGUFKV[] = [
    kv.str("general.architecture", A),
    kv.str("general.name", basename(resolve(dir))),
    kv.u32("general.file_type", fileType(target)),
    kv.u32("general.quantization_version", 2),
    kv.u32("general.alignment", 32),
  ];
  kvs.push(kv.u32(`${A}.block_count`, L));
  kvs.push(kv.u32(`${A}.context_length`, cfg.int("max_position_embeddings")));
  kvs.push(kv.u32(`${A}.embedding_length`, hidden));
  kvs.push(kv.u32(`${A}.feed_forward_length`, cfg.int("intermediate_size")));
  kvs.push(kv.u32(`${A}.attention.head_count`, nHead));
  kvs.push(kv.u32(`${A}.attention.head_count_kv`, nKv));
  kvs.push(kv.f32(`${A}.attention.layer_norm_rms_epsilon`, cfg.num("rms_norm_eps")));
  if (explicitHeadDim !== undefined) {
    kvs.push(kv.u32(`${A}.attention.key_length`, headDim));
    kvs.push(kv.u32(`${A}.attention.value_length`, headDim));
  }
  if (A === "llama") {
    kvs.push(kv.u32(`${A}.vocab_size`, vocab));
    kvs.push(kv.u32(`${A}.rope.dimension_count`, headDim));
  }
  if (isMoe) {
    kvs.push(kv.u32(`${A}.expert_count`, nExpert));
    kvs.push(kv.u32(`${A}.expert_used_count`, cfg.int("num_experts_per_tok", "moe_topk")));
  }
  if (modelType === "qwen2_moe" || modelType === "qwen3_moe") kvs.push(kv.u32(`${A}.expert_feed_forward_length`, cfg.int("moe_intermediate_size")));
  if (modelType === "qwen2_moe") kvs.push(kv.u32(`${A}.expert_shared_feed_forward_length`, cfg.int("shared_expert_intermediate_size")));
  if (modelType === "hunyuan_v1_moe") {
    kvs.push(kv.u32(`${A}.expert_shared_feed_forward_length`, cfg.int("intermediate_size")));
    kvs.push(kv.u32(`${A}.expert_feed_forward_length`, cfg.int("moe_intermediate_size")));
    kvs.push(kv.u32(`${A}.expert_shared_count`, cfg.int("num_shared_expert")));
  }

  // rope
  const theta = ropeTheta(config);
  const scaling = ropeScaling(config);
  let ropeFreqs: Float32Array | null = null;
  if (modelType === "hunyuan_v1_moe" && scaling?.rope_type === "dynamic" && scaling.alpha !== undefined) {
    // NTK-alpha: Hunyuan scales the base once, θ' = θ·α^(d/(d-2)); llama.cpp takes the scaled base and no scaling.
    const alpha = Number(scaling.alpha);
    kvs.push(kv.f32(`${A}.rope.freq_base`, theta * alpha ** (headDim / (headDim - 2))));
    kvs.push(kv.str(`${A}.rope.scaling.type`, "none"));
    kvs.push(kv.f32(`${A}.rope.scaling.factor`, 1));
  } else {
    kvs.push(kv.f32(`${A}.rope.freq_base`, theta));
    if (scaling) {
      const t = scaling.rope_type;
      if (t === "linear") {
        kvs.push(kv.str(`${A}.rope.scaling.type`, "linear"), kv.f32(`${A}.rope.scaling.factor`, Number(scaling.factor)));
      } else if (t === "yarn") {
        kvs.push(kv.str(`${A}.rope.scaling.type`, "yarn"), kv.f32(`${A}.rope.scaling.factor`, Number(scaling.factor)));
        const orig = scaling.original_max_position_embeddings;
        if (typeof orig === "number") kvs.push(kv.u32(`${A}.rope.scaling.original_context_length`, orig));
      } else if (t === "llama3" && A === "llama") {
        ropeFreqs = llama3RopeFactors(theta, headDim, scaling);
      } else {
        notes.push(`rope_scaling type "${String(t)}" has no llama.cpp equivalent for ${A}; the GGUF uses plain RoPE (exact within the original context)`);
      }
    }
  }

  const voc = tokenizerKVs(dir, config, vocab);
  kvs.push(...voc.kvs);

  // ---- tensors ----
  const used = new Set<string>();
  const tensors: PlannedTensor[] = [];
  const src = (name: string) => {
    used.add(name);
    return st.get(name);
  };
  const neOf = (shape: number[]) => [...shape].reverse();
  const add = (name: string, role: TensorRole, hf: string, permuteHeads?: number) => {
    const s = src(hf);
    const ne = neOf(s.shape);
    if (permuteHeads && s.shape[0] % (permuteHeads * 2) !== 0) throw new Error(`${hf}: ${s.shape[0]} rows do not split into ${permuteHeads} heads of even size`);
    tensors.push({ name, role, ne, type: s.quant ? STORED_TYPE[s.quant] : chooseType(target, role, ne), sources: [s], permuteHeads });
  };
  const addExperts = (name: string, hfOf: (e: number) => string) => {
    const parts = [...Array(nExpert).keys()].map((e) => src(hfOf(e)));
    const shape = parts[0].shape;
    for (const p of parts) {
      if (p.shape.length !== 2 || p.shape[0] !== shape[0] || p.shape[1] !== shape[1]) throw new Error(`${p.name}: shape [${p.shape}] differs from expert 0's [${shape}]`);
    }
    if (parts.some((p) => p.quant !== parts[0].quant)) throw new Error(`${parts[0].name}: the experts of one layer are stored in different types`);
    const ne = [shape[1], shape[0], nExpert];
    tensors.push({ name, role: "weight", ne, type: parts[0].quant ? STORED_TYPE[parts[0].quant] : chooseType(target, "weight", ne), sources: parts });
  };

  // Hugging Face names come from the engine's one table (native/format/names.h), by role; only the GGUF side is spelled here.
  const table = loadAddon().hubTensors(JSON.stringify(config), file, [...st.tensors.keys()]);
  const hubName = new Map<string, NativeHubTensor>();
  const key = (role: HubTensorRole, layer: number, expert: number, bias: boolean) => `${role}/${layer}/${expert}/${bias ? "b" : "w"}`;
  for (const t of table.tensors) hubName.set(key(t.role, t.layer, t.expert, t.bias), t);
  /** The tensor of a role, or undefined when the model has none. */
  const hf = (role: HubTensorRole, layer = -1, expert = -1, bias = false) => hubName.get(key(role, layer, expert, bias))?.name;
  const req = (role: HubTensorRole, layer = -1, expert = -1): string => {
    const n = hf(role, layer, expert);
    if (n === undefined) throw new Error(`${file}: the engine's names table has no ${role}${layer >= 0 ? ` in layer ${layer}` : ""} for model_type ${modelType}`);
    return n;
  };
  const addIfAny = (name: string, role: TensorRole, hubTensor: string | undefined, permuteHeads?: number) => {
    if (hubTensor !== undefined && st.has(hubTensor)) add(name, role, hubTensor, permuteHeads);
  };

  if (ropeFreqs) tensors.push({ name: "rope_freqs.weight", role: "rope_freqs", ne: [ropeFreqs.length], type: chooseType(target, "rope_freqs", [ropeFreqs.length]), sources: [], data: ropeFreqs });
  add("token_embd.weight", "token_embd", req("embedding"));
  const permute = A === "llama";
  for (let i = 0; i < L; i++) {
    const b = `blk.${i}.`;
    add(`${b}attn_norm.weight`, "norm", req("input_norm", i));
    add(`${b}attn_q.weight`, "weight", req("q_proj", i), permute ? nHead : undefined);
    add(`${b}attn_k.weight`, "weight", req("k_proj", i), permute ? nKv : undefined);
    add(`${b}attn_v.weight`, "weight", req("v_proj", i));
    add(`${b}attn_output.weight`, "weight", req("o_proj", i));
    addIfAny(`${b}attn_q.bias`, "bias", hf("q_proj", i, -1, true), permute ? nHead : undefined);
    addIfAny(`${b}attn_k.bias`, "bias", hf("k_proj", i, -1, true), permute ? nKv : undefined);
    addIfAny(`${b}attn_v.bias`, "bias", hf("v_proj", i, -1, true));
    addIfAny(`${b}attn_output.bias`, "bias", hf("o_proj", i, -1, true));
    // per-head (qwen3, hunyuan's query_layernorm/key_layernorm) or whole-projection (olmoe) q/k norms, where the family has them
    const qn = hf("q_norm", i), kn = hf("k_norm", i);
    if (qn !== undefined) add(`${b}attn_q_norm.weight`, "norm", qn);
    if (kn !== undefined) add(`${b}attn_k_norm.weight`, "norm", kn);
    add(`${b}ffn_norm.weight`, "norm", req("post_attention_norm", i));
    if (!isMoe) {
      add(`${b}ffn_gate.weight`, "weight", req("gate_proj", i));
      add(`${b}ffn_up.weight`, "weight", req("up_proj", i));
      add(`${b}ffn_down.weight`, "weight", req("down_proj", i));
      continue;
    }
    const stacked = table.tensors.find((t) => t.layer === i && (t.role === "experts.gate_up_proj" || t.role === "experts.gate_proj"));
    if (stacked) {
      throw new Error(`${dir}: ${stacked.name}: fused expert tensors are not supported by the GGUF export yet (save with per-expert tensors)`);
    }
    add(`${b}ffn_gate_inp.weight`, "router", req("router", i));
    addExperts(`${b}ffn_gate_exps.weight`, (e) => req("expert.gate_proj", i, e));
    addExperts(`${b}ffn_down_exps.weight`, (e) => req("expert.down_proj", i, e));
    addExperts(`${b}ffn_up_exps.weight`, (e) => req("expert.up_proj", i, e));
    // qwen2_moe's shared expert and its sigmoid gate; Hunyuan-A13B's ungated shared MLP
    const shGate = hf("shared_expert_gate", i);
    if (shGate !== undefined) add(`${b}ffn_gate_inp_shexp.weight`, "router", shGate);
    if (hf("shared.gate_proj", i) !== undefined) {
      add(`${b}ffn_gate_shexp.weight`, "weight", req("shared.gate_proj", i));
      add(`${b}ffn_up_shexp.weight`, "weight", req("shared.up_proj", i));
      add(`${b}ffn_down_shexp.weight`, "weight", req("shared.down_proj", i));
    }
  }
  add("output_norm.weight", "norm", req("final_norm"));
  const lmHead = req("lm_head");
  if (st.has(lmHead)) {
    if (tied) used.add(lmHead); // a tied copy: llama.cpp uses token_embd when output is absent
    else add("output.weight", "output", lmHead);
  } else if (!tied) {
    notes.push("no lm_head.weight and tie_word_embeddings is false: llama.cpp will use token_embd as the output");
  }

  const unused = [...st.tensors.keys()].filter((n) => !used.has(n));
  if (unused.length > 0) {
    throw new Error(`${dir}: ${unused.length} tensor(s) have no llama.cpp ${A} name, e.g. "${unused[0]}"; refusing to drop weights`);
  }
  return { arch: A, kvs, tensors, notes };
}

/** What the engine read from the same folder (NativeModelInfo's fields the metadata must agree with). */
export interface EngineView {
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  numExperts: number;
}

/**
 * A GGUF's metadata must not contradict its tensors (llama.cpp trusts block_count, embedding_length, head counts and the
 * token list to size its graph). Checked on the finished plan, independently of how it was built: every key llama.cpp
 * sizes tensors with is compared with the tensors' ne and, when given, with what the engine itself read from the
 * folder. Throws naming the key, its value and the tensor that disagrees.
 */
export function checkPlanConsistency(plan: ExportPlan, file: string, engine?: EngineView): void {
  const A = plan.arch;
  const meta = new Map(plan.kvs.map((k) => [k.key, k]));
  const num = (key: string): number | undefined => {
    const k = meta.get(key);
    return k && typeof k.value === "number" ? k.value : undefined;
  };
  const len = (key: string): number | undefined => {
    const k = meta.get(key);
    return k && typeof k.value === "object" && k.value !== null ? (k.value as ArrayLike<unknown>).length : undefined;
  };
  const byName = new Map(plan.tensors.map((t) => [t.name, t]));
  const fail = (what: string): never => {
    throw new Error(`${file}: refusing to write a GGUF whose metadata contradicts its tensors: ${what}`);
  };
  const need = (key: string): number => num(key) ?? fail(`${key} is missing`);
  const expectNe = (name: string, want: number[], why: string) => {
    const t = byName.get(name);
    if (!t) return;
    if (t.ne.length !== want.length || t.ne.some((d, i) => d !== want[i])) fail(`${name} has ne [${t.ne}] but ${why} say [${want}]`);
  };

  const L = need(`${A}.block_count`), D = need(`${A}.embedding_length`), H = need(`${A}.attention.head_count`);
  const Hkv = need(`${A}.attention.head_count_kv`);
  const hd = num(`${A}.attention.key_length`) ?? D / H;
  if (!Number.isInteger(hd) || hd <= 0) fail(`${A}.embedding_length ${D} is not a multiple of ${A}.attention.head_count ${H} and there is no key_length`);
  if (H % Hkv !== 0) fail(`${A}.attention.head_count ${H} is not a multiple of ${A}.attention.head_count_kv ${Hkv}`);
  const nVocab = len("tokenizer.ggml.tokens") ?? fail("tokenizer.ggml.tokens is missing");
  for (const k of ["tokenizer.ggml.token_type", "tokenizer.ggml.scores"]) {
    const n = len(k);
    if (n !== undefined && n !== nVocab) fail(`${k} has ${n} entries but tokenizer.ggml.tokens has ${nVocab}`);
  }
  for (const k of ["bos", "eos", "unknown", "padding"]) {
    const id = num(`tokenizer.ggml.${k}_token_id`);
    if (id !== undefined && !(id >= 0 && id < nVocab)) fail(`tokenizer.ggml.${k}_token_id ${id} is outside the ${nVocab} tokens`);
  }
  const vs = num(`${A}.vocab_size`);
  if (vs !== undefined && vs !== nVocab) fail(`${A}.vocab_size ${vs} but tokenizer.ggml.tokens has ${nVocab} entries`);
  const rope = num(`${A}.rope.dimension_count`);
  if (rope !== undefined && rope > hd) fail(`${A}.rope.dimension_count ${rope} is larger than the head size ${hd}`);

  expectNe("token_embd.weight", [D, nVocab], `${A}.embedding_length and the ${nVocab} tokens`);
  if (!byName.has("token_embd.weight")) fail("token_embd.weight is missing");
  expectNe("output.weight", [D, nVocab], `${A}.embedding_length and the ${nVocab} tokens`);
  expectNe("output_norm.weight", [D], `${A}.embedding_length`);

  // the blocks present are exactly 0 .. block_count-1
  const blocks = new Set<number>();
  for (const t of plan.tensors) {
    const m = /^blk\.(\d+)\./.exec(t.name);
    if (m) blocks.add(Number(m[1]));
  }
  if (blocks.size !== L || [...blocks].some((b) => b >= L)) fail(`${A}.block_count is ${L} but the tensors have blocks ${[...blocks].sort((a, b) => a - b).join(", ")}`);

  const E = num(`${A}.expert_count`);
  const used = num(`${A}.expert_used_count`);
  if (E !== undefined && used !== undefined && !(used >= 1 && used <= E)) fail(`${A}.expert_used_count ${used} is not in [1, ${A}.expert_count ${E}]`);
  const ff = num(`${A}.feed_forward_length`);
  const eff = num(`${A}.expert_feed_forward_length`) ?? ff;
  const sff = num(`${A}.expert_shared_feed_forward_length`);
  for (let i = 0; i < L; i++) {
    const b = `blk.${i}.`;
    if (!byName.has(`${b}attn_q.weight`)) fail(`${b}attn_q.weight is missing though ${A}.block_count is ${L}`);
    expectNe(`${b}attn_norm.weight`, [D], `${A}.embedding_length`);
    expectNe(`${b}ffn_norm.weight`, [D], `${A}.embedding_length`);
    expectNe(`${b}attn_q.weight`, [D, H * hd], `${A}.embedding_length, head_count and the head size`);
    expectNe(`${b}attn_k.weight`, [D, Hkv * hd], `${A}.embedding_length, head_count_kv and the head size`);
    expectNe(`${b}attn_v.weight`, [D, Hkv * hd], `${A}.embedding_length, head_count_kv and the head size`);
    expectNe(`${b}attn_output.weight`, [H * hd, D], `${A}.head_count, the head size and embedding_length`);
    expectNe(`${b}attn_q.bias`, [H * hd], `${A}.head_count and the head size`);
    expectNe(`${b}attn_k.bias`, [Hkv * hd], `${A}.head_count_kv and the head size`);
    expectNe(`${b}attn_v.bias`, [Hkv * hd], `${A}.head_count_kv and the head size`);
    for (const [n, full] of [[`${b}attn_q_norm.weight`, H * hd], [`${b}attn_k_norm.weight`, Hkv * hd]] as const) {
      const t = byName.get(n);
      if (t && !(t.ne.length === 1 && (t.ne[0] === hd || t.ne[0] === full))) fail(`${n} has ne [${t.ne}] but the head size is ${hd} (or ${full} over the whole projection)`);
    }
    if (ff !== undefined) {
      expectNe(`${b}ffn_gate.weight`, [D, ff], `${A}.embedding_length and feed_forward_length`);
      expectNe(`${b}ffn_up.weight`, [D, ff], `${A}.embedding_length and feed_forward_length`);
      expectNe(`${b}ffn_down.weight`, [ff, D], `${A}.feed_forward_length and embedding_length`);
    }
    if (E !== undefined) {
      if (!byName.has(`${b}ffn_gate_inp.weight`)) fail(`${b}ffn_gate_inp.weight is missing though ${A}.expert_count is ${E}`);
      expectNe(`${b}ffn_gate_inp.weight`, [D, E], `${A}.embedding_length and expert_count`);
      if (eff !== undefined) {
        expectNe(`${b}ffn_gate_exps.weight`, [D, eff, E], `${A}.embedding_length, the expert feed_forward_length and expert_count`);
        expectNe(`${b}ffn_up_exps.weight`, [D, eff, E], `${A}.embedding_length, the expert feed_forward_length and expert_count`);
        expectNe(`${b}ffn_down_exps.weight`, [eff, D, E], `the expert feed_forward_length, ${A}.embedding_length and expert_count`);
      }
    }
    if (sff !== undefined) {
      expectNe(`${b}ffn_gate_shexp.weight`, [D, sff], `${A}.embedding_length and expert_shared_feed_forward_length`);
      expectNe(`${b}ffn_up_shexp.weight`, [D, sff], `${A}.embedding_length and expert_shared_feed_forward_length`);
      expectNe(`${b}ffn_down_shexp.weight`, [sff, D], `${A}.expert_shared_feed_forward_length and embedding_length`);
    }
  }

  if (engine) {
    const pairs: Array<[string, number, number]> = [
      [`${A}.block_count`, L, engine.numLayers],
      [`${A}.embedding_length`, D, engine.hiddenSize],
      [`${A}.attention.head_count`, H, engine.numHeads],
      [`${A}.attention.head_count_kv`, Hkv, engine.numKvHeads],
      ["the head size", hd, engine.headDim],
      ["tokenizer.ggml.tokens (count)", nVocab, engine.vocabSize],
    ];
    if (E !== undefined) pairs.push([`${A}.expert_count`, E, engine.numExperts]);
    for (const [k, mine, theirs] of pairs) if (mine !== theirs) fail(`${k} is ${mine} but the engine reads ${theirs} from the same folder`);
  }
}
