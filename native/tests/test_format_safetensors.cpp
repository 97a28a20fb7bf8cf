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

// A raw safetensors file from a header string and n data bytes (the header is used as given, so tests can lie).
static std::string raw_st(const std::string& header, size_t data_bytes) {
  std::string f(8, '\0');
  for (int k = 0; k < 8; ++k) f[size_t(k)] = char((uint64_t(header.size()) >> (8 * k)) & 0xff);
  return f + header + std::string(data_bytes, '\0');
}

TEST(format_safetensors_shape_overflow_and_offsets) {
  std::string d = temp_dir("st-overflow");
  auto load = [&](const std::string& header, size_t data) {
    write_file(d + "/m.safetensors", raw_st(header, data));
    return SafeTensorsFile(d + "/m.safetensors");
  };
  // 2^32 x 2^32 elements wraps to 0 in unchecked 64-bit arithmetic and then "matches" data_offsets [0, 0]
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0), "tensor w: shape [4294967296,4294967296]");
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0), "more elements than 2^64");
  // elements fit, bytes do not: 2^62 f32
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[1099511627776,4194304],"data_offsets":[0,0]}})", 0), "larger than 2^63 bytes");
  // a zero dimension is a legal empty tensor, and must span zero bytes
  CHECK(load(R"({"w":{"dtype":"F32","shape":[0,4294967296],"data_offsets":[0,0]}})", 0).tensors().at(0).nbytes == 0);
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[0,4],"data_offsets":[0,16]}})", 16), "needs 0 bytes but data_offsets span 16");
  // dimensions and offsets are exact non-negative integers
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4), "shape[0] is not a non-negative integer");
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "shape[0] is not a non-negative integer");
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":["4"],"data_offsets":[0,4]}})", 4), "shape[0] is not a non-negative integer");
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[9007199254740993],"data_offsets":[0,4]}})", 4), "below 2^53");
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0.5,4.5]}})", 8), "data_offsets must be two non-negative integers");
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 8), "data_offsets must be two non-negative integers");
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8), "data_offsets [8,4] end before they begin");
  // offsets beyond the file
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[1000,1004]}})", 8), "tensor w needs bytes [");
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})", 4), "9 dimensions (at most 8)");
  // a tensor named twice (a JSON object with a duplicated key)
  CHECK_THROWS(load(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
               "tensor w: appears twice");
}

TEST(format_safetensors_overlap_hidden_behind_an_empty_tensor) {
  // sorted by begin: a [0,16), z [8,8) (empty), b [12,16): comparing neighbours only, the empty z hides the overlap
  std::string d = temp_dir("st-overlap");
  write_file(d + "/m.safetensors", raw_st(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                          R"("z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},)"
                                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})", 16));
  CHECK_THROWS(SafeTensorsFile(d + "/m.safetensors"), "tensors a and b overlap");
  // the same empty tensor beside non-overlapping ranges is fine
  write_file(d + "/n.safetensors", raw_st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                          R"("z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},)"
                                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16));
  CHECK(SafeTensorsFile(d + "/n.safetensors").tensors().size() == 3);
}

TEST(format_safetensors_header_length_is_capped_and_never_echoed) {
  std::string d = temp_dir("st-hlen");
  // 200 MiB claimed by a 1 KiB file: refused by the cap, before anything is parsed
  std::string f = raw_st("{}", 1024);
  const uint64_t n = 200ull << 20;
  for (int k = 0; k < 8; ++k) f[size_t(k)] = char((n >> (8 * k)) & 0xff);
  write_file(d + "/big.safetensors", f);
  CHECK_THROWS(SafeTensorsFile(d + "/big.safetensors"), "big.safetensors: corrupt safetensors header: header length is over the 100 MiB limit");
  // a text file read as safetensors: its first 8 bytes are the "length"; the message must not give them away
  write_file(d + "/text.safetensors", "root:x:0:0:root:/root:/bin/bash\n");
  try {
    SafeTensorsFile t(d + "/text.safetensors");
    CHECK(false);
  } catch (const std::exception& e) {
    const std::string m = e.what();
    CHECK(m.find("text.safetensors: corrupt safetensors header") != std::string::npos);
    uint64_t v = 0;
    for (int k = 7; k >= 0; --k) v = (v << 8) | uint8_t("root:x:0"[k]);
    CHECK(m.find(std::to_string(v)) == std::string::npos);
    CHECK(m.find("root") == std::string::npos);
  }
  // JSON errors name the byte offset, not the byte
  write_file(d + "/junk.safetensors", raw_st("{\"w\": Qsecret}", 0));
  try {
    SafeTensorsFile t(d + "/junk.safetensors");
    CHECK(false);
  } catch (const std::exception& e) {
    const std::string m = e.what();
    CHECK(m.find("invalid JSON at byte 6: unexpected character") != std::string::npos);
    CHECK(m.find('Q') == std::string::npos && m.find("secret") == std::string::npos);
  }
}

TEST(format_safetensors_index_shard_names_stay_inside_the_folder) {
  std::string root = temp_dir("st-escape");
  std::string d = root + "/model";
  std::filesystem::create_directories(d);
  // a readable file outside the model folder whose bytes must never be read or shown
  write_file(root + "/secret.safetensors", "TOPSECRET-TOPSECRET-TOPSECRET");
  write_file(d + "/s1.safetensors", safetensors_bytes({{"a", {1}, {1}}}));
  for (const char* shard : {"../secret.safetensors", "../../etc/passwd", "/etc/passwd", "sub/s1.safetensors", "..", "C:s1.safetensors",
                            "config.json", ""}) {
    write_file(d + "/model.safetensors.index.json", std::string(R"({"weight_map": {"a": "s1.safetensors", "b": ")") + shard + "\"}}");
    try {
      TensorStore st(d);
      CHECK(false);
    } catch (const std::exception& e) {
      const std::string m = e.what();
      CHECK(m.find("model.safetensors.index.json: weight_map names shard") != std::string::npos);
      CHECK(m.find("TOPSECRET") == std::string::npos);
    }
  }
  CHECK_THROWS(check_shard_name("../../etc/passwd", "idx.json"), "not a plain file name inside the model folder");
  CHECK_THROWS(check_shard_name("pytorch_model.bin", "idx.json"), "not a *.safetensors file");
  CHECK(check_shard_name("model-00001-of-00002.safetensors", "idx.json") == "model-00001-of-00002.safetensors");
}

TEST(format_safetensors_index_tensor_in_the_wrong_shard) {
  std::string d = temp_dir("st-wrongshard");
  write_file(d + "/s1.safetensors", safetensors_bytes({{"a", {1}, {1}}}));
  write_file(d + "/s2.safetensors", safetensors_bytes({{"b", {1}, {2}}}));
  // "b" exists, but in s2, not in the s1 the index names
  write_file(d + "/model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors", "x": "s2.safetensors"}})");
  CHECK_THROWS(TensorStore{d}, "tensor b is listed in weight_map for s1.safetensors but is not in that file");
  write_file(d + "/model.safetensors.index.json", R"({"weight_map": {}})");
  CHECK_THROWS(TensorStore{d}, "weight_map is empty");
  write_file(d + "/model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors", "a": "s1.safetensors"}})");
  CHECK_THROWS(TensorStore{d}, "weight_map lists tensor a twice");
}
