// A small strict JSON parser (RFC 8259): enough for config.json, safetensors headers and index files.
// Numbers keep their double value (and whether they were written as integers); strings are UTF-8 with \u
// escapes decoded, surrogate pairs included. Errors name the source (file) and the byte offset.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace moe {

struct Json {
  enum class Type : uint8_t { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool b = false;
  double num = 0;
  bool is_int = false;                     // written without fraction/exponent
  std::string str;
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;  // insertion order kept (safetensors headers are ordered)

  bool is_null() const { return type == Type::Null; }
  bool is_number() const { return type == Type::Number; }
  bool is_string() const { return type == Type::String; }
  bool is_array() const { return type == Type::Array; }
  bool is_object() const { return type == Type::Object; }
  bool is_bool() const { return type == Type::Bool; }
  // Object member lookup; nullptr when absent (or when this is not an object).
  const Json* find(std::string_view key) const;
  const Json& operator[](size_t i) const { return arr[i]; }
  size_t size() const { return type == Type::Array ? arr.size() : obj.size(); }
};

// Parse a whole document. `source` names the input in error messages, e.g. "config.json".
Json json_parse(std::string_view text, const std::string& source);
// Read a file and parse it; errors start with the path.
Json json_parse_file(const std::string& path);
std::string read_text_file(const std::string& path);

}  // namespace moe
