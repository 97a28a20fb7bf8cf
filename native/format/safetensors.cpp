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

SafeTensorsFile::SafeTensorsFile(const std::string& path) : map_(std::make_unique<MappedFile>(path)) {
  const uint64_t fsize = map_->size();
  if (fsize < 8) throw std::runtime_error(path + ": not a safetensors file (" + std::to_string(fsize) + " bytes, need at least 8)");
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | map_->data()[k];  // little-endian u64
  if (n == 0 || n > 100u * 1024 * 1024 || 8 + n > fsize)
    throw std::runtime_error(path + ": corrupt safetensors header: header length " + std::to_string(n) +
                             " does not fit in the file of " + std::to_string(fsize) + " bytes");
  Json h;
  try {
    h = json_parse(std::string_view(reinterpret_cast<const char*>(map_->data()) + 8, n), path + " (safetensors header)");
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("corrupt safetensors header: ") + e.what());
  }
  if (!h.is_object()) throw std::runtime_error(path + ": corrupt safetensors header: not a JSON object");
  const uint64_t data_start = 8 + n, data_size = fsize - data_start;
  const std::string* fname = &map_->path();
  for (auto& [name, t] : h.obj) {
    if (name == "__metadata__") {
      // The format says str -> str; other writers' non-string values are ignored rather than refused (only our
      // "quant.*" keys carry meaning here, and they are checked below).
      if (t.is_object())
        for (auto& [k, v] : t.obj) if (v.is_string()) metadata_[k] = v.str;
      continue;
    }
    auto bad = [&](const std::string& why) { return std::runtime_error(path + ": tensor " + name + ": " + why); };
    if (!t.is_object()) throw bad("header entry is not an object");
    const Json* dt = t.find("dtype"); const Json* sh = t.find("shape"); const Json* off = t.find("data_offsets");
    if (!dt || !dt->is_string()) throw bad("missing 'dtype'");
    if (!sh || !sh->is_array()) throw bad("missing 'shape'");
    if (!off || !off->is_array() || off->size() != 2 || !(*off)[0].is_number() || !(*off)[1].is_number()) throw bad("missing 'data_offsets' [begin, end]");
    TensorView v;
    v.name = name; v.file = fname;
    if (!parse_dtype(dt->str, v.dtype)) throw bad("unsupported dtype '" + dt->str + "'");
    uint64_t numel = 1;
    for (auto& d : sh->arr) {
      if (!d.is_number() || !d.is_int || d.num < 0 || d.num > 1e15) throw bad("bad shape entry");
      v.shape.push_back(int64_t(d.num)); numel *= uint64_t(d.num);
    }
    double b = (*off)[0].num, e = (*off)[1].num;
    if (b < 0 || e < b || e > 1.8e19) throw bad("bad data_offsets");
    uint64_t begin = uint64_t(b), end = uint64_t(e);
    if (end - begin != numel * dtype_size(v.dtype))
      throw bad("shape " + shape_str(v.shape) + " of " + dtype_name(v.dtype) + " needs " + std::to_string(numel * dtype_size(v.dtype)) +
                " bytes but data_offsets span " + std::to_string(end - begin));
    if (end > data_size)
      throw std::runtime_error(path + ": tensor " + name + " needs bytes [" + std::to_string(data_start + begin) + "," +
                               std::to_string(data_start + end) + ") but the file has " + std::to_string(fsize) + " bytes (truncated?)");
    v.data = map_->data() + data_start + begin;
    v.nbytes = end - begin;
    tensors_.push_back(std::move(v));
  }
  // Ranges must not overlap (a corrupt or hostile header could alias tensors).
  std::vector<std::pair<uint64_t, uint64_t>> r;
  for (auto& t : tensors_) {
    uint64_t b = uint64_t(static_cast<const uint8_t*>(t.data) - map_->data());
    r.push_back({b, b + t.nbytes});
  }
  std::sort(r.begin(), r.end());
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
    else throw bad("unknown quantization '" + v + "' (expected q8_0, q4_0 or q4_k)");
    const int64_t blk = qt == DType::Q4_K ? 256 : 32, bb = int64_t(dtype_row_bytes(qt, blk));
    if (tv->dtype != DType::U8 || tv->shape.size() < 2 || tv->shape.back() % bb != 0)
      throw bad("tensor " + tname + " must be U8 [..., rows, k*" + std::to_string(bb) + "] to hold " + v + " blocks, but is " +
                dtype_name(tv->dtype) + " " + shape_str(tv->shape));
    tv->dtype = qt;
    tv->shape.back() = tv->shape.back() / bb * blk;
  }
  for (size_t i = 1; i < r.size(); ++i)
    if (r[i].first < r[i - 1].second && r[i].second > r[i].first)
      throw std::runtime_error(path + ": corrupt safetensors header: tensor byte ranges overlap at byte " + std::to_string(r[i].first));
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
      weight_map[k] = v.str;
      if (std::find(shards.begin(), shards.end(), v.str) == shards.end()) shards.push_back(v.str);
    }
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
    if (!fs::exists(p)) throw std::runtime_error(p.string() + ": missing (listed in " + (weight_map.empty() ? "folder" : index.filename().string()) + ")");
    files_.push_back(std::make_unique<SafeTensorsFile>(p.string()));
    for (auto& t : files_.back()->tensors()) {
      if (by_name_.count(t.name)) throw std::runtime_error(p.string() + ": tensor " + t.name + " also appears in " + *by_name_[t.name].file);
      by_name_[t.name] = t;
    }
    if (progress) progress(ctx, ++done, int(shards.size()));
  }
  for (auto& [k, f] : weight_map)
    if (!by_name_.count(k)) throw std::runtime_error(index.string() + ": tensor " + k + " is listed in weight_map for " + f + " but is not in that file");
}

const TensorView* TensorStore::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &it->second;
}

}  // namespace moe
