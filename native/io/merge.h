// Merged weights (the native half of `moe-studio export`; electron/engine/export-merged.ts does the folder: temp name,
// config.json's dtype, tokenizer/template/generation copies, the rename, --quantize / --gguf on the result).
//
// Every tensor of the source checkpoint, read from its memory map in its ORIGINAL stored dtype, is written to
// out_dir in `dtype` (f32, f16 or bf16; integer tensors unchanged). Each weight a LoRA pair of the peft adapter at
// adapter_dir adapts gets ΔW = s · B · A [out, in] added:
//     W'[o, i] = round_dtype( f32(W[o, i]) + s · Σ_k B[o, k] · A[k, i] )
// with the sum over k and the add done in f64 and ONE rounding to the output dtype (f64 -> f32 rounds to odd, then
// f32 -> f16/bf16 to nearest even: together a correctly rounded f64 -> f16/bf16).
// Layout: what transformers' save_pretrained writes and vLLM / llama.cpp's converter read — routed experts per
// expert, model.layers.N.mlp.experts.E.{gate,up,down}_proj.weight (Mixtral: block_sparse_moe.experts.E.{w1,w3,w2}
// and block_sparse_moe.gate), whatever the source's layout: a fused [E, 2F, H] gate_up_proj / [E, H, F] down_proj
// (or stacked [E, F, H] gate_proj / up_proj) is split per expert. Every other name is kept.
// Shards as save_pretrained makes them: tensors in order, a new shard when the next tensor would pass max_shard_bytes
// (a bigger tensor gets a shard of its own); one shard is model.safetensors, more are model-0000i-of-0000n.safetensors
// + model.safetensors.index.json ({"metadata": {"total_size": tensor bytes}, "weight_map"}). Each shard's
// __metadata__ is {"format": "pt"}.
// Memory: one chunk of rows (~8 MiB of f32) at a time plus the adapter; source pages of finished tensors are dropped.
// The source is validated first as Model::load validates it, the adapter as `--adapter` loads it (shapes against the
// model); a quantized source is refused (merge into the original float checkpoint). Every present adapter pair must
// land on a weight, or nothing is written. Errors (a failed or short write, ENOSPC, a cancel) throw; the caller
// deletes out_dir. MOE_EXPORT_FAIL_AFTER_BYTES=N makes the writer fail as a full disk would after N bytes.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>
#include "format/dtype.h"

namespace moe {

struct MergeOptions {
  DType dtype = DType::BF16;                  // F32 | F16 | BF16
  uint64_t max_shard_bytes = 5000000000ull;   // save_pretrained's "5GB"
  int threads = 0;                            // rows of a chunk in parallel; 0: hardware concurrency
};

struct MergeReport {
  struct Entry { std::string name; std::string source; std::vector<int64_t> shape; bool merged = false; };
  std::vector<Entry> tensors;           // every tensor written, in file order (source: the source tensor's name)
  std::vector<std::string> files;       // shard (and index) file names written
  int64_t merged_pairs = 0;             // adapter (A, B) pairs folded in (a fused gate_up pair counts once per half)
  uint64_t bytes_in = 0, bytes_out = 0; // source tensor bytes, tensor bytes written
  int64_t params = 0;
};

struct MergeProgress {
  void (*fn)(void* ctx, int64_t done, int64_t total, const std::string& tensor) = nullptr;  // done/total: tensors
  void* ctx = nullptr;
};

// Rounds an f64 to f32 by rounding to odd (the first step of a double rounding that is exact; see above).
float f64_to_f32_round_odd(double d);

MergeReport merge_adapter(const std::string& src_dir, const std::string& adapter_dir, const std::string& out_dir,
                          const MergeOptions& opt, MergeProgress progress, const std::atomic<bool>& cancel);

}  // namespace moe
