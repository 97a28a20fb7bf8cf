#include "quant/plan.h"

#include <stdexcept>
#include "quant/quant.h"

namespace moe {

namespace {

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// A matrix whose rows fit no block, or a GGUF `f16` target.
DType matrix_float(const StorageTarget& t, DType stored) { return t.container == Container::Folder ? stored : DType::F16; }

}  // namespace

TensorRole tensor_role_from_name(const std::string& name) {
  if (name == "weight") return TensorRole::Weight;
  if (name == "embedding") return TensorRole::Embedding;
  if (name == "output") return TensorRole::Output;
  if (name == "router") return TensorRole::Router;
  if (name == "norm") return TensorRole::Norm;
  if (name == "bias") return TensorRole::Bias;
  throw std::invalid_argument("unknown tensor role '" + name.substr(0, 32) + "' (expected weight, embedding, output, router, norm or bias)");
}

const char* tensor_role_name(TensorRole r) {
  switch (r) {
    case TensorRole::Weight: return "weight";
    case TensorRole::Embedding: return "embedding";
    case TensorRole::Output: return "output";
    case TensorRole::Router: return "router";
    case TensorRole::Norm: return "norm";
    default: return "bias";
  }
}

DType wanted_type(const StorageTarget& t, TensorRole role, int rank, DType stored) {
  const bool gguf = t.container == Container::Gguf;
  if (!(is_quant(t.format) || (gguf && t.format == DType::F16)))
    throw std::invalid_argument(std::string("storage format '") + dtype_name(t.format) + "' is not one of q8_0, q4_0, q4_k" +
                                (gguf ? ", f16" : "") + (gguf ? " (GGUF)" : " (a model folder the engine runs)"));
  if (t.keep_embeddings && gguf) throw std::invalid_argument("embeddings 'keep' is for model folders only: a GGUF file stores them as q8_0 or better");
  if (!t.keep_embeddings && !is_quant(t.embeddings))
    throw std::invalid_argument(std::string("embeddings type '") + dtype_name(t.embeddings) + "' is not one of q8_0, q4_0, q4_k");
  // Integer tensors (position ids, masks) are data, not weights: they are never converted.
  if (!is_float(stored)) return stored;
  if (rank < 2 || role == TensorRole::Norm || role == TensorRole::Bias || role == TensorRole::Router)
    return gguf ? DType::F32 : stored;
  if (t.format == DType::F16) return DType::F16;  // GGUF f16: every matrix, embeddings included
  if (role == TensorRole::Embedding || role == TensorRole::Output) return t.keep_embeddings ? stored : t.embeddings;
  return t.format;
}

DType fit_rows(DType want, int64_t K, DType float_type) {
  if (!is_quant(want)) return want;
  if (K <= 0) return float_type;  // an empty row holds no block
  // Q4_K's super-block is 256 weights; Q4_0 is the same 4.5 bits per weight over blocks of 32 (see plan.h for why
  // Q4_0 and not Q5_0). Every block type needs K % 32 == 0; below that only a float type holds the row.
  if (want == DType::Q4_K && K % QK_K != 0) want = DType::Q4_0;
  if (K % qblock_size(want) != 0) return float_type;
  return want;
}

DType storage_type(const StorageTarget& t, TensorRole role, int rank, int64_t K, DType stored) {
  return fit_rows(wanted_type(t, role, rank, stored), K, matrix_float(t, stored));
}

}  // namespace moe
