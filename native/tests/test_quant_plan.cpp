// quant/plan.h: the one storage rule both writers ask. Every role, both containers, and the fallback chain on row
// lengths that fit 256, only 32, or nothing.
#include "tests/test.h"
#include "quant/plan.h"
#include "quant/quant.h"

using namespace moe;

static StorageTarget target(Container c, DType f) { StorageTarget t; t.container = c; t.format = f; return t; }

TEST(quant_plan_fallback_chain) {
  // Q4_K -> Q4_0 -> float; Q8_0 / Q4_0 -> float
  CHECK(fit_rows(DType::Q4_K, 512, DType::BF16) == DType::Q4_K);
  CHECK(fit_rows(DType::Q4_K, 1408, DType::BF16) == DType::Q4_0);  // qwen2_moe's expert down_proj: 5.5 * 256
  CHECK(fit_rows(DType::Q4_K, 128, DType::BF16) == DType::Q4_0);
  CHECK(fit_rows(DType::Q4_K, 100, DType::BF16) == DType::BF16);
  CHECK(fit_rows(DType::Q4_0, 96, DType::F16) == DType::Q4_0);
  CHECK(fit_rows(DType::Q4_0, 33, DType::F16) == DType::F16);
  CHECK(fit_rows(DType::Q8_0, 48, DType::F32) == DType::F32);
  CHECK(fit_rows(DType::Q8_0, 0, DType::F32) == DType::F32);  // an empty row holds no block
  CHECK(fit_rows(DType::F16, 7, DType::F32) == DType::F16);    // not a block type: unchanged
}

TEST(quant_plan_roles_in_a_folder_keep_the_stored_float) {
  const StorageTarget t = target(Container::Folder, DType::Q4_K);
  CHECK(storage_type(t, TensorRole::Weight, 2, 256, DType::BF16) == DType::Q4_K);
  CHECK(storage_type(t, TensorRole::Weight, 3, 128, DType::BF16) == DType::Q4_0);  // stacked experts, rows of 128
  CHECK(storage_type(t, TensorRole::Weight, 2, 40, DType::F16) == DType::F16);
  CHECK(storage_type(t, TensorRole::Embedding, 2, 256, DType::BF16) == DType::Q8_0);
  CHECK(storage_type(t, TensorRole::Output, 2, 256, DType::F32) == DType::Q8_0);
  CHECK(storage_type(t, TensorRole::Output, 2, 40, DType::F32) == DType::F32);
  CHECK(storage_type(t, TensorRole::Router, 2, 256, DType::BF16) == DType::BF16);
  CHECK(storage_type(t, TensorRole::Norm, 1, 256, DType::F16) == DType::F16);
  CHECK(storage_type(t, TensorRole::Bias, 1, 256, DType::BF16) == DType::BF16);
  CHECK(storage_type(t, TensorRole::Weight, 1, 256, DType::BF16) == DType::BF16);  // rank < 2 is never quantized
  CHECK(storage_type(t, TensorRole::Weight, 2, 256, DType::I64) == DType::I64);    // integer data is never converted
  StorageTarget keep = t;
  keep.keep_embeddings = true;
  CHECK(storage_type(keep, TensorRole::Embedding, 2, 256, DType::BF16) == DType::BF16);
  StorageTarget e4 = t;
  e4.embeddings = DType::Q4_K;
  CHECK(storage_type(e4, TensorRole::Embedding, 2, 96, DType::BF16) == DType::Q4_0);  // the same chain for embeddings
}

TEST(quant_plan_gguf_floats_and_agreement_with_the_folder) {
  for (DType f : {DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    const StorageTarget g = target(Container::Gguf, f), d = target(Container::Folder, f);
    // every block a folder holds is the block the GGUF holds, for every role and row length
    for (TensorRole r : {TensorRole::Weight, TensorRole::Embedding, TensorRole::Output, TensorRole::Router, TensorRole::Norm, TensorRole::Bias})
      for (int64_t K : {0, 32, 64, 96, 100, 128, 256, 1408, 4096})
        for (int rank : {1, 2, 3}) {
          const DType a = storage_type(d, r, rank, K, DType::BF16), b = storage_type(g, r, rank, K, DType::BF16);
          if (is_quant(a) || is_quant(b)) CHECK(a == b);
          else CHECK(a == DType::BF16 && (b == DType::F32 || b == DType::F16));
        }
    CHECK(storage_type(g, TensorRole::Router, 2, 256, DType::BF16) == DType::F32);
    CHECK(storage_type(g, TensorRole::Norm, 1, 256, DType::F16) == DType::F32);
    CHECK(storage_type(g, TensorRole::Weight, 2, 40, DType::BF16) == DType::F16);
  }
  const StorageTarget f16 = target(Container::Gguf, DType::F16);
  CHECK(storage_type(f16, TensorRole::Weight, 2, 256, DType::BF16) == DType::F16);
  CHECK(storage_type(f16, TensorRole::Embedding, 2, 256, DType::BF16) == DType::F16);
  CHECK(storage_type(f16, TensorRole::Norm, 1, 256, DType::BF16) == DType::F32);
}

TEST(quant_plan_refuses_targets_a_container_cannot_hold) {
  CHECK_THROWS(storage_type(target(Container::Folder, DType::F16), TensorRole::Weight, 2, 256, DType::BF16), "not one of q8_0, q4_0, q4_k (a model folder");
  CHECK_THROWS(storage_type(target(Container::Gguf, DType::BF16), TensorRole::Weight, 2, 256, DType::BF16), "q4_k, f16 (GGUF)");
  StorageTarget keep = target(Container::Gguf, DType::Q4_K);
  keep.keep_embeddings = true;
  CHECK_THROWS(storage_type(keep, TensorRole::Embedding, 2, 256, DType::BF16), "model folders only");
  StorageTarget bad = target(Container::Folder, DType::Q4_K);
  bad.embeddings = DType::F16;
  CHECK_THROWS(storage_type(bad, TensorRole::Embedding, 2, 256, DType::BF16), "embeddings type 'f16'");
  CHECK_THROWS(tensor_role_from_name("gate"), "unknown tensor role 'gate'");
  CHECK(tensor_role_from_name(tensor_role_name(TensorRole::Router)) == TensorRole::Router);
}
