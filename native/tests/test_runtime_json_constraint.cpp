// The JSON-object constraint (runtime/json_constraint.h): byte-level acceptance against hand-written cases from
// RFC 8259 / RFC 3629, token masking, and a constrained greedy draw through the Sampler.
#include "tests/test.h"
#include <limits>
#include "runtime/json_constraint.h"

using namespace moe;
static const float NINF = -std::numeric_limits<float>::infinity();

// Token bytes from a list of strings (an empty string: a special token).
static std::shared_ptr<TokenBytes> tokens(const std::vector<std::string>& t) {
  auto tb = std::make_shared<TokenBytes>();
  tb->offsets.push_back(0);
  for (const auto& s : t) {
    tb->data.insert(tb->data.end(), s.begin(), s.end());
    tb->offsets.push_back(uint32_t(tb->data.size()));
  }
  return tb;
}

// Whole text accepted and complete?
static bool complete(const std::string& text, std::vector<std::string> one_of = {}) {
  JsonConstraint c(tokens({"x"}), std::move(one_of));
  return c.feed(text) && c.done();
}
// Accepted as a prefix (maybe incomplete)?
static bool prefix(const std::string& text, std::vector<std::string> one_of = {}) {
  JsonConstraint c(tokens({"x"}), std::move(one_of));
  return c.feed(text);
}

TEST(runtime_json_constraint_accepts_objects) {
  CHECK(complete("{}"));
  CHECK(complete("{ \n}"));
  CHECK(!prefix(" {}"));             // the reply starts with the object itself
  CHECK(complete(R"({"a": 1, "b": [true, false, null], "c": {"d": -0.5e+10, "e": ""}})"));
  CHECK(complete(R"({"s": "tab\t \"q\" \\ \/ \u00e9 \uD83D\uDE00"})"));
  CHECK(complete("{\"k\": \"\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80\"}"));  // 你好 😀
  CHECK(complete(R"({"n": [0, 10, 1.25, 3E2, 4e-1, -7]})"));
  CHECK(complete(R"({"a":[[[]],{}]})"));
}

TEST(runtime_json_constraint_rejects_what_json_does_not_allow) {
  CHECK(!prefix("["));               // the root is an object
  CHECK(!prefix("x"));
  CHECK(!prefix("{a"));              // keys are strings
  CHECK(!prefix("{'a'"));
  CHECK(!prefix(R"({"a" 1)"));       // missing colon
  CHECK(!prefix(R"({"a": 01)"));     // leading zero
  CHECK(!prefix(R"({"a": .5)"));
  CHECK(prefix(R"({"a": 1.)"));      // "1." is a valid prefix (a digit may follow) ...
  CHECK(!prefix(R"({"a": 1.})"));    // ... but not followed by '}'
  CHECK(!prefix(R"({"a": 1e})"));
  CHECK(!prefix(R"({"a": +1)"));
  CHECK(!prefix(R"({"a": tru })"));
  CHECK(!prefix(R"({"a": True)"));
  CHECK(!prefix(R"({"a": 1,})"));    // trailing comma
  CHECK(!prefix(R"({"a": [1,]})"));
  CHECK(!prefix(R"({"a": [1})"));    // mismatched bracket
  CHECK(!prefix(R"({"a": "\x"})"));  // unknown escape
  CHECK(!prefix(R"({"a": "\u12G4"})"));
  CHECK(!prefix("{\"a\": \"\x01\"}"));  // raw control byte
  CHECK(!prefix("{} "));              // nothing after the root
  CHECK(!prefix("{}{}"));
  CHECK(!complete(R"({"a": 1)"));     // a prefix, not complete
  CHECK(prefix(R"({"a": 1)"));
}

TEST(runtime_json_constraint_utf8_is_well_formed) {
  CHECK(!prefix("{\"\xC0\xAF"));          // overlong '/'
  CHECK(!prefix("{\"\xE0\x80\xAF"));      // overlong 3-byte
  CHECK(!prefix("{\"\xED\xA0\x80"));      // UTF-16 surrogate
  CHECK(!prefix("{\"\xF4\x90\x80\x80"));  // past U+10FFFF
  CHECK(!prefix("{\"\xF5"));
  CHECK(!prefix("{\"\x80"));              // a continuation byte with no lead
  CHECK(!prefix("{\"\xE4\xBD\""));        // a character cut short
  CHECK(prefix("{\"\xE4\xBD"));           // ... but a prefix of one is fine (the next token completes it)
  CHECK(complete("{\"\xF4\x8F\xBF\xBF\": 1}"));  // U+10FFFF itself
}

