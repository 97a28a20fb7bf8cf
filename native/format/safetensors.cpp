#include "format/safetensors.h"
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include "format/json.h"

#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace moe {

namespace fs = std::filesystem;

MappedFile::MappedFile(const std::string& path) : path_(path) {
#ifdef _WIN32
  HANDLE f = CreateFileA(path.c_str(), GENERIC_READ, FILE_SHARE_READ, nullptr, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (f == INVALID_HANDLE_VALUE) throw std::runtime_error(path + ": cannot open");
  LARGE_INTEGER sz;
  if (!GetFileSizeEx(f, &sz)) { CloseHandle(f); throw std::runtime_error(path + ": cannot stat"); }
  size_ = uint64_t(sz.QuadPart);
  file_ = f;
  if (size_ > 0) {
    HANDLE m = CreateFileMappingA(f, nullptr, PAGE_READONLY, 0, 0, nullptr);
    if (!m) { CloseHandle(f); throw std::runtime_error(path + ": CreateFileMapping failed"); }
    mapping_ = m;
    data_ = static_cast<const uint8_t*>(MapViewOfFile(m, FILE_MAP_READ, 0, 0, 0));
    if (!data_) { CloseHandle(m); CloseHandle(f); throw std::runtime_error(path + ": MapViewOfFile failed"); }
  }
#else
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error(path + ": cannot open");
  struct stat st;
  if (fstat(fd, &st) != 0) { ::close(fd); throw std::runtime_error(path + ": cannot stat"); }
  size_ = uint64_t(st.st_size);
  if (size_ > 0) {
    void* p = mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { ::close(fd); throw std::runtime_error(path + ": mmap failed"); }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
#endif
}

MappedFile::~MappedFile() {
#ifdef _WIN32
  if (data_) UnmapViewOfFile(data_);
  if (mapping_) CloseHandle(mapping_);
  if (file_) CloseHandle(file_);
#else
  if (data_) munmap(const_cast<uint8_t*>(data_), size_);
#endif
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) { if (i) s += ","; s += std::to_string(shape[i]); }
  return s + "]";
}

bool parse_dtype(const std::string& s, DType& out) {
  if (s == "F32") out = DType::F32; else if (s == "F16") out = DType::F16; else if (s == "BF16") out = DType::BF16;
  else if (s == "I32") out = DType::I32; else if (s == "I64") out = DType::I64; else if (s == "U8") out = DType::U8;
  else if (s == "I8") out = DType::I8; else if (s == "BOOL") out = DType::BOOL;
  else return false;
  return true;
}

namespace {

// A JSON number that must be an exact non-negative integer no larger than `max` (a double holds every integer up to
// 2^53 exactly; beyond that the value written in the file may not be the value parsed, so larger is refused).
bool exact_uint(const Json& v, uint64_t max, uint64_t& out) {
  if (!v.is_number() || !v.is_int || !(v.num >= 0) || v.num >= 9007199254740992.0 || v.num > double(max)) return false;
  out = uint64_t(v.num);
  return true;
}

// a * b, or false when the product does not fit in 64 bits.
bool checked_mul(uint64_t a, uint64_t b, uint64_t& out) {
  if (a != 0 && b > UINT64_MAX / a) return false;
  out = a * b;
  return true;
}

}  // namespace

SafeTensorsFile::SafeTensorsFile(const std::string& path) : map_(std::make_unique<MappedFile>(path)) {
  const uint64_t fsize = map_->size();
  if (fsize < 8) throw std::runtime_error(path + ": not a safetensors file (" + std::to_string(fsize) + " bytes, need at least 8)");
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | map_->data()[k];  // little-endian u64
  // The length's value is never echoed: for a file that is not safetensors at all those 8 bytes are its content.
  if (n == 0)
    throw std::runtime_error(path + ": corrupt safetensors header: header length is 0");
  if (n > kSafetensorsMaxHeaderBytes)
    throw std::runtime_error(path + ": corrupt safetensors header: header length is over the " +
                             std::to_string(kSafetensorsMaxHeaderBytes / (1024 * 1024)) + " MiB limit (not a safetensors file?)");
  if (8 + n > fsize)
    throw std::runtime_error(path + ": corrupt safetensors header: header length does not fit in the file of " +
                             std::to_string(fsize) + " bytes (truncated, or not a safetensors file?)");
  Json h;
  try {
    h = json_parse(std::string_view(reinterpret_cast<const char*>(map_->data()) + 8, n), path + " (safetensors header)");
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("corrupt safetensors header: ") + e.what());
  }
  if (!h.is_object()) throw std::runtime_error(path + ": corrupt safetensors header: not a JSON object");
  const uint64_t data_start = 8 + n, data_size = fsize - data_start;
  const std::string* fname = &map_->path();
  std::map<std::string, int> seen;
  for (auto& [name, t] : h.obj) {
    auto bad = [&](const std::string& why) { return std::runtime_error(path + ": tensor " + name + ": " + why); };
    if (seen[name]++) {
      if (name == "__metadata__") throw std::runtime_error(path + ": corrupt safetensors header: __metadata__ appears twice");
      throw bad("appears twice in the header");
    }
    if (name == "__metadata__") {
      // The format says str -> str; other writers' non-string values are ignored rather than refused (only our
      // "quant.*" keys carry meaning here, and they are checked below).
      if (t.is_object())
        for (auto& [k, v] : t.obj) if (v.is_string()) metadata_[k] = v.str;
      continue;
    }
    if (!t.is_object()) throw bad("header entry is not an object");
    const Json* dt = t.find("dtype"); const Json* sh = t.find("shape"); const Json* off = t.find("data_offsets");
    if (!dt || !dt->is_string()) throw bad("missing 'dtype'");
    if (!sh || !sh->is_array()) throw bad("missing 'shape'");
    if (!off || !off->is_array() || off->size() != 2) throw bad("missing 'data_offsets' [begin, end]");
    if (sh->size() > kSafetensorsMaxRank)
      throw bad("shape has " + std::to_string(sh->size()) + " dimensions (at most " + std::to_string(kSafetensorsMaxRank) + ")");
    TensorView v;
    v.name = name; v.file = fname;
    if (!parse_dtype(dt->str, v.dtype)) throw bad("unsupported dtype '" + dt->str.substr(0, 32) + "'");
    // Every product is checked: [2^32, 2^32] must not wrap to 0 elements and then match data_offsets [0, 0].
    uint64_t numel = 1;
    for (size_t i = 0; i < sh->size(); ++i) {
      uint64_t d;
      if (!exact_uint((*sh)[i], uint64_t(INT64_MAX), d))
        throw bad("shape[" + std::to_string(i) + "] is not a non-negative integer below 2^53");
      v.shape.push_back(int64_t(d));
      if (!checked_mul(numel, d, numel)) throw bad("shape " + shape_str(v.shape) + " has more elements than 2^64");
    }
    uint64_t nbytes;
    if (!checked_mul(numel, dtype_size(v.dtype), nbytes) || numel > uint64_t(INT64_MAX))
      throw bad("shape " + shape_str(v.shape) + " of " + dtype_name(v.dtype) + " is larger than 2^63 bytes");
    uint64_t begin, end;
    if (!exact_uint((*off)[0], UINT64_MAX, begin) || !exact_uint((*off)[1], UINT64_MAX, end))
      throw bad("data_offsets must be two non-negative integers below 2^53");
    if (end < begin) throw bad("data_offsets [" + std::to_string(begin) + "," + std::to_string(end) + "] end before they begin");
    if (end > data_size)
      throw std::runtime_error(path + ": tensor " + name + " needs bytes [" + std::to_string(data_start + begin) + "," +
                               std::to_string(data_start + end) + ") but the file has " + std::to_string(fsize) + " bytes (truncated?)");
    if (end - begin != nbytes)
      throw bad("shape " + shape_str(v.shape) + " of " + dtype_name(v.dtype) + " needs " + std::to_string(nbytes) +
                " bytes but data_offsets span " + std::to_string(end - begin));
    v.data = map_->data() + data_start + begin;
    v.nbytes = nbytes;
    tensors_.push_back(std::move(v));
  }
  // Ranges must not overlap (a corrupt or hostile header could alias tensors). Sorted by begin, a range overlaps an
  // earlier one exactly when it starts before the largest end so far (zero-length tensors occupy nothing).
  std::vector<std::pair<uint64_t, size_t>> r;
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (tensors_[i].nbytes) r.push_back({uint64_t(static_cast<const uint8_t*>(tensors_[i].data) - map_->data()), i});
  std::sort(r.begin(), r.end());
  uint64_t max_end = 0;
  size_t max_at = 0;
  for (auto& [b, i] : r) {
    if (b < max_end)
      throw std::runtime_error(path + ": corrupt safetensors header: tensors " + tensors_[max_at].name + " and " + tensors_[i].name +
                               " overlap (byte ranges overlap at byte " + std::to_string(b) + ")");
    max_end = b + tensors_[i].nbytes;
    max_at = i;
  }
  // Quantized tensors: U8 [..., rows, row_bytes] -> block dtype with the logical shape (see safetensors.h).
  for (auto& [k, v] : metadata_) {
    if (k.rfind(kQuantMetaPrefix, 0) != 0) continue;
    const std::string tname = k.substr(std::strlen(kQuantMetaPrefix));
    TensorView* tv = nullptr;
    for (auto& t : tensors_) if (t.name == tname) tv = &t;
    auto bad = [&](const std::string& why) { return std::runtime_error(path + ": __metadata__['" + k + "']: " + why); };
    if (!tv) throw bad("no tensor named " + tname + " in this file");
    DType qt;
    if (v == "q8_0") qt = DType::Q8_0; else if (v == "q4_0") qt = DType::Q4_0; else if (v == "q4_k") qt = DType::Q4_K;
    else throw bad("unknown quantization '" + v.substr(0, 32) + "' (expected q8_0, q4_0 or q4_k)");
    const int64_t blk = qt == DType::Q4_K ? 256 : 32, bb = int64_t(dtype_row_bytes(qt, blk));
    if (tv->dtype != DType::U8 || tv->shape.size() < 2 || tv->shape.back() % bb != 0)
      throw bad("tensor " + tname + " must be U8 [..., rows, k*" + std::to_string(bb) + "] to hold " + v + " blocks, but is " +
                dtype_name(tv->dtype) + " " + shape_str(tv->shape));
    tv->dtype = qt;
    tv->shape.back() = tv->shape.back() / bb * blk;
  }
}

