// Writing safetensors files: the one writer behind `moe-studio quantize` (quant/writer.h) and `moe-studio export`
// (io/merge.h). A file is the 8-byte header length, the JSON header (tensors in the order given, data packed back to
// back, padded with spaces so the data section starts 8-byte aligned), then the data, streamed by the caller in the
// same order. Writes are checked (short writes, ENOSPC), the file is fsynced before close, and a test hook named by
// the caller (MOE_QUANT_FAIL_AFTER_BYTES / MOE_EXPORT_FAIL_AFTER_BYTES = N) fails as a full disk would once N bytes
// are written.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>
#include "format/dtype.h"

namespace moe {

class MappedFile;

// JSON string literal of s (quotes, backslashes and control characters escaped).
std::string json_quote(const std::string& s);
// safetensors' dtype name ("F32", "BF16", ...; block-quantized tensors are stored as "U8").
const char* safetensors_dtype_name(DType t);

struct StEntry {
  std::string name;
  DType dtype = DType::F32;        // as stored on disk
  std::vector<int64_t> shape;      // as stored on disk
  uint64_t nbytes = 0;
};

// The header text (without the length prefix), padded so that 8 + size is a multiple of 8.
std::string safetensors_header(const std::vector<StEntry>& tensors,
                               const std::vector<std::pair<std::string, std::string>>& metadata);

// A file written with checked writes; `fail_env` names the environment variable of the full-disk test hook.
class CheckedFile {
 public:
  CheckedFile(const std::string& path, uint64_t* written_total, const char* fail_env);
  ~CheckedFile();
  CheckedFile(const CheckedFile&) = delete;
  CheckedFile& operator=(const CheckedFile&) = delete;
  void write(const void* p, size_t n);
  void write_header(const std::string& header);  // length prefix + header
  void close();                                  // flush, fsync, close (throws on failure)
 private:
  std::string path_, env_;
  FILE* f_ = nullptr;
  uint64_t* total_;
  uint64_t fail_after_ = UINT64_MAX;
};

// model.safetensors.index.json: {"metadata": {<metadata_fields>}, "weight_map": {name: shard, ...}} (names sorted).
// metadata_fields is the inside of the metadata object, e.g. "\"total_size\": 123".
std::string safetensors_index_json(const std::string& metadata_fields,
                                   std::vector<std::pair<std::string, std::string>> weight_map);

// Drop a finished tensor's source pages from this process (they stay in the page cache).
void release_pages(const MappedFile& map, const void* p, uint64_t n);

}  // namespace moe
