// Block formats (native/quant): layouts checked against hand-packed blocks, round-trip error bounds, the scale
// search never worse than absmax, argument checks. (Bit-exact agreement with gguf-py's dequantisation is checked
// from Node in test/native/quant-blocks.test.ts against a committed golden.)
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>
#include "cpu/thread_pool.h"
#include "format/safetensors.h"
#include "quant/quant.h"
#include "tests/test.h"
#include "tests/test_format_util.h"

using namespace moe;

namespace {
double mse(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s / double(a.size());
}
double mean_sq(const std::vector<float>& a) { double s = 0; for (float v : a) s += double(v) * v; return s / double(a.size()); }

std::vector<float> roundtrip(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> b(qbytes(t, int64_t(x.size())));
  quantize_tensor(t, x.data(), b.data(), int64_t(x.size()));
  std::vector<float> y(x.size());
  dequantize_tensor(t, b.data(), y.data(), int64_t(x.size()));
  return y;
}

// Plain absmax quantizers (llama.cpp's *_ref): the baseline the search must not lose to.
std::vector<float> absmax_q8_0(const std::vector<float>& x) {
  std::vector<float> y(x.size());
  for (size_t b = 0; b < x.size(); b += 32) {
    float amax = 0; for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b + i]));
    float d = f16_to_f32(f32_to_f16(amax / 127)), id = d ? 1 / d : 0;
    for (int i = 0; i < 32; ++i) y[b + i] = d * float(std::lrintf(x[b + i] * id));
  }
  return y;
}
std::vector<float> absmax_q4_0(const std::vector<float>& x) {
  std::vector<float> y(x.size());
  for (size_t b = 0; b < x.size(); b += 32) {
    float amax = 0, m = 0; for (int i = 0; i < 32; ++i) if (std::fabs(x[b + i]) > amax) { amax = std::fabs(x[b + i]); m = x[b + i]; }
    float d = f16_to_f32(f32_to_f16(m / -8)), id = d ? 1 / d : 0;
    for (int i = 0; i < 32; ++i) y[b + i] = d * float(std::min(15, int(x[b + i] * id + 8.5f)) - 8);
  }
  return y;
}
}  // namespace

TEST(quant_sizes_and_names) {
  CHECK(qblock_size(DType::Q8_0) == 32 && qblock_bytes(DType::Q8_0) == 34);
  CHECK(qblock_size(DType::Q4_0) == 32 && qblock_bytes(DType::Q4_0) == 18);
  CHECK(qblock_size(DType::Q4_K) == 256 && qblock_bytes(DType::Q4_K) == 144);
  CHECK(qbytes(DType::Q4_K, 512) == 288);
  CHECK(dtype_row_bytes(DType::Q4_0, 64) == 36);
  CHECK(qtype_from_name("q4_k") == DType::Q4_K);
  CHECK_THROWS(qtype_from_name("q5_k"), "unsupported quantization format 'q5_k'");
  CHECK_THROWS(qbytes(DType::Q4_K, 100), "not a multiple of the block of 256");
  CHECK_THROWS(qblock_size(DType::BF16), "not a block-quantized type: bf16");
  std::vector<float> x(40);
  std::vector<uint8_t> b(100);
  CHECK_THROWS(quantize_tensor(DType::Q8_0, x.data(), b.data(), 40), "40 values is not a multiple of the block of 32");
}

// Hand-packed blocks: the bytes we write by hand from the layout in quant.h decode to the values we expect.
TEST(quant_layout_q8_0_hand_packed) {
  uint8_t blk[34];
  const uint16_t d = f32_to_f16(0.5f);  // 0x3800
  blk[0] = uint8_t(d & 0xff); blk[1] = uint8_t(d >> 8);
  int q[32];
  for (int i = 0; i < 32; ++i) q[i] = i == 0 ? -127 : i * 8 - 124;  // spans the full int8 range
  for (int i = 0; i < 32; ++i) blk[2 + i] = uint8_t(int8_t(q[i]));
  float y[32];
  dequantize_row(DType::Q8_0, blk, y, 32);
  for (int i = 0; i < 32; ++i) CHECK(y[i] == 0.5f * float(q[i]));
  // a block on the full int8 grid quantizes back to the same bytes (absmax is exact there; the search keeps it)
  uint8_t back[34];
  quantize_row(DType::Q8_0, y, back, 32);
  CHECK(std::memcmp(back, blk, 34) == 0);
}

