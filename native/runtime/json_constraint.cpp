#include "runtime/json_constraint.h"
#include <limits>
#include <stdexcept>

namespace moe {

static const float NEG_INF = -std::numeric_limits<float>::infinity();
static const char* const LITERALS[3] = {"true", "false", "null"};
static const uint8_t LITERAL_LEN[3] = {4, 5, 4};
static constexpr int MAX_DEPTH = 64, MAX_WS_RUN = 32, MAX_ONE_OF = 64;

JsonConstraint::JsonConstraint(std::shared_ptr<const TokenBytes> bytes, std::vector<std::string> one_of)
    : bytes_(std::move(bytes)), one_of_(std::move(one_of)) {
  if (!bytes_) throw std::invalid_argument("the constraint needs the token bytes");
  if (one_of_.size() > size_t(MAX_ONE_OF)) throw std::invalid_argument("constraint.oneOf has more than 64 entries");
  for (const auto& s : one_of_) {
    if (s.empty()) throw std::invalid_argument("constraint.oneOf has an empty string");
    if (s.size() > 65535) throw std::invalid_argument("constraint.oneOf has a string longer than 65535 bytes");
  }
  s_.phase = one_of_.empty() ? Phase::Json : Phase::Prefix;
  s_.mode = Mode::Root;
  s_.alive = one_of_.size() == 64 ? ~uint64_t(0) : (uint64_t(1) << one_of_.size()) - 1;
}

static inline bool is_ws(uint8_t b) { return b == ' ' || b == '\t' || b == '\n' || b == '\r'; }
static inline bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }
static inline bool is_hex(uint8_t b) { return is_digit(b) || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F'); }

bool JsonConstraint::step(State& s, uint8_t b) const {
  switch (s.phase) {
    case Phase::Done: return false;
    case Phase::Json: return step_json(s, b);
    case Phase::Prefix: {
      // Keep the candidates whose next byte is b; the first one spelled in full starts the JSON.
      uint64_t alive = 0;
      bool complete = false;
      for (size_t k = 0; k < one_of_.size(); ++k) {
        if (!((s.alive >> k) & 1)) continue;
        const std::string& c = one_of_[k];
        if (s.prefix_pos < c.size() && uint8_t(c[s.prefix_pos]) == b) {
          alive |= uint64_t(1) << k;
          if (s.prefix_pos + 1u == c.size()) complete = true;
        }
      }
      if (!alive) return false;
      s.alive = alive;
      s.prefix_pos++;
      if (complete) s.phase = Phase::Json;
      return true;
    }
  }
  return false;
}

// Leaving a container: the bracket must match the innermost one; closing the root ends the constraint.
bool JsonConstraint::close(State& s, bool object) const {
  if (s.depth == 0 || bool((s.kinds >> (s.depth - 1)) & 1) != object) return false;
  s.kinds &= ~(uint64_t(1) << (s.depth - 1));
  s.depth--;
  if (s.depth == 0) s.phase = Phase::Done;
  else s.mode = Mode::After;
  return true;
}

bool JsonConstraint::value_start(State& s, uint8_t b) const {
  switch (b) {
    case '{': case '[':
      if (s.depth >= MAX_DEPTH) return false;
      if (b == '{') s.kinds |= uint64_t(1) << s.depth;
      s.depth++;
      s.mode = b == '{' ? Mode::ObjOpen : Mode::ArrOpen;
      return true;
    case '"': s.mode = Mode::Str; s.in_key = 0; return true;
    case '-': s.mode = Mode::NumMinus; return true;
    case '0': s.mode = Mode::NumZero; return true;
    case 't': case 'f': case 'n':
      s.mode = Mode::Lit; s.lit = b == 't' ? 0 : b == 'f' ? 1 : 2; s.lit_i = 1; return true;
    default:
      if (b >= '1' && b <= '9') { s.mode = Mode::NumInt; return true; }
      return false;
  }
}

bool JsonConstraint::step_json(State& s, uint8_t b) const {
  switch (s.mode) {
    case Mode::Str: {
      if (s.utf8_left) {
        if (b < s.utf8_lo || b > s.utf8_hi) return false;
        s.utf8_left--; s.utf8_lo = 0x80; s.utf8_hi = 0xBF;
        return true;
      }
      if (s.esc == 1) {
        if (b == 'u') { s.esc = 5; return true; }
        if (b == '"' || b == '\\' || b == '/' || b == 'b' || b == 'f' || b == 'n' || b == 'r' || b == 't') { s.esc = 0; return true; }
        return false;
      }
      if (s.esc > 1) {
        if (!is_hex(b)) return false;
        s.esc = s.esc == 2 ? 0 : uint8_t(s.esc - 1);
        return true;
      }
      if (b == '"') { s.mode = s.in_key ? Mode::Colon : Mode::After; s.ws = 0; return true; }
      if (b == '\\') { s.esc = 1; return true; }
      if (b < 0x20) return false;
      if (b < 0x80) return true;
      // UTF-8 lead bytes (RFC 3629 table): the range of the first continuation byte rules out overlongs,
      // surrogates (ED A0..BF) and code points past U+10FFFF.
      s.utf8_lo = 0x80; s.utf8_hi = 0xBF;
      if (b >= 0xC2 && b <= 0xDF) s.utf8_left = 1;
      else if (b == 0xE0) { s.utf8_left = 2; s.utf8_lo = 0xA0; }
      else if (b == 0xED) { s.utf8_left = 2; s.utf8_hi = 0x9F; }
      else if (b >= 0xE1 && b <= 0xEF) s.utf8_left = 2;
      else if (b == 0xF0) { s.utf8_left = 3; s.utf8_lo = 0x90; }
      else if (b >= 0xF1 && b <= 0xF3) s.utf8_left = 3;
      else if (b == 0xF4) { s.utf8_left = 3; s.utf8_hi = 0x8F; }
      else return false;
      return true;
    }
    case Mode::Lit:
      if (uint8_t(LITERALS[s.lit][s.lit_i]) != b) return false;
      if (++s.lit_i == LITERAL_LEN[s.lit]) { s.mode = Mode::After; s.ws = 0; }
      return true;
    case Mode::NumMinus:
      if (b == '0') { s.mode = Mode::NumZero; return true; }
      if (b >= '1' && b <= '9') { s.mode = Mode::NumInt; return true; }
      return false;
    case Mode::NumDot:
      if (is_digit(b)) { s.mode = Mode::NumFrac; return true; }
      return false;
    case Mode::NumE:
      if (b == '+' || b == '-') { s.mode = Mode::NumESign; return true; }
      if (is_digit(b)) { s.mode = Mode::NumExp; return true; }
      return false;
    case Mode::NumESign:
      if (is_digit(b)) { s.mode = Mode::NumExp; return true; }
      return false;
    case Mode::NumZero: case Mode::NumInt: case Mode::NumFrac: case Mode::NumExp:
      if (is_digit(b) && s.mode != Mode::NumZero) return true;
      if (b == '.' && (s.mode == Mode::NumZero || s.mode == Mode::NumInt)) { s.mode = Mode::NumDot; return true; }
      if ((b == 'e' || b == 'E') && s.mode != Mode::NumExp) { s.mode = Mode::NumE; return true; }
      // Any other byte ends the number (a number has no closing mark) and is read as what follows a value.
      s.mode = Mode::After; s.ws = 0;
      return step_json(s, b);
    default: break;
  }
  // The structural modes, where whitespace may come between tokens (not before the root: the reply starts with '{').
  if (is_ws(b) && s.mode != Mode::Root) {
    if (s.ws >= MAX_WS_RUN) return false;
    s.ws++;
    return true;
  }
  s.ws = 0;
  switch (s.mode) {
    case Mode::Root:
      if (b != '{') return false;
      return value_start(s, b);
    case Mode::ObjOpen:
      if (b == '}') return close(s, true);
      [[fallthrough]];
    case Mode::ObjKey:
      if (b != '"') return false;
      s.mode = Mode::Str; s.in_key = 1;
      return true;
    case Mode::Colon:
      if (b != ':') return false;
      s.mode = Mode::Value;
      return true;
    case Mode::ArrOpen:
      if (b == ']') return close(s, false);
      [[fallthrough]];
    case Mode::Value:
      return value_start(s, b);
    case Mode::After:
      if (b == ',') { s.mode = ((s.kinds >> (s.depth - 1)) & 1) ? Mode::ObjKey : Mode::Value; return true; }
      if (b == '}') return close(s, true);
      if (b == ']') return close(s, false);
      return false;
    default: return false;
  }
}

bool JsonConstraint::accepts(State s, int32_t id) const {
  if (id < 0 || id >= bytes_->size()) return false;
  const uint8_t* p = bytes_->begin(id);
  const uint8_t* e = bytes_->end(id);
  if (p == e) return false;  // special tokens and ids with no text
  for (; p != e; ++p)
    if (!step(s, *p)) return false;
  return true;
}

bool JsonConstraint::allows(int32_t id) const { return accepts(s_, id); }

void JsonConstraint::mask(float* logits, int64_t n) const {
  for (int64_t i = 0; i < n; ++i)
    if (logits[i] != NEG_INF && !accepts(s_, int32_t(i))) logits[i] = NEG_INF;
}

void JsonConstraint::advance(int32_t id) {
  State s = s_;
  if (id >= 0 && id < bytes_->size())
    for (const uint8_t* p = bytes_->begin(id); p != bytes_->end(id); ++p)
      if (!step(s, *p)) throw std::logic_error("the constraint was advanced with a token it does not allow");
  s_ = s;
}

bool JsonConstraint::feed(const std::string& bytes) {
  State s = s_;
  for (char c : bytes)
    if (!step(s, uint8_t(c))) return false;
  s_ = s;
  return true;
}

}  // namespace moe
