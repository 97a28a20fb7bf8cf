// Element types of stored tensors and scalar conversions. Weights stay in their stored dtype (a bf16 model is
// never widened to f32 in RAM); kernels convert on the fly and accumulate in f32.
#pragma once
#include <cstdint>
#include <cstring>
#include <cstddef>

namespace moe {

// Q8_0 / Q4_0 / Q4_K are GGUF block types (native/quant/quant.h): a tensor of them has no per-element size, so
// use dtype_row_bytes for their rows. On disk they are U8 tensors marked in the safetensors __metadata__.
// NF4 is bitsandbytes' 4-bit NormalFloat (native/quant/nf4.h), the frozen base of a Q-LoRA run: not a GGUF block type
// and never on disk (quantized at load); its blocks of 64 run over the flattened tensor and may straddle rows, so it
// has no row bytes (dtype_row_bytes returns 0) and a Tensor of it points to the whole NF4Tensor (tensor/tensor.h).
enum class DType : uint8_t { F32 = 0, F16 = 1, BF16 = 2, I32 = 3, I64 = 4, U8 = 5, I8 = 6, BOOL = 7, Q8_0 = 8, Q4_0 = 9, Q4_K = 10,
                             NF4 = 11 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::I64: return 8;
    default: return 1;
  }
}
// Bytes of one row of K elements (block types: K / block * block bytes; K must be a multiple of the block).
inline size_t dtype_row_bytes(DType t, int64_t K) {
  switch (t) {
    case DType::Q8_0: return size_t(K / 32) * 34;
    case DType::Q4_0: return size_t(K / 32) * 18;
    case DType::Q4_K: return size_t(K / 256) * 144;
    case DType::NF4: return 0;  // no rows of its own (see above)
    default: return size_t(K) * dtype_size(t);
  }
}
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32"; case DType::F16: return "f16"; case DType::BF16: return "bf16";
    case DType::I32: return "i32"; case DType::I64: return "i64"; case DType::U8: return "u8";
    case DType::I8: return "i8"; case DType::Q8_0: return "q8_0"; case DType::Q4_0: return "q4_0";
    case DType::Q4_K: return "q4_k"; case DType::NF4: return "nf4"; default: return "bool";
  }
}

// bf16 is the top half of an f32: widening is a shift; narrowing rounds to nearest even (as torch does).
inline float bf16_to_f32(uint16_t h) { uint32_t u = uint32_t(h) << 16; float f; std::memcpy(&f, &u, 4); return f; }
inline uint16_t f32_to_bf16(float f) {
  uint32_t u; std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// IEEE half <-> f32, exact for all finite values, subnormals and inf/nan.
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0) {
    if (man == 0) u = sign;
    else {  // subnormal: normalise
      int e = -1; do { man <<= 1; ++e; } while (!(man & 0x400u));
      u = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 31) u = sign | 0x7f800000u | man << 13;
  else u = sign | (exp + 127 - 15) << 23 | man << 13;
  float f; std::memcpy(&f, &u, 4); return f;
}
inline uint16_t f32_to_f16(float f) {
  uint32_t u; std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u; int32_t exp = int32_t((u >> 23) & 0xffu) - 127 + 15; uint32_t man = u & 0x7fffffu;
  if (((u >> 23) & 0xffu) == 0xffu) return uint16_t(sign | 0x7c00u | (man ? 0x200u : 0));
  if (exp >= 31) return uint16_t(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return uint16_t(sign);
    man |= 0x800000u; uint32_t shift = uint32_t(14 - exp);
    uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return uint16_t(sign | half);
  }
  uint32_t half = sign | uint32_t(exp) << 10 | man >> 13, rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) ++half;
  return uint16_t(half);
}

}  // namespace moe