TEST(quant_layout_q4_0_hand_packed) {
  uint8_t blk[18];
  const uint16_t d = f32_to_f16(0.25f);
  blk[0] = uint8_t(d & 0xff); blk[1] = uint8_t(d >> 8);
  // weight i < 16 in the low nibble of byte i, weight i + 16 in its high nibble
  int q[32];
  for (int i = 0; i < 32; ++i) q[i] = (i * 7 + 3) % 16;
  for (int i = 0; i < 16; ++i) blk[2 + i] = uint8_t(q[i] | (q[i + 16] << 4));
  float y[32];
  dequantize_row(DType::Q4_0, blk, y, 32);
  for (int i = 0; i < 32; ++i) CHECK(y[i] == 0.25f * float(q[i] - 8));
  uint8_t back[18];
  quantize_row(DType::Q4_0, y, back, 32);
  CHECK(std::memcmp(back, blk, 18) == 0);  // exact grid: the least-squares scale is the grid's, bytes identical
}

TEST(quant_layout_q4_k_hand_packed) {
  BlockQ4_K b{};
  b.d = f32_to_f16(0.125f); b.dmin = f32_to_f16(0.0625f);
  uint8_t sc[8] = {1, 63, 17, 32, 5, 48, 33, 62}, mn[8] = {0, 2, 63, 40, 19, 7, 60, 31};
  // GGUF's packing: j < 4 in the low 6 bits of bytes j (scale) and j+4 (min); j >= 4 split into a low nibble
  // in byte j+4 and the top 2 bits in the spare bits 6..7 of bytes j-4 (scale) and j (min).
  for (int j = 0; j < 4; ++j) { b.scales[j] = sc[j]; b.scales[j + 4] = mn[j]; }
  for (int j = 4; j < 8; ++j) {
    b.scales[j + 4] = uint8_t((sc[j] & 15) | ((mn[j] & 15) << 4));
    b.scales[j - 4] |= uint8_t((sc[j] >> 4) << 6);
    b.scales[j] |= uint8_t((mn[j] >> 4) << 6);
  }
  for (int j = 0; j < 8; ++j) { uint8_t s, m; q4k_scale_min(j, b.scales, s, m); CHECK(s == sc[j]); CHECK(m == mn[j]); }
  int q[256];
  for (int i = 0; i < 256; ++i) q[i] = (i * 5 + i / 32) % 16;
  for (int g = 0; g < 4; ++g) for (int l = 0; l < 32; ++l) b.qs[32 * g + l] = uint8_t(q[64 * g + l] | (q[64 * g + 32 + l] << 4));
  float y[256];
  dequantize_row(DType::Q4_K, &b, y, 256);
  for (int i = 0; i < 256; ++i) {
    const int j = i / 32;
    CHECK(y[i] == 0.125f * float(sc[j]) * float(q[i]) - 0.0625f * float(mn[j]));
  }
  // and the byte offsets of the struct are GGUF's: d @0, dmin @2, scales @4, qs @16
  CHECK(offsetof(BlockQ4_K, dmin) == 2 && offsetof(BlockQ4_K, scales) == 4 && offsetof(BlockQ4_K, qs) == 16);
}

// Round trip of N(0, 1) data, relative MSE bounds (error / signal power). Expected values for a uniform
// quantizer over ~±2.5σ: Q8_0 step ≈ 2.4σ/127 → MSE ≈ step²/12 ≈ 3e-5; Q4_0 step ≈ 2.4σ/7.5 → ≈ 8e-3;
// Q4_K (asymmetric, 32-wide sub-blocks, 6-bit scales) ≈ 6e-3. Bounds sit ~30% above the measured values.
TEST(quant_roundtrip_error_bounds) {
  const auto x = moe_test::randn(256 * 64, 7, 1.0f);
  const double p = mean_sq(x);
  const double e8 = mse(x, roundtrip(DType::Q8_0, x)) / p, e40 = mse(x, roundtrip(DType::Q4_0, x)) / p,
               e4k = mse(x, roundtrip(DType::Q4_K, x)) / p;
  std::printf("    relative MSE: q8_0 %.3g, q4_0 %.3g, q4_k %.3g\n", e8, e40, e4k);
  CHECK(e8 < 3.5e-5);
  CHECK(e40 < 9e-3);
  CHECK(e4k < 8e-3);
  // also on a scaled, shifted distribution (checks scales and Q4_K mins are not tied to N(0,1))
  auto z = moe_test::randn(256 * 16, 8, 0.01f);
  for (auto& v : z) v += 0.003f;
  const double pz = mean_sq(z);
  CHECK(mse(z, roundtrip(DType::Q8_0, z)) / pz < 3.5e-5);
  CHECK(mse(z, roundtrip(DType::Q4_K, z)) / pz < 8e-3);
}

