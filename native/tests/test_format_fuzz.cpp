// Fuzzing the readers of untrusted model files: seeded random mutations of the committed fixtures
// (test/fixtures/models/*) — byte flips, truncations, huge and negative numbers, wrong types, deleted and duplicated
// keys — fed to the safetensors reader, the config parser and Model::load. Each case must either load (and then
// satisfy the reader's invariants) or throw a std::exception with a message naming the file; no crash, no hang, no
// allocation blow-up. On POSIX the cases run in a forked child under an address-space limit and an alarm, so a
// crash, a hang or a huge allocation fails this test instead of taking the suite down with it.
#include "tests/test.h"
#include "tests/test_format_util.h"
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <random>
#include "format/config.h"
#include "format/json.h"
#include "format/limits.h"
#include "format/safetensors.h"
#include "model/model.h"
#include "quant/quant.h"
#include "runtime/session.h"
#ifndef _WIN32
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

using namespace moe;
using namespace moe_test;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kSeed = 20261204;
constexpr int kSafetensorsCases = 240, kConfigCases = 240, kLoadCases = 48;

// Cases that loaded / were refused, per reader: a fuzzer whose mutations all fail (or all pass) tests nothing.
struct Outcomes { int loaded = 0, refused = 0; };
Outcomes g_st, g_cfg, g_load;

fs::path fixtures() { return fixture_models_dir(); }

std::string read_bytes(const fs::path& p) { return read_text_file(p.string()); }

// A number written verbatim (so the fuzzer can write 9007199254740993 or 1e999, which a double cannot hold).
const char* kRaw = "\x01raw:";
Json raw(const std::string& text) { Json j; j.type = Json::Type::String; j.str = kRaw + text; return j; }

void dump(const Json& j, std::string& o) {
  switch (j.type) {
    case Json::Type::Null: o += "null"; break;
    case Json::Type::Bool: o += j.b ? "true" : "false"; break;
    case Json::Type::Number: {
      char b[40];
      if (std::isnan(j.num)) o += "NaN";
      else if (std::isinf(j.num)) o += j.num > 0 ? "Infinity" : "-Infinity";
      else { std::snprintf(b, sizeof b, j.is_int ? "%.0f" : "%.17g", j.num); o += b; }
      break;
    }
    case Json::Type::String:
      if (j.str.rfind(kRaw, 0) == 0) { o += j.str.substr(std::strlen(kRaw)); break; }
      o += '"';
      for (unsigned char c : j.str) {
        if (c == '"' || c == '\\') { o += '\\'; o += char(c); }
        else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
        else o += char(c);
      }
      o += '"';
      break;
    case Json::Type::Array:
      o += '[';
      for (size_t i = 0; i < j.arr.size(); ++i) { if (i) o += ','; dump(j.arr[i], o); }
      o += ']';
      break;
    case Json::Type::Object:
      o += '{';
      for (size_t i = 0; i < j.obj.size(); ++i) {
        if (i) o += ',';
        Json k; k.type = Json::Type::String; k.str = j.obj[i].first;
        dump(k, o); o += ':'; dump(j.obj[i].second, o);
      }
      o += '}';
      break;
  }
}
std::string dump(const Json& j) { std::string o; dump(j, o); return o; }

const char* kHostileNumbers[] = {"0", "-1", "1", "2", "3", "0.5", "-0", "2147483647", "2147483648", "4294967296", "4294967301",
                                 "9007199254740993", "18446744073709551615", "18446744073709551616", "1e300", "-1e300", "1e999",
                                 "NaN", "Infinity", "-Infinity", "1e-300", "65", "100000000000"};
const char* kWrongTypes[] = {"\"64\"", "[]", "[1,2]", "{}", "null", "true", "false", "\"\"", "[[]]", "{\"a\":1}"};

struct Rng {
  std::mt19937 g{kSeed};
  size_t below(size_t n) { return n ? size_t(g() % n) : 0; }
  template <class T, size_t N> const T& pick(const T (&a)[N]) { return a[below(N)]; }
};

Json parse_fragment(const std::string& text) { return json_parse(text, "fragment"); }
Json hostile_value(Rng& r) {
  if (r.below(3) == 0) return parse_fragment(r.pick(kWrongTypes));
  return raw(r.pick(kHostileNumbers));
}

