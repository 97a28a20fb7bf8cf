#include "format/safetensors_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include "format/safetensors.h"
#if defined(__linux__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace moe {

std::string json_quote(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += char(c); }
    else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += char(c);
  }
  return o + "\"";
}

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32"; case DType::F16: return "F16"; case DType::BF16: return "BF16";
    case DType::I32: return "I32"; case DType::I64: return "I64"; case DType::I8: return "I8";
    case DType::BOOL: return "BOOL"; default: return "U8";
  }
}

std::string safetensors_header(const std::vector<StEntry>& tensors,
                               const std::vector<std::pair<std::string, std::string>>& metadata) {
  std::string h = "{\"__metadata__\":{";
  for (size_t i = 0; i < metadata.size(); ++i) h += (i ? "," : "") + json_quote(metadata[i].first) + ":" + json_quote(metadata[i].second);
  h += "}";
  uint64_t off = 0;
  for (auto& t : tensors) {
    h += "," + json_quote(t.name) + ":{\"dtype\":\"" + safetensors_dtype_name(t.dtype) + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) h += (i ? "," : "") + std::to_string(t.shape[i]);
    h += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + t.nbytes) + "]}";
    off += t.nbytes;
  }
  h += "}";
  while ((8 + h.size()) % 8) h += ' ';  // data section 8-byte aligned (spaces are valid JSON whitespace)
  return h;
}

CheckedFile::CheckedFile(const std::string& path, uint64_t* written_total, const char* fail_env)
    : path_(path), env_(fail_env ? fail_env : ""), total_(written_total) {
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) throw std::runtime_error(path + ": cannot create: " + std::strerror(errno));
  if (fail_env)
    if (const char* e = std::getenv(fail_env); e && *e) fail_after_ = std::strtoull(e, nullptr, 10);
}

CheckedFile::~CheckedFile() { if (f_) std::fclose(f_); }

void CheckedFile::write(const void* p, size_t n) {
  if (fail_after_ != UINT64_MAX && *total_ + n > fail_after_)
    throw std::runtime_error(path_ + ": write failed: No space left on device (injected by " + env_ + "=" +
                             std::to_string(fail_after_) + ")");
  if (n && std::fwrite(p, 1, n, f_) != n) throw std::runtime_error(path_ + ": write failed: " + std::strerror(errno));
  *total_ += n;
}

void CheckedFile::write_header(const std::string& h) {
  uint8_t len[8];
  for (int k = 0; k < 8; ++k) len[k] = uint8_t((uint64_t(h.size()) >> (8 * k)) & 0xff);
  write(len, 8);
  write(h.data(), h.size());
}

void CheckedFile::close() {
  if (std::fflush(f_) != 0) throw std::runtime_error(path_ + ": write failed: " + std::strerror(errno));
#if defined(__linux__) || defined(__APPLE__)
  if (::fsync(fileno(f_)) != 0) throw std::runtime_error(path_ + ": fsync failed: " + std::strerror(errno));
#endif
  int rc = std::fclose(f_); f_ = nullptr;
  if (rc != 0) throw std::runtime_error(path_ + ": close failed: " + std::strerror(errno));
}

std::string safetensors_index_json(const std::string& metadata_fields,
                                   std::vector<std::pair<std::string, std::string>> weight_map) {
  std::string j = "{\n  \"metadata\": {" + metadata_fields + "},\n  \"weight_map\": {";
  std::sort(weight_map.begin(), weight_map.end());
  for (size_t i = 0; i < weight_map.size(); ++i)
    j += std::string(i ? "," : "") + "\n    " + json_quote(weight_map[i].first) + ": " + json_quote(weight_map[i].second);
  j += "\n  }\n}\n";
  return j;
}

void release_pages(const MappedFile& map, const void* p, uint64_t n) {
#if defined(__linux__)
  const long ps = sysconf(_SC_PAGESIZE);
  uintptr_t b = reinterpret_cast<uintptr_t>(p), e = b + n;
  b = b / uintptr_t(ps) * uintptr_t(ps);
  const uintptr_t lo = reinterpret_cast<uintptr_t>(map.data());
  if (b < lo) b = lo;
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
#else
  (void)map; (void)p; (void)n;
#endif
}

}  // namespace moe