// The search beats plain absmax (the block error is minimised, absmax is one of the candidates).
TEST(quant_search_beats_absmax) {
  const auto x = moe_test::randn(32 * 2048, 11, 0.05f);
  const double s8 = mse(x, roundtrip(DType::Q8_0, x)), a8 = mse(x, absmax_q8_0(x));
  const double s4 = mse(x, roundtrip(DType::Q4_0, x)), a4 = mse(x, absmax_q4_0(x));
  std::printf("    MSE search/absmax: q8_0 %.3f, q4_0 %.3f\n", s8 / a8, s4 / a4);
  CHECK(s8 < 0.97 * a8);
  CHECK(s4 < 0.95 * a4);
}

TEST(quant_edge_blocks) {
  // all zeros -> exact zeros; a constant block; a single spike; tiny values below f16's normal range
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    std::vector<float> z(256, 0.0f);
    auto y = roundtrip(t, z);
    for (float v : y) CHECK(v == 0.0f);
    std::vector<float> c(256, -0.75f);
    y = roundtrip(t, c);
    for (float v : y) CHECK_NEAR(v, -0.75f, 0.75 * 0.02);
    std::vector<float> s(256, 0.0f); s[37] = 3.0f;
    y = roundtrip(t, s);
    CHECK_NEAR(y[37], 3.0, 3.0 * 0.02);
    for (size_t i = 0; i < 256; ++i) if (i != 37) CHECK(std::fabs(y[i]) < 0.2);
    std::vector<float> tiny(256, 1e-9f);
    y = roundtrip(t, tiny);
    for (float v : y) CHECK(std::isfinite(v) && std::fabs(v) < 1e-6);
  }
}

TEST(quant_parallel_equals_serial) {
  const auto x = moe_test::randn(256 * 300, 5, 0.3f);
  ThreadPool pool(2);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    std::vector<uint8_t> a(qbytes(t, int64_t(x.size()))), b(a.size());
    quantize_tensor(t, x.data(), a.data(), int64_t(x.size()));
    quantize_tensor(t, x.data(), b.data(), int64_t(x.size()), &pool);
    CHECK(a == b);
  }
}

// A U8 tensor marked as quantized in __metadata__ is presented with its block dtype and logical shape; a marker
// on a tensor of the wrong shape or an unknown format is a clear error naming the file and key.
TEST(quant_safetensors_metadata_marks) {
  const std::string dir = moe_test::temp_dir("quant-meta");
  auto file = [&](const std::string& meta, const std::string& dtype, const std::string& shape, size_t nbytes) {
    std::string h = "{\"__metadata__\":{" + meta + "},\"w\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
                    ",\"data_offsets\":[0," + std::to_string(nbytes) + "]}}";
    std::string out(8, '\0');
    for (int k = 0; k < 8; ++k) out[size_t(k)] = char((uint64_t(h.size()) >> (8 * k)) & 0xff);
    const std::string p = dir + "/m.safetensors";
    moe_test::write_file(p, out + h + std::string(nbytes, '\0'));
    return p;
  };
  {
    SafeTensorsFile f(file("\"quant.w\":\"q4_k\",\"other\":\"x\"", "U8", "[3,288]", 3 * 288));
    CHECK(f.tensors()[0].dtype == DType::Q4_K);
    CHECK(f.tensors()[0].shape == (std::vector<int64_t>{3, 512}));
    CHECK(f.metadata().at("other") == "x");
  }
  CHECK_THROWS(SafeTensorsFile(file("\"quant.w\":\"q5_k\"", "U8", "[3,288]", 3 * 288)), "__metadata__['quant.w']: unknown quantization 'q5_k'");
  CHECK_THROWS(SafeTensorsFile(file("\"quant.w\":\"q8_0\"", "U8", "[3,35]", 3 * 35)), "must be U8 [..., rows, k*34]");
  CHECK_THROWS(SafeTensorsFile(file("\"quant.x\":\"q8_0\"", "U8", "[3,34]", 3 * 34)), "no tensor named x in this file");
}