// Every (container, index) leaf of a JSON tree, for picking one at random.
void leaves(Json& j, std::vector<Json*>& out) {
  if (j.is_object()) for (auto& kv : j.obj) { out.push_back(&kv.second); leaves(kv.second, out); }
  else if (j.is_array()) for (auto& e : j.arr) { out.push_back(&e); leaves(e, out); }
}
void objects(Json& j, std::vector<Json*>& out) {
  if (j.is_object()) { out.push_back(&j); for (auto& kv : j.obj) objects(kv.second, out); }
  else if (j.is_array()) for (auto& e : j.arr) objects(e, out);
}

// One structural mutation of a JSON document (a safetensors header or a config).
void mutate_tree(Json& root, Rng& r) {
  std::vector<Json*> ls, os;
  leaves(root, ls);
  objects(root, os);
  switch (r.below(6)) {
    case 0: case 1: {  // a leaf becomes a hostile number or a wrong type
      if (ls.empty()) break;
      *ls[r.below(ls.size())] = hostile_value(r);
      break;
    }
    case 2: {  // delete a key
      Json* o = os[r.below(os.size())];
      if (!o->obj.empty()) o->obj.erase(o->obj.begin() + long(r.below(o->obj.size())));
      break;
    }
    case 3: {  // duplicate a key: the copy goes first, with a hostile value half of the time
      Json* o = os[r.below(os.size())];
      if (o->obj.empty()) break;
      auto kv = o->obj[r.below(o->obj.size())];
      if (r.below(2)) kv.second = hostile_value(r);
      o->obj.insert(o->obj.begin(), kv);
      break;
    }
    case 4: {  // a number becomes a list of numbers (the per-layer form), of a random length
      if (ls.empty()) break;
      Json* l = ls[r.below(ls.size())];
      if (!l->is_number()) break;
      Json a; a.type = Json::Type::Array;
      const size_t n = r.below(6);
      for (size_t i = 0; i < n; ++i) a.arr.push_back(r.below(2) ? *l : raw(r.pick(kHostileNumbers)));
      *l = a;
      break;
    }
    default: {  // copy one entry's value over another's (aliasing data_offsets, shapes, whole tensors)
      if (ls.size() < 2) break;
      *ls[r.below(ls.size())] = *ls[r.below(ls.size())];
      break;
    }
  }
}

std::string safetensors_file(const std::string& header, const std::string& data) {
  std::string f(8, '\0');
  for (int k = 0; k < 8; ++k) f[size_t(k)] = char((uint64_t(header.size()) >> (8 * k)) & 0xff);
  return f + header + data;
}

int fuzz_safetensors(const std::string& dir) {
  Rng r;
  int bad = 0;
  const fs::path m = fixtures();
  const std::vector<fs::path> sources = {m / "llama" / "model.safetensors", m / "qwen2_moe" / "model-00003-of-00003.safetensors",
                                         m / "qwen3_moe" / "model.safetensors"};
  struct Src { std::string header, data; Json tree; };
  std::vector<Src> src;
  for (auto& p : sources) {
    std::string b = read_bytes(p);
    uint64_t n = 0;
    for (int k = 7; k >= 0; --k) n = (n << 8) | uint8_t(b[size_t(k)]);
    Src s{b.substr(8, n), b.substr(8 + n), {}};
    s.tree = json_parse(s.header, p.string());
    src.push_back(std::move(s));
  }
  const std::string path = dir + "/fuzz.safetensors";
  for (int c = 0; c < kSafetensorsCases; ++c) {
    const Src& s = src[r.below(src.size())];
    std::string file;
    switch (r.below(5)) {
      case 0: {  // byte flips in the header
        std::string h = s.header;
        for (size_t k = 0, n = 1 + r.below(4); k < n; ++k) h[r.below(h.size())] ^= char(1 + r.below(255));
        file = safetensors_file(h, s.data);
        break;
      }
      case 1: {  // truncated anywhere
        file = safetensors_file(s.header, s.data);
        file.resize(r.below(file.size()));
        break;
      }
      case 2: {  // the length prefix lies
        file = safetensors_file(s.header, s.data);
        uint64_t n = s.header.size();
        const uint64_t lies[] = {0, 1, n - 1, n + 1, n + 8, uint64_t(file.size()), 100ull << 20, (100ull << 20) + 1, UINT64_MAX, uint64_t(r.g()) << 32 | r.g()};
        n = lies[r.below(sizeof lies / sizeof lies[0])];
        for (int k = 0; k < 8; ++k) file[size_t(k)] = char((n >> (8 * k)) & 0xff);
        break;
      }
      default: {  // structural mutations of the header JSON (1-3 of them)
        Json t = s.tree;
        for (size_t k = 0, n = 1 + r.below(3); k < n; ++k) mutate_tree(t, r);
        file = safetensors_file(dump(t), s.data);
        break;
      }
    }
    write_file(path, file);
    try {
      SafeTensorsFile f(path);
      // loaded: every tensor lies inside the data section and its size is its shape's
      const uint8_t* lo = f.map().data() + 8, *hi = f.map().data() + f.map().size();
      uint8_t sink = 0;
      for (auto& t : f.tensors()) {
        const uint8_t* p = static_cast<const uint8_t*>(t.data);
        if (p < lo || p + t.nbytes > hi || p + t.nbytes < p) { ++bad; std::fprintf(stderr, "  case %d: tensor %s outside the file\n", c, t.name.c_str()); }
        if (!is_quant(t.dtype) && uint64_t(t.numel()) * dtype_size(t.dtype) != t.nbytes) {
          ++bad; std::fprintf(stderr, "  case %d: tensor %s: %" PRIu64 " bytes for shape %s\n", c, t.name.c_str(), t.nbytes, shape_str(t.shape).c_str());
        }
        if (t.nbytes) sink ^= p[0] ^ p[t.nbytes - 1];  // touches the first and last byte: a bad range faults here
      }
      (void)sink;
      ++g_st.loaded;
    } catch (const std::exception& e) {
      ++g_st.refused;
      const std::string msg = e.what();
      if (msg.find("fuzz.safetensors") == std::string::npos || msg.size() > 2000) {
        ++bad; std::fprintf(stderr, "  case %d: unclear error: %.300s\n", c, msg.c_str());
      }
    }
  }
  return bad;
}

