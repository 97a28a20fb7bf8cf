// Helpers for format/model/runtime tests: a temp folder and a tiny safetensors writer.
#pragma once
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>
#ifdef _WIN32
#include <process.h>
inline int getpid_compat() { return _getpid(); }
#else
#include <unistd.h>
inline int getpid_compat() { return getpid(); }
#endif

namespace moe_test {

// test/fixtures/models of this checkout (found from this header's own path, so no build-time definition is needed).
inline std::filesystem::path fixture_models_dir() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "test" / "fixtures" / "models";
}

inline std::string temp_dir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("moe-native-tests-" + std::to_string(getpid_compat()) + "-" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary); f.write(bytes.data(), std::streamsize(bytes.size()));
}

struct StTensor { std::string name; std::vector<int64_t> shape; std::vector<float> values; };

// f32 safetensors with a correct header; returns the bytes so tests can corrupt them.
inline std::string safetensors_bytes(const std::vector<StTensor>& ts) {
  std::string header = "{", data;
  for (size_t i = 0; i < ts.size(); ++i) {
    size_t b = data.size();
    data.append(reinterpret_cast<const char*>(ts[i].values.data()), ts[i].values.size() * 4);
    std::string shape;
    for (size_t k = 0; k < ts[i].shape.size(); ++k) shape += (k ? "," : "") + std::to_string(ts[i].shape[k]);
    header += (i ? "," : "") + std::string("\"") + ts[i].name + "\":{\"dtype\":\"F32\",\"shape\":[" + shape +
              "],\"data_offsets\":[" + std::to_string(b) + "," + std::to_string(data.size()) + "]}";
  }
  header += "}";
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int k = 0; k < 8; ++k) out[size_t(k)] = char((n >> (8 * k)) & 0xff);
  return out + header + data;
}

inline std::vector<float> randn(size_t n, uint32_t seed, float scale) {
  std::mt19937 g(seed); std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n); for (auto& x : v) x = d(g); return v;
}

}  // namespace moe_test
