#include "tests/test.h"
#include "tests/test_format_util.h"
#include "format/safetensors.h"

using namespace moe;
using namespace moe_test;

TEST(format_safetensors_roundtrip_and_sharded_index) {
  std::string d = temp_dir("st-shards");
  write_file(d + "/model-00001-of-00002.safetensors", safetensors_bytes({{"a", {2, 3}, {1, 2, 3, 4, 5, 6}}}));
  write_file(d + "/model-00002-of-00002.safetensors", safetensors_bytes({{"b", {2}, {7, 8}}}));
  write_file(d + "/model.safetensors.index.json",
             R"({"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})");
  int calls = 0;
  TensorStore st(d, [](void* c, int, int) { ++*static_cast<int*>(c); }, &calls);
  CHECK(calls == 2);
  const TensorView* a = st.find("a");
  CHECK(a && a->shape == std::vector<int64_t>({2, 3}) && a->dtype == DType::F32);
  CHECK(static_cast<const float*>(a->data)[5] == 6.0f);
  CHECK(st.find("b") && static_cast<const float*>(st.find("b")->data)[1] == 8.0f);
  CHECK(st.find("c") == nullptr);
}

TEST(format_safetensors_corrupt_header) {
  std::string d = temp_dir("st-corrupt");
  std::string good = safetensors_bytes({{"w", {4}, {1, 2, 3, 4}}});
  std::string bad_json = good; bad_json[9] = '#';
  write_file(d + "/x.safetensors", bad_json);
  CHECK_THROWS(SafeTensorsFile(d + "/x.safetensors"), "corrupt safetensors header");
  std::string huge = good; huge[7] = char(0x7f);  // header length way past the file
  write_file(d + "/y.safetensors", huge);
  CHECK_THROWS(SafeTensorsFile(d + "/y.safetensors"), "y.safetensors: corrupt safetensors header: header length");
  write_file(d + "/z.safetensors", "abc");
  CHECK_THROWS(SafeTensorsFile(d + "/z.safetensors"), "not a safetensors file");
}

TEST(format_safetensors_truncated_and_bad_offsets) {
  std::string d = temp_dir("st-trunc");
  std::string good = safetensors_bytes({{"w", {4}, {1, 2, 3, 4}}, {"v", {2}, {5, 6}}});
  write_file(d + "/model.safetensors", good.substr(0, good.size() - 4));
  CHECK_THROWS(TensorStore{d}, "tensor v needs bytes [");
  CHECK_THROWS(TensorStore{d}, "(truncated?)");
  // data_offsets that disagree with shape*dtype
  std::string h = R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})";
  std::string f(8, '\0'); f[0] = char(h.size()); f += h + std::string(16, '\0');
  write_file(d + "/b.safetensors", f);
  CHECK_THROWS(SafeTensorsFile(d + "/b.safetensors"), "tensor w: shape [3] of f32 needs 12 bytes");
  // overlapping ranges
  h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  f = std::string(8, '\0'); f[0] = char(h.size()); f += h + std::string(12, '\0');
  write_file(d + "/o.safetensors", f);
  CHECK_THROWS(SafeTensorsFile(d + "/o.safetensors"), "overlap");
  // unknown dtype
  h = R"({"a":{"dtype":"F8_E9","shape":[2],"data_offsets":[0,2]}})";
  f = std::string(8, '\0'); f[0] = char(h.size()); f += h + std::string(2, '\0');
  write_file(d + "/u.safetensors", f);
  CHECK_THROWS(SafeTensorsFile(d + "/u.safetensors"), "unsupported dtype 'F8_E9'");
}

TEST(format_safetensors_index_errors) {
  std::string d = temp_dir("st-index");
  write_file(d + "/s1.safetensors", safetensors_bytes({{"a", {1}, {1}}}));
  write_file(d + "/model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
  CHECK_THROWS(TensorStore{d}, "s2.safetensors: missing");
  write_file(d + "/model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors", "zz": "s1.safetensors"}})");
  CHECK_THROWS(TensorStore{d}, "tensor zz is listed in weight_map");
  write_file(d + "/model.safetensors.index.json", R"({"metadata": {}})");
  CHECK_THROWS(TensorStore{d}, "missing field 'weight_map'");
}
