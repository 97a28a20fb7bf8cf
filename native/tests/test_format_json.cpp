#include "tests/test.h"
#include "format/json.h"

using namespace moe;

TEST(format_json_values) {
  Json j = json_parse(R"({"a": 1, "b": -2.5e3, "c": [true, false, null], "d": {"e": "x"}, "f": 0})", "t.json");
  CHECK(j.is_object());
  CHECK(j.find("a")->is_int && j.find("a")->num == 1);
  CHECK(!j.find("b")->is_int && j.find("b")->num == -2500);
  CHECK(j.find("c")->size() == 3 && j.find("c")->arr[0].b && j.find("c")->arr[2].is_null());
  CHECK(j.find("d")->find("e")->str == "x");
  CHECK(j.find("missing") == nullptr);
  CHECK(j.obj[0].first == "a" && j.obj[4].first == "f");  // order kept
}

TEST(format_json_strings_and_unicode) {
  Json j = json_parse(R"(["a\"b\\c\/\n\t", "\u00e9", "\u4e2d\u6587", "\ud83d\ude00", "ü"])", "t.json");
  CHECK(j.arr[0].str == "a\"b\\c/\n\t");
  CHECK(j.arr[1].str == "\xC3\xA9");
  CHECK(j.arr[2].str == "\xE4\xB8\xAD\xE6\x96\x87");
  CHECK(j.arr[3].str == "\xF0\x9F\x98\x80");  // surrogate pair -> U+1F600
  CHECK(j.arr[4].str == "\xC3\xBC");
}

TEST(format_json_errors) {
  CHECK_THROWS(json_parse("{\"a\": 1,}", "cfg.json"), "cfg.json: invalid JSON");
  CHECK_THROWS(json_parse("[1 2]", "x"), "expected ',' or ']'");
  CHECK_THROWS(json_parse("\"\\ud83d\"", "x"), "unpaired high surrogate");
  CHECK_THROWS(json_parse("\"\\ude00\"", "x"), "unpaired low surrogate");
  CHECK_THROWS(json_parse("01", "x"), "leading zero");
  CHECK_THROWS(json_parse("{\"a\" 1}", "x"), "expected ':'");
  CHECK_THROWS(json_parse("\"abc", "x"), "unterminated string");
  CHECK_THROWS(json_parse("[1] x", "x"), "trailing characters");
  CHECK_THROWS(json_parse("", "x"), "unexpected end");
  CHECK_THROWS(json_parse("\"a\x01\"", "x"), "control character");
  CHECK_THROWS(json_parse("1.", "x"), "digit after '.'");
  CHECK_THROWS(json_parse("tru", "x"), "expected 'true'");
  std::string deep(600, '[');
  CHECK_THROWS(json_parse(deep, "x"), "nesting");
}