std::string check_shard_name(const std::string& name, const std::string& index_path) {
  // A hub folder is hostile input: "../../etc/passwd" or "/etc/passwd" must not be opened (its first bytes would
  // end up in a "corrupt header" message). A shard is a plain *.safetensors file name inside the folder.
  auto bad = [&](const std::string& why) {
    std::string shown;
    for (unsigned char c : name.substr(0, 80)) shown += (c >= 0x20 && c < 0x7f) ? char(c) : '?';
    return std::runtime_error(index_path + ": weight_map names shard \"" + shown + "\": " + why);
  };
  if (name.empty()) throw bad("an empty file name");
  if (name.find('/') != std::string::npos || name.find('\\') != std::string::npos || name.find('\0') != std::string::npos ||
      name == "." || name == ".." || name.find(':') != std::string::npos)
    throw bad("not a plain file name inside the model folder (no directories, no '..')");
  if (name.size() < 13 || name.compare(name.size() - 12, 12, ".safetensors") != 0) throw bad("not a *.safetensors file");
  return name;
}

TensorStore::TensorStore(const std::string& dir, void (*progress)(void*, int, int), void* ctx) {
  std::vector<std::string> shards;
  fs::path index = fs::path(dir) / "model.safetensors.index.json";
  fs::path single = fs::path(dir) / "model.safetensors";
  std::map<std::string, std::string> weight_map;
  if (fs::exists(index)) {
    Json j = json_parse_file(index.string());
    const Json* wm = j.find("weight_map");
    if (!wm || !wm->is_object()) throw std::runtime_error(index.string() + ": missing field 'weight_map'");
    for (auto& [k, v] : wm->obj) {
      if (!v.is_string()) throw std::runtime_error(index.string() + ": weight_map['" + k + "'] is not a file name");
      if (weight_map.count(k)) throw std::runtime_error(index.string() + ": weight_map lists tensor " + k + " twice");
      weight_map[k] = check_shard_name(v.str, index.string());
      if (std::find(shards.begin(), shards.end(), v.str) == shards.end()) shards.push_back(v.str);
    }
    if (shards.empty()) throw std::runtime_error(index.string() + ": weight_map is empty");
  } else if (fs::exists(single)) {
    shards.push_back("model.safetensors");
  } else {
    if (!fs::is_directory(dir)) throw std::runtime_error(dir + ": not a directory");
    for (auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") shards.push_back(e.path().filename().string());
    std::sort(shards.begin(), shards.end());
    if (shards.empty()) throw std::runtime_error(dir + ": no model.safetensors, model.safetensors.index.json or *.safetensors found");
  }
  int done = 0;
  for (auto& s : shards) {
    fs::path p = fs::path(dir) / s;
    std::error_code ec;
    if (!fs::exists(p, ec))
      throw std::runtime_error(p.string() + ": missing (listed in " + (weight_map.empty() ? "folder" : index.filename().string()) + ")");
    if (!fs::is_regular_file(p, ec)) throw std::runtime_error(p.string() + ": not a regular file");
    files_.push_back(std::make_unique<SafeTensorsFile>(p.string()));
    for (auto& t : files_.back()->tensors()) {
      if (by_name_.count(t.name)) throw std::runtime_error(p.string() + ": tensor " + t.name + " also appears in " + *by_name_[t.name].file);
      by_name_[t.name] = t;
    }
    if (progress) progress(ctx, ++done, int(shards.size()));
  }
  for (auto& [k, f] : weight_map) {
    auto it = by_name_.find(k);
    if (it == by_name_.end() || fs::path(*it->second.file).filename().string() != f)
      throw std::runtime_error(index.string() + ": tensor " + k + " is listed in weight_map for " + f + " but is not in that file");
  }
}

const TensorView* TensorStore::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &it->second;
}

}  // namespace moe
