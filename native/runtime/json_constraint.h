// Constrained decoding: the bytes a generation produces must spell one of a few literal prefixes (when given) and
// then exactly one JSON object (RFC 8259), after which generation ends. This is what the OpenAI API's
// response_format {"type": "json_object"} and a forced tool call (tool_choice naming a function: the prefix is the
// call's opening with the function name, the object its arguments) need.
//
// Tokens are byte strings (TokenBytes: the tokenizer's decoder run per id, from JS). Before each draw, every token
// whose bytes cannot continue the text accepted so far gets logit -inf; the state machine is a handful of bytes
// (trivially copyable), so testing a token is "copy the state, feed its bytes", with no allocation. The checks:
//   * structure: objects/arrays nest up to 64 deep (a bit per level says which), keys are strings, values are
//     strings, numbers (JSON grammar: no leading zeros, no bare ".5"), true / false / null, objects, arrays;
//   * strings: the escapes JSON allows (\" \\ \/ \b \f \n \r \t \uXXXX), no raw control bytes, and well-formed
//     UTF-8 (no overlongs, surrogates or code points past U+10FFFF), so the text always decodes;
//   * whitespace: none before the root '{', at most 32 bytes in a row after it, so a model cannot stall in an
//     endless run of newlines.
// Tokens with no bytes (special tokens, ids past the tokenizer) are never allowed; eos is not needed, because the
// generation stops as soon as the root object closes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>
#include "runtime/sampler.h"

namespace moe {

// The bytes of every token id: token i is data[offsets[i] .. offsets[i+1]); offsets has vocab+1 entries.
struct TokenBytes {
  std::vector<uint8_t> data;
  std::vector<uint32_t> offsets;
  int64_t size() const { return offsets.empty() ? 0 : int64_t(offsets.size()) - 1; }
  const uint8_t* begin(int64_t id) const { return data.data() + offsets[size_t(id)]; }
  const uint8_t* end(int64_t id) const { return data.data() + offsets[size_t(id) + 1]; }
};

class JsonConstraint final : public TokenConstraint {
 public:
  // one_of: literal byte strings, one of which must come first (at most 64; empty: the object comes first).
  // Throws std::invalid_argument on more than 64 or on an empty literal.
  JsonConstraint(std::shared_ptr<const TokenBytes> bytes, std::vector<std::string> one_of);

  bool allows(int32_t id) const override;
  void mask(float* logits, int64_t n) const override;
  void advance(int32_t id) override;
  bool done() const override { return s_.phase == Phase::Done; }

  // Byte-level access, for tests: feed bytes to the current state; false (and the state unchanged) if rejected.
  bool feed(const std::string& bytes);

 private:
  enum class Phase : uint8_t { Prefix, Json, Done };
  enum class Mode : uint8_t {
    Root,      // before the root '{'
    ObjOpen,   // after '{': a key or '}'
    ObjKey,    // after ',' in an object: a key
    Colon,     // after a key: ':'
    Value,     // after ':' or ',' in an array: a value
    ArrOpen,   // after '[': a value or ']'
    After,     // after a value: ',' or the closing bracket of the innermost container
    Str,       // inside a string
    NumMinus, NumZero, NumInt, NumDot, NumFrac, NumE, NumESign, NumExp,
    Lit,       // inside true / false / null
  };
  struct State {
    Phase phase;
    Mode mode;
    uint8_t depth;       // open containers
    uint8_t ws;          // whitespace bytes in a row
    uint8_t in_key;      // the string being read is a key
    uint8_t esc;         // 1: after '\'; 2..5: hex digits of \uXXXX still to come + 1
    uint8_t utf8_left;   // continuation bytes still to come
    uint8_t utf8_lo, utf8_hi;  // allowed range of the next continuation byte
    uint8_t lit, lit_i;  // which literal (0 true, 1 false, 2 null) and bytes of it matched
    uint16_t prefix_pos; // bytes of the one_of prefix matched
    uint64_t alive;      // one_of candidates still matching
    uint64_t kinds;      // bit d-1: the container at depth d is an object (1) or an array (0)
  };
  static_assert(std::is_trivially_copyable<State>::value, "the state is copied per candidate token");

  bool step(State& s, uint8_t b) const;
  bool step_json(State& s, uint8_t b) const;
  bool value_start(State& s, uint8_t b) const;
  bool close(State& s, bool object) const;
  bool accepts(State s, int32_t id) const;

  std::shared_ptr<const TokenBytes> bytes_;
  std::vector<std::string> one_of_;
  State s_{};
};

}  // namespace moe
