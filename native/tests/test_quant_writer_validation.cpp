// quantize_model validates its source the way Model::load does before it writes a byte: a folder whose weights
// contradict config.json, or whose config is out of range, leaves out_dir empty.
#include "tests/test.h"
#include "tests/test_format_util.h"
#include <atomic>
#include "format/json.h"
#include "quant/writer.h"

using namespace moe;
using namespace moe_test;
namespace fs = std::filesystem;

static std::string llama_copy(const std::string& name) {
  const std::string d = temp_dir(name);
  for (auto& e : fs::directory_iterator(fixture_models_dir() / "llama")) fs::copy_file(e.path(), fs::path(d) / e.path().filename());
  return d;
}

static bool empty_dir(const std::string& d) { return fs::is_empty(d); }

TEST(quant_writer_refuses_a_source_the_engine_would_not_load) {
  std::atomic<bool> cancel{false};
  QuantizeOptions opt;
  opt.format = DType::Q8_0;
  // vocab_size that the embedding does not have: the binder's shape error, nothing written
  std::string src = llama_copy("qw-vocab"), out = temp_dir("qw-vocab-out");
  std::string cfg = read_text_file(src + "/config.json");
  const size_t at = cfg.find("\"vocab_size\"");
  CHECK(at != std::string::npos);
  cfg = cfg.substr(0, at) + "\"vocab_size\": 999, \"_was\"" + cfg.substr(at + 12);
  write_file(src + "/config.json", cfg);
  CHECK_THROWS(quantize_model(src, out, opt, {}, cancel), "model.embed_tokens.weight has shape [576,");
  CHECK(empty_dir(out));
  // a config value out of range
  src = llama_copy("qw-layers");
  cfg = read_text_file(src + "/config.json");
  const size_t l = cfg.find("\"num_hidden_layers\"");
  cfg = cfg.substr(0, l) + "\"num_hidden_layers\": 2147483647, \"_was\"" + cfg.substr(l + 19);
  write_file(src + "/config.json", cfg);
  CHECK_THROWS(quantize_model(src, out, opt, {}, cancel), "num_hidden_layers = 2147483647 is not an integer in [1, 4096]");
  CHECK(empty_dir(out));
  // threads past the limit, before anything is written
  opt.threads = 99999999;
  CHECK_THROWS(quantize_model(llama_copy("qw-threads"), out, opt, {}, cancel), "threads must be an integer in [0, 1024]");
  CHECK(empty_dir(out));
  // the untouched fixture quantizes
  opt.threads = 1;
  QuantizeReport rep = quantize_model(llama_copy("qw-ok"), out, opt, {}, cancel);
  CHECK(rep.files.size() == 1 && fs::exists(fs::path(out) / "model.safetensors"));
  for (const char* n : {"qw-vocab", "qw-vocab-out", "qw-layers", "qw-threads", "qw-ok"}) fs::remove_all(temp_dir(n));
}
