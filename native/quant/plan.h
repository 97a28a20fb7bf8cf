// The one storage-type rule: for a target format, which type each tensor of a model is stored as. Both writers ask
// it: the model-folder quantizer (quant/writer.cpp, `moe-studio quantize`) and the GGUF exporter
// (electron/gguf/quant.ts chooseType, through the addon's storageType), so an int4 folder and the GGUF file exported
// from the same float checkpoint hold the same blocks for every tensor, and exporting that folder (its blocks are
// copied, electron/gguf/export.ts) gives the same file as exporting the float checkpoint directly.
//
// The rule, by role (the caller decides the role from the tensor's name; this file knows no names):
//   norm, bias, router, any tensor of rank < 2   -> not quantized (routing decisions and gains are precision-
//                                                  sensitive, and they are a negligible share of the bytes)
//   embedding (embed_tokens / token_embd),
//   output (lm_head / output)                    -> `embeddings` (default Q8_0 for every block format: 8 bits or
//                                                  better, the one exception to the requested width; llama.cpp
//                                                  would pick Q6_K, a type the engine does not run)
//   weight (attention, dense MLP, experts)       -> `format`
// then, when the row length K does not fit the chosen block, the fallback chain:
//   Q4_K (256) -> Q4_0 (32) -> float;   Q8_0 / Q4_0 (32) -> float.
// Why Q4_0 and not llama-quantize's Q5_0: the engine runs Q8_0/Q4_0/Q4_K only. An int4 folder must hold a type the
// engine runs, and a GGUF export of that folder copies its blocks; with Q5_0 on the GGUF side the two routes to a
// GGUF (float -> GGUF, float -> folder -> GGUF) would give different files, and a folder row could never match its
// GGUF row. Q4_0 is GGUF's own type (llama.cpp reads it everywhere), the same 4.5 bits per weight as Q4_K, so the
// file size stays what `q4_k` promises; the price is a slightly higher error on those rows than Q5_0's 5.5 bits.
// (Such rows are rare: e.g. qwen2_moe's expert down_proj with K = 1408 = 5.5 * 256.)
//
// "Float" is where the two containers deliberately differ — in encoding only, never in value:
//   Container::Folder keeps the stored dtype (bf16/f16/f32 — the engine runs each of them as it is, no rounding);
//   Container::Gguf writes F32 for the not-quantized roles (llama.cpp keeps norms, biases and ffn_gate_inp in F32;
//     widening bf16/f16 to f32 is exact) and F16 for a matrix that fell back (convert_hf_to_gguf's and
//     llama-quantize's last fallback; GGUF target `f16` is every matrix F16).
// One more difference, by option: a folder may keep embeddings and lm_head in their stored dtype (`--embeddings keep`);
// a GGUF has no such option, so exporting that folder quantizes them to the GGUF default (Q8_0) from the kept floats.
#pragma once
#include <cstdint>
#include <string>
#include "format/dtype.h"

namespace moe {

enum class TensorRole : uint8_t {
  Weight,     // attention projections, dense MLP, routed and shared experts: the bulk of the bytes
  Embedding,  // token embeddings (embed_tokens, token_embd)
  Output,     // the output projection (lm_head, output)
  Router,     // expert routers and shared-expert gates (their outputs pick experts)
  Norm,       // norm gains and other 1-D vectors (rope factors)
  Bias,
};

enum class Container : uint8_t { Folder, Gguf };

struct StorageTarget {
  Container container = Container::Folder;
  DType format = DType::Q4_K;        // Q8_0 | Q4_0 | Q4_K; Gguf also F16 (every matrix F16)
  // Embeddings and lm_head: a block type, or keep_embeddings (Folder only: the stored dtype).
  DType embeddings = DType::Q8_0;
  bool keep_embeddings = false;
};

// "weight" | "embedding" | "output" | "router" | "norm" | "bias" -> role; throws listing the names otherwise.
TensorRole tensor_role_from_name(const std::string& name);
const char* tensor_role_name(TensorRole r);

// The type the role asks for before the row length is looked at: a block type, or the container's float for it.
// `stored` is the tensor's dtype in the source checkpoint (bf16, f16 or f32). Throws std::invalid_argument for a
// target the container cannot hold (Folder with F16, keep_embeddings in a GGUF, a non-block embeddings type).
DType wanted_type(const StorageTarget& target, TensorRole role, int rank, DType stored);

// The fallback chain for rows of K elements: Q4_K -> Q4_0 when K % 256 != 0, any block -> `float_type` when
// K % 32 != 0; a non-block `want` is returned as it is.
DType fit_rows(DType want, int64_t K, DType float_type);

// What the tensor is stored as: fit_rows(wanted_type(...), K, the container's float for a fallen-back matrix).
DType storage_type(const StorageTarget& target, TensorRole role, int rank, int64_t K, DType stored);

}  // namespace moe
