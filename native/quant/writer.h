// Quantizing a model folder's tensors (the native half of `moe-studio quantize`; electron/engine/quantize.ts does
// the folder: temp name, config.json's quantization_config, tokenizer/template copies, the final rename).
//
// For every shard of the source (model.safetensors, or the shards of model.safetensors.index.json) one shard of
// the same name is written into out_dir, tensor by tensor from the memory map, in header order:
//   - linear weights (2-D [out, in], or stacked experts [E, out, in]) -> `format` blocks, stored as U8
//     [..., out, in/block*block_bytes] with "quant.<name>": "<format>" in the shard's __metadata__
//     (see format/safetensors.h); names are unchanged, so the engine binds them as before;
//   - embed_tokens / lm_head -> `embeddings` ("keep" = stored dtype, or a block format);
//   - router gates (mlp.gate, block_sparse_moe.gate, gate.wg, router, shared_expert_gate), norms, biases and
//     every 1-D tensor -> copied unchanged (routing decisions are precision-sensitive);
//   - a weight whose row length is not a multiple of the block: Q4_K -> Q4_0 if the row is a multiple of 32,
//     otherwise the stored dtype; Q8_0 / Q4_0 -> the stored dtype. Each such case is reported (fallbacks).
//   These types are quant/plan.h's storage_type (Container::Folder): the GGUF exporter asks the same rule, so a
//   folder's blocks are the blocks its GGUF export holds. This file only names the roles.
// Memory: one chunk of rows (<= ~8 MiB of f32) plus its blocks at a time; the source pages of a finished tensor
// are dropped from the mapping (madvise DONTNEED), so peak RSS stays ~constant in the model size.
// The source is validated first as Model::load validates it (config, headers, every weight bound against the config):
// nothing is written for a folder the engine could not run. Errors (a failed or short write, ENOSPC, a cancel) throw;
// the caller deletes out_dir. For tests, the environment
// variable MOE_QUANT_FAIL_AFTER_BYTES=N makes the writer fail as a full disk would once N bytes are written.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>
#include "format/dtype.h"

namespace moe {

struct QuantizeOptions {
  DType format = DType::Q4_K;
  std::string embeddings = "q8_0";   // "keep" | "q8_0" | "q4_0" | "q4_k"
  int threads = 0;                   // 0: hardware concurrency
};

struct QuantizeReport {
  struct Entry { std::string name, type; };          // type: q8_0 | q4_0 | q4_k | f32 | f16 | bf16
  std::vector<Entry> tensors;                         // every tensor and what it became
  std::vector<Entry> fallbacks;                       // weights that could not take `format` (row length)
  std::vector<std::string> not_quantized;             // float by rule: routers, norms, biases, 1-D, kept embeddings
  std::vector<std::string> files;                     // shard (and index) file names written
  uint64_t bytes_in = 0, bytes_out = 0;
  int64_t params = 0;
};

struct QuantizeProgress {
  void (*fn)(void* ctx, int64_t done, int64_t total, const std::string& tensor) = nullptr;  // done/total in source bytes
  void* ctx = nullptr;
};

QuantizeReport quantize_model(const std::string& src_dir, const std::string& out_dir, const QuantizeOptions& opt,
                              QuantizeProgress progress, const std::atomic<bool>& cancel);

}  // namespace moe