bool spec_within_limits(const ModelSpec& s) {
  bool ok = s.hidden >= 1 && s.hidden <= kMaxHidden && s.num_layers >= 1 && s.num_layers <= kMaxLayers && s.vocab >= 1 && s.vocab <= kMaxVocab &&
            s.num_heads >= 1 && s.num_kv_heads >= 1 && s.num_heads % s.num_kv_heads == 0 && s.head_dim >= 2 && s.head_dim % 2 == 0 &&
            int64_t(s.num_heads) * s.head_dim <= kMaxAttentionWidth && s.max_position >= 1 && s.max_position <= kMaxPositions &&
            std::isfinite(s.rope.theta) && s.rope.theta > 0 && std::isfinite(s.rope.factor) && s.rope.factor > 0 &&
            std::isfinite(s.rms_eps) && s.rms_eps > 0 && int64_t(s.layers.size()) == s.num_layers && s.num_kv_slots >= 1;
  for (auto& l : s.layers) {
    if (l.moe) ok = ok && l.num_experts >= 1 && l.num_experts <= kMaxExperts && l.top_k >= 1 && l.top_k <= l.num_experts &&
                    l.expert_inter >= 1 && l.expert_inter <= kMaxIntermediate;
    else ok = ok && s.intermediate >= 1;
    ok = ok && l.shared_inter >= 0 && l.shared_inter <= kMaxIntermediate && l.kv_slot >= 0 && l.kv_slot < s.num_kv_slots;
  }
  return ok;
}

