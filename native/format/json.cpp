#include "format/json.h"
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace moe {

const Json* Json::find(std::string_view key) const {
  if (type != Type::Object) return nullptr;
  for (auto& kv : obj) if (kv.first == key) return &kv.second;
  return nullptr;
}

namespace {

struct Parser {
  std::string_view s;
  size_t i = 0;
  const std::string& source;
  int depth = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(source + ": invalid JSON at byte " + std::to_string(i) + ": " + what);
  }
  void ws() { while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i; }
  bool eat(char c) { if (i < s.size() && s[i] == c) { ++i; return true; } return false; }
  void expect_word(const char* w) {
    for (const char* p = w; *p; ++p, ++i) if (i >= s.size() || s[i] != *p) fail(std::string("expected '") + w + "'");
  }

  Json value() {
    ws();
    if (i >= s.size()) fail("unexpected end of input");
    if (++depth > 512) fail("nesting deeper than 512");
    Json v;
    char c = s[i];
    if (c == '{') {
      v.type = Json::Type::Object; ++i; ws();
      if (!eat('}')) {
        for (;;) {
          ws();
          if (i >= s.size() || s[i] != '"') fail("expected a string key");
          std::string k = string();
          ws();
          if (!eat(':')) fail("expected ':'");
          v.obj.emplace_back(std::move(k), value());
          ws();
          if (eat(',')) continue;
          if (eat('}')) break;
          fail("expected ',' or '}'");
        }
      }
    } else if (c == '[') {
      v.type = Json::Type::Array; ++i; ws();
      if (!eat(']')) {
        for (;;) {
          v.arr.push_back(value());
          ws();
          if (eat(',')) continue;
          if (eat(']')) break;
          fail("expected ',' or ']'");
        }
      }
    } else if (c == '"') {
      v.type = Json::Type::String; v.str = string();
    } else if (c == 't') { expect_word("true"); v.type = Json::Type::Bool; v.b = true; }
    else if (c == 'f') { expect_word("false"); v.type = Json::Type::Bool; v.b = false; }
    else if (c == 'n') { expect_word("null"); }
    else if (c == '-' || (c >= '0' && c <= '9')) { number(v); }
    else if (c == 'N' || c == 'I') {
      // Python's json.dumps writes NaN/Infinity; accept them (configs occasionally contain them).
      if (s.substr(i, 3) == "NaN") { i += 3; v.type = Json::Type::Number; v.num = NAN; }
      else { expect_word("Infinity"); v.type = Json::Type::Number; v.num = INFINITY; }
    } else fail("unexpected character");  // the byte itself is not echoed: the input may be any file
    --depth;
    return v;
  }

  void number(Json& v) {
    size_t start = i;
    bool is_int = true;
    eat('-');
    if (s.substr(i, 8) == "Infinity") { i += 8; v.type = Json::Type::Number; v.num = -INFINITY; return; }
    if (i >= s.size() || !(s[i] >= '0' && s[i] <= '9')) fail("expected a digit");
    if (s[i] == '0') { ++i; if (i < s.size() && s[i] >= '0' && s[i] <= '9') fail("leading zero"); }
    else while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (eat('.')) {
      is_int = false;
      if (i >= s.size() || !(s[i] >= '0' && s[i] <= '9')) fail("expected a digit after '.'");
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      is_int = false; ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      if (i >= s.size() || !(s[i] >= '0' && s[i] <= '9')) fail("expected a digit in exponent");
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    }
    std::string tok(s.substr(start, i - start));
    v.type = Json::Type::Number;
    v.num = std::strtod(tok.c_str(), nullptr);
    v.is_int = is_int;
  }

  unsigned hex4() {
    if (i + 4 > s.size()) fail("truncated \\u escape");
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s[i++]; u <<= 4;
      if (c >= '0' && c <= '9') u |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') u |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') u |= unsigned(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return u;
  }
  static void utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) out += char(cp);
    else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) { out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
    else { out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
  }
  std::string string() {
    ++i;  // opening quote
    std::string out;
    for (;;) {
      if (i >= s.size()) fail("unterminated string");
      unsigned char c = (unsigned char)s[i++];
      if (c == '"') break;
      if (c < 0x20) fail("control character in string");
      if (c != '\\') { out += char(c); continue; }
      if (i >= s.size()) fail("unterminated escape");
      char e = s[i++];
      switch (e) {
        case '"': out += '"'; break; case '\\': out += '\\'; break; case '/': out += '/'; break;
        case 'b': out += '\b'; break; case 'f': out += '\f'; break; case 'n': out += '\n'; break;
        case 'r': out += '\r'; break; case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // high surrogate: a low one must follow
            if (i + 2 > s.size() || s[i] != '\\' || s[i + 1] != 'u') fail("unpaired high surrogate");
            i += 2;
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) fail("unpaired low surrogate");
          utf8(out, cp);
          break;
        }
        default: fail("bad escape in string");
      }
    }
    return out;
  }
};

}  // namespace

Json json_parse(std::string_view text, const std::string& source) {
  Parser p{text, 0, source};
  if (text.size() >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB && (unsigned char)text[2] == 0xBF) p.i = 3;
  Json v = p.value();
  p.ws();
  if (p.i != text.size()) p.fail("trailing characters after the value");
  return v;
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open");
  std::ostringstream ss; ss << f.rdbuf();
  return ss.str();
}

Json json_parse_file(const std::string& path) { return json_parse(read_text_file(path), path); }

}  // namespace moe
