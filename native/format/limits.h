// The limits every model file is checked against, in one place. Model folders come from the hub: they are hostile
// input, so every count, size and offset read from them is bounded before it is used to index, multiply or
// allocate. The limits are generous (several times the largest released models) but finite, so arithmetic on
// them cannot overflow 64 bits and a typo or an attack gives a clear error naming the field, its value and the
// allowed range instead of a std::bad_alloc, a crash or a hang.
//
// | what                                   | allowed                      | largest released (for scale)            |
// |----------------------------------------|------------------------------|-----------------------------------------|
// | safetensors header                     | 1 B .. 100 MiB               | ~10 MiB (Hunyuan-Large, 100k tensors)   |
// | safetensors tensor rank                | 0 .. 8                       | 3 (fused experts)                       |
// | hidden_size                            | 1 .. 1,048,576 (2^20)        | 16,384                                  |
// | num_hidden_layers                      | 1 .. 4,096                   | 126                                     |
// | num_attention_heads, num_key_value_h.  | 1 .. 4,096                   | 128                                     |
// | head_dim                               | 2 .. 4,096, even             | 256                                     |
// | heads × head_dim (q / kv width)        | <= 1,048,576                 | 16,384                                  |
// | vocab_size                             | 1 .. 16,777,216 (2^24)       | 262,144                                 |
// | intermediate sizes (dense, expert,     | 1 .. 4,194,304 (2^22)        | 53,248                                  |
// |   shared)                              |                              |                                         |
// | num_experts                            | 1 .. 16,384                  | 384                                     |
// | top_k                                  | 1 .. num_experts             | 16                                      |
// | num_shared_expert                      | 0 .. 64                      | 2                                       |
// | max_position_embeddings                | 1 .. 16,777,216 (2^24)       | 10,485,760                              |
// | rope theta / factors / alpha           | finite; theta, factor > 0    |                                         |
// | rms_norm_eps                           | finite, (0, 1)               | 1e-6                                    |
// | threads (loadModel, quantize, pools)   | 1 .. 1,024 (0 = one per core)|                                         |
// | token ids from JS                      | integers in [0, vocab)       |                                         |
// | session memory (KV cache + scratch)    | <= available memory          | ($MOE_SESSION_MEMORY_LIMIT overrides)   |
#pragma once
#include <cstdint>
#include <string>

namespace moe {

constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull * 1024 * 1024;
constexpr uint64_t kSafetensorsMaxRank = 8;

constexpr int64_t kMaxHidden = int64_t(1) << 20;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxHeadDim = 4096;
constexpr int64_t kMaxAttentionWidth = int64_t(1) << 20;   // heads × head_dim
constexpr int64_t kMaxVocab = int64_t(1) << 24;
constexpr int64_t kMaxIntermediate = int64_t(1) << 22;
constexpr int64_t kMaxExperts = 16384;
constexpr int64_t kMaxSharedExperts = 64;
constexpr int64_t kMaxPositions = int64_t(1) << 24;

constexpr int kMaxThreads = 1024;

}  // namespace moe

namespace moe {

struct ModelSpec;

// How a session stores its KV cache (model/model.h KvCache): f32; f16 (IEEE half, half the bytes: llama.cpp's
// default); or int8 with one f32 scale per token and KV head.
enum class KvType : uint8_t { F32, F16, Int8 };
inline const char* kv_type_name(KvType t) { return t == KvType::F16 ? "f16" : t == KvType::Int8 ? "int8" : "f32"; }

// Bytes a generation session of `spec` allocates for a context of ctx tokens: the KV cache (of type kv) for every KV slot, plus the scratch of one forward call of max_t tokens and the
// attention scores of every thread (threads × ctx). Checked arithmetic: saturates at UINT64_MAX, never wraps.
uint64_t session_bytes(const ModelSpec& spec, int64_t ctx, KvType kv, int threads, int64_t max_t = 256);

// Total physical memory of this machine (0 when unknown).
uint64_t physical_memory_bytes();

// What a session may allocate: $MOE_SESSION_MEMORY_LIMIT (bytes) when set, else the memory available now (Linux
// MemAvailable), else the physical memory.
uint64_t session_memory_limit_bytes();

// Throws when a session of ctx tokens would need more than limit_bytes (default: session_memory_limit_bytes()), naming the context,
// the bytes and the limit: checked before allocating, so a config with max_position_embeddings 16M or a contextLength
// of 10^9 fails with a clear message instead of std::bad_alloc or the OOM killer.
void check_session_memory(const ModelSpec& spec, int64_t ctx, KvType kv, int threads, int64_t max_t = 256,
                          uint64_t limit_bytes = 0);

// "threads must be an integer in [0, 1024] (0 = one per core), got 99999999" unless 0 <= threads <= kMaxThreads.
void check_threads(double threads, const std::string& what = "threads");

}  // namespace moe