std::vector<std::string> fixture_names() {
  std::vector<std::string> v;
  for (auto& e : fs::directory_iterator(fixtures())) if (fs::exists(e.path() / "config.json")) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

// A mutated config.json text: structural mutations of the tree, or (one case in four) raw byte flips / truncation.
std::string mutated_config(const Json& tree, const std::string& text, Rng& r) {
  if (r.below(4) == 0) {
    std::string t = text;
    if (r.below(2)) t.resize(r.below(t.size()));
    else for (size_t k = 0, n = 1 + r.below(4); k < n; ++k) t[r.below(t.size())] ^= char(1 + r.below(255));
    return t;
  }
  Json t = tree;
  for (size_t k = 0, n = 1 + r.below(3); k < n; ++k) mutate_tree(t, r);
  return dump(t);
}

int fuzz_config() {
  Rng r;
  r.g.seed(kSeed + 1);
  int bad = 0;
  std::vector<std::pair<Json, std::string>> src;
  for (auto& n : fixture_names()) {
    std::string text = read_bytes(fixtures() / n / "config.json");
    src.push_back({json_parse(text, n), text});
  }
  for (int c = 0; c < kConfigCases; ++c) {
    auto& s = src[r.below(src.size())];
    const std::string text = mutated_config(s.first, s.second, r);
    try {
      ModelSpec spec = parse_model_spec(json_parse(text, "config.json"), "config.json");
      if (!spec_within_limits(spec)) { ++bad; std::fprintf(stderr, "  config case %d: accepted a spec outside the limits\n", c); }
      session_bytes(spec, spec.max_position, KvType::F32, 1024);  // saturating: must not trap
      ++g_cfg.loaded;
    } catch (const std::exception& e) {
      ++g_cfg.refused;
      const std::string msg = e.what();
      if (msg.rfind("config.json", 0) != 0 || msg.size() > 2000) { ++bad; std::fprintf(stderr, "  config case %d: unclear error: %.300s\n", c, msg.c_str()); }
    }
  }
  return bad;
}

// Whole-folder loads: a mutated config.json beside a fixture's real weights, so the binder sees shapes that disagree
// with the config; what loads must also run one token.
int fuzz_load(const std::string& dir) {
  Rng r;
  r.g.seed(kSeed + 2);
  int bad = 0;
  const std::vector<std::string> names = {"llama", "qwen3_moe"};
  std::vector<std::pair<Json, std::string>> src;
  for (auto& n : names) {
    const std::string d = dir + "/" + n;
    fs::create_directories(d);
    fs::copy_file(fixtures() / n / "model.safetensors", d + "/model.safetensors", fs::copy_options::overwrite_existing);
    std::string text = read_bytes(fixtures() / n / "config.json");
    src.push_back({json_parse(text, n), text});
  }
  for (int c = 0; c < kLoadCases; ++c) {
    const size_t which = r.below(names.size());
    const std::string d = dir + "/" + names[which];
    write_file(d + "/config.json", mutated_config(src[which].first, src[which].second, r));
    try {
      auto m = Model::load(d, 1);
      const int64_t ctx = std::min<int64_t>(m->spec().max_position, 32);
      check_session_memory(m->spec(), ctx, KvType::F32, 1);
      Session sess(m, ctx);
      std::vector<float> out;
      sess.logits({0}, out);
      for (float x : out) if (!std::isfinite(x)) { ++bad; std::fprintf(stderr, "  load case %d: non-finite logit\n", c); break; }
      ++g_load.loaded;
    } catch (const std::exception& e) {
      ++g_load.refused;
      const std::string msg = e.what();
      if (msg.empty() || msg.size() > 2000) { ++bad; std::fprintf(stderr, "  load case %d: unclear error: %.300s\n", c, msg.c_str()); }
    }
  }
  return bad;
}

int run_all(const std::string& dir) {
  int bad = fuzz_safetensors(dir) + fuzz_config() + fuzz_load(dir);
  std::fprintf(stderr, "  fuzz: safetensors %d loaded / %d refused, config %d / %d, Model::load %d / %d\n", g_st.loaded, g_st.refused,
               g_cfg.loaded, g_cfg.refused, g_load.loaded, g_load.refused);
  for (const Outcomes* o : {&g_st, &g_cfg, &g_load})
    if (o->loaded == 0 || o->refused == 0) { ++bad; std::fprintf(stderr, "  fuzz: a reader saw only one outcome\n"); }
  return bad;
}

}  // namespace

TEST(format_fuzz_safetensors_config_and_load) {
  const std::string dir = temp_dir("fuzz");
  CHECK(fs::exists(fixtures() / "llama" / "config.json"));
#ifndef _WIN32
  std::fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    // 2 GiB more address space than the child starts with: a reader that allocates what a hostile size says dies
    // with bad_alloc (reported) or is killed (caught below), instead of swapping the machine to death.
    long pages = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) { if (std::fscanf(f, "%ld", &pages) != 1) pages = 0; std::fclose(f); }
    const rlim_t base = rlim_t(pages) * rlim_t(sysconf(_SC_PAGESIZE));
    struct rlimit lim { base + (rlim_t(2) << 30), base + (rlim_t(2) << 30) };
    setrlimit(RLIMIT_AS, &lim);
    alarm(120);  // a hang is a failure, not a stuck suite
    int bad = 0;
    try { bad = run_all(dir); } catch (const std::exception& e) { std::fprintf(stderr, "  fuzz: escaped: %s\n", e.what()); bad = 1; }
    std::fflush(stderr);
    _exit(bad > 100 ? 100 : bad);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) std::fprintf(stderr, "  fuzz child died of signal %d (crash, hang or memory blow-up)\n", WTERMSIG(status));
  CHECK(WIFEXITED(status));
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#else
  CHECK(run_all(dir) == 0);
#endif
  fs::remove_all(dir);
}