TEST(runtime_json_constraint_depth_and_whitespace_limits) {
  std::string deep = "{\"a\":";
  for (int i = 0; i < 63; ++i) deep += "[";
  CHECK(prefix(deep));                   // 64 open containers
  CHECK(!prefix(deep + "["));            // the 65th is refused
  std::string ws(32, ' ');
  CHECK(prefix("{" + ws));
  CHECK(!prefix("{" + ws + " "));
  CHECK(complete("{" + ws + "\"a\"" + ws + ":" + ws + "1" + ws + "}"));  // each run counts on its own
  CHECK(complete("{\"a\": \"" + std::string(100, ' ') + "\"}"));          // spaces inside a string are not whitespace
}

TEST(runtime_json_constraint_one_of_prefixes) {
  const std::vector<std::string> names = {"get_weather\", \"arguments\": ", "get\", \"arguments\": "};
  CHECK(complete("get_weather\", \"arguments\": {\"city\": \"Paris\"}", names));
  CHECK(complete("get\", \"arguments\": {}", names));
  CHECK(!prefix("got", names));
  CHECK(!prefix("get_weather\", \"arguments\": [", names));
  CHECK(!prefix("{}", names));  // the prefix comes first
  CHECK_THROWS(JsonConstraint(tokens({"x"}), std::vector<std::string>(65, "a")), "more than 64");
  CHECK_THROWS(JsonConstraint(tokens({"x"}), {""}), "empty string");
}

TEST(runtime_json_constraint_masks_tokens) {
  // 0 special, 1 "{", 2 "{\"", 3 "}", 4 "\"a\"", 5 ":", 6 " 1", 7 "}}", 8 "x", 9 "\": 1}"
  auto tb = tokens({"", "{", "{\"", "}", "\"a\"", ":", " 1", "}}", "x", "\": 1}"});
  JsonConstraint c(tb, {});
  float l[10];
  for (float& v : l) v = 0.0f;
  c.mask(l, 10);
  CHECK(l[0] == NINF && l[1] == 0 && l[2] == 0 && l[3] == NINF && l[4] == NINF && l[8] == NINF);
  c.advance(1);  // {
  CHECK(c.allows(4) && c.allows(3) && !c.allows(5) && !c.allows(7));
  c.advance(4); c.advance(5); c.advance(6);
  CHECK(!c.done() && c.allows(3) && !c.allows(7));  // "}}" would close past the root
  c.advance(3);
  CHECK(c.done() && !c.allows(3) && !c.allows(1));
  CHECK_THROWS(c.advance(1), "does not allow");
  CHECK(!c.allows(-1) && !c.allows(10));
}

TEST(runtime_json_constraint_in_the_sampler) {
  auto tb = tokens({"", "{", "}", "x", "\"k\":", "0"});
  // Greedy prefers "x", then the special token: the constraint picks the best allowed one.
  Sampler s(6); Rng rng(0); SamplingParams p;
  JsonConstraint c(tb, {});
  float l[6] = {5, 1, 0.5f, 9, 0.2f, 0};
  CHECK(s.sample(l, p, nullptr, 0, rng, nullptr, 0, &c) == 1);
  c.advance(1);
  float m[6] = {5, 1, 0.5f, 9, 0.2f, 0};
  CHECK(s.sample(m, p, nullptr, 0, rng, nullptr, 0, &c) == 2);  // "{" is not allowed again; "}" beats "\"k\":"
  // Sampling: only allowed ids are ever drawn.
  p.temperature = 1.0f;
  for (int i = 0; i < 50; ++i) {
    JsonConstraint d(tb, {}); d.advance(1);
    float v[6] = {5, 1, 0.5f, 9, 0.2f, 0};
    const int id = s.sample(v, p, nullptr, 0, rng, nullptr, 0, &d);
    CHECK(id == 2 || id == 4);
  }
  // Nothing allowed: -1, greedy and sampled.
  JsonConstraint e(tb, {}); e.advance(1); e.advance(2);
  float w[6] = {5, 1, 0.5f, 9, 0.2f, 0};
  CHECK(s.sample(w, p, nullptr, 0, rng, nullptr, 0, &e) == -1);
  p.temperature = 0;
  float x[6] = {5, 1, 0.5f, 9, 0.2f, 0};
  CHECK(s.sample(x, p, nullptr, 0, rng, nullptr, 0, &e) == -1);
}
