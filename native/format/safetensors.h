// safetensors checkpoints, memory-mapped and validated. A file is
//   u64 little-endian N | N bytes of JSON header | data
// header: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {...}}
// with offsets relative to the start of the data section. Tensors are never copied: a TensorView points into
// the mapping, in the stored dtype. Sharded checkpoints are opened through model.safetensors.index.json.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include "format/dtype.h"
#include "format/limits.h"

namespace moe {

// A read-only memory mapping of a whole file (POSIX mmap, or CreateFileMapping on Windows).
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
#ifdef _WIN32
  void* file_ = nullptr;
  void* mapping_ = nullptr;
#endif
};

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;   // points into the mapping
  uint64_t nbytes = 0;
  const std::string* file = nullptr;  // the shard it lives in (for messages)
  int64_t numel() const { int64_t n = 1; for (auto d : shape) n *= d; return n; }
};

std::string shape_str(const std::vector<int64_t>& shape);  // "[8,64]"
bool parse_dtype(const std::string& s, DType& out);       // "F32" -> DType::F32; false if unknown

// One safetensors file: mapped and its header validated (see format/limits.h): header length at most 100 MiB and
// inside the file, dtype known, every dimension an exact integer, element and byte counts computed with checked
// multiplication and equal to the data_offsets span, begin <= end <= data size, no tensor named twice, ranges not
// overlapping. Errors name the file and the tensor; they never echo bytes of a file that may not be safetensors.
class SafeTensorsFile {
 public:
  explicit SafeTensorsFile(const std::string& path);
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::string& path() const { return map_->path(); }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // __metadata__ (string values)
  const MappedFile& map() const { return *map_; }
 private:
  std::unique_ptr<MappedFile> map_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Block-quantized tensors (written by `moe-studio quantize`, native/quant/writer.h) are U8 tensors of shape
// [..., rows, row_bytes] holding GGUF blocks row by row; the file's __metadata__ marks each one with
//   "quant.<tensor name>": "q8_0" | "q4_0" | "q4_k"
// and the store presents it with that dtype and its logical shape [..., rows, row_bytes / block_bytes * block].
constexpr const char* kQuantMetaPrefix = "quant.";

// A shard name from model.safetensors.index.json, returned when it is a plain "*.safetensors" file name (no
// directory part, no "..", no drive): anything else throws, naming the index file.
std::string check_shard_name(const std::string& name, const std::string& index_path);

// All tensors of a checkpoint folder: model.safetensors, or the shards listed in model.safetensors.index.json,
// or (fallback) every *.safetensors in the folder. With an index, every shard must exist and every tensor it lists
// must be in the shard it names.
class TensorStore {
 public:
  // progress(done, total) is called after each shard is mapped and validated.
  explicit TensorStore(const std::string& dir, void (*progress)(void*, int, int) = nullptr, void* ctx = nullptr);
  const TensorView* find(const std::string& name) const;
  const std::map<std::string, TensorView>& all() const { return by_name_; }
  const std::vector<std::unique_ptr<SafeTensorsFile>>& files() const { return files_; }
 private:
  std::vector<std::unique_ptr<SafeTensorsFile>> files_;
  std::map<std::string, TensorView> by_name_;
};

}  // namespace moe
