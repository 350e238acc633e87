// Byte-for-byte comparison with Python jinja2 as transformers configures it: the expected outputs
// come from scripts/make_template_fixtures.py (tests/fixtures/chat_templates/expected.json).
#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>

#include "tokenizer/template/chat_template.h"

namespace fs {
namespace {

const std::string kDir = std::string(FASTSERVE_FIXTURES_DIR) + "/chat_templates/";

nlohmann::json load_expected() {
  std::ifstream in(kDir + "expected.json");
  EXPECT_TRUE(in.good()) << "missing " << kDir << "expected.json";
  return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Checks one case: the same output, or an error where jinja2 raised (with raise_exception's
// message verbatim).
void check_case(const ChatTemplate& t, const nlohmann::json& c, const std::string& label) {
  Result<std::string> out = t.render(c["context"]);
  if (c.contains("output")) {
    ASSERT_TRUE(out.is_ok()) << label << ": " << out.status().to_string();
    EXPECT_EQ(*out, c["output"].get<std::string>()) << label;
    return;
  }
  ASSERT_FALSE(out.is_ok()) << label << ": expected error " << c["error"] << ", got output:\n"
                            << *out;
  if (c["error_kind"] == "raise_exception") {
    EXPECT_NE(out.status().message().find(c["error"].get<std::string>()), std::string::npos)
        << label << ": " << out.status().message();
  }
}

TEST(ChatTemplateFixtures, RealTemplatesMatchJinja2) {
  nlohmann::json expected = load_expected();
  ASSERT_TRUE(expected.is_object());
  std::map<std::string, ChatTemplate> parsed;
  size_t num_cases = 0;
  std::map<std::string, int> per_template;
  for (const auto& c : expected["templates"]) {
    std::string file = c["file"].get<std::string>();
    if (!parsed.count(file)) {
      Result<ChatTemplate> t = ChatTemplate::parse(read_file(kDir + file));
      ASSERT_TRUE(t.is_ok()) << file << ": " << t.status().to_string();
      jinja::RenderOptions options;
      options.now_unix_s = expected["now_unix_s"].get<int64_t>();
      t->set_options(options);
      parsed.emplace(file, std::move(t).value());
    }
    check_case(parsed.at(file), c,
               c["template"].get<std::string>() + " " + c["name"].get<std::string>());
    ++num_cases;
    ++per_template[c["template"].get<std::string>()];
  }
  EXPECT_GE(per_template.size(), 6u);
  EXPECT_GE(num_cases, 100u);
}

TEST(ChatTemplateFixtures, LanguageFeaturesMatchJinja2) {
  nlohmann::json expected = load_expected();
  ASSERT_TRUE(expected.is_object());
  for (const auto& c : expected["features"]) {
    std::string name = c["name"].get<std::string>();
    Result<ChatTemplate> t = ChatTemplate::parse(c["source"].get<std::string>());
    if (!t.is_ok()) {
      EXPECT_TRUE(c.contains("error")) << name << ": " << t.status().to_string();
      EXPECT_EQ(c.value("error_kind", ""), "syntax") << name << ": " << t.status().to_string();
      continue;
    }
    check_case(*t, c, name);
  }
}

// Dicts in the client's key order (a request as the server parses it, nlohmann::ordered_json):
// items(), `for k in d`, repr, tojson and real tool templates see that order, as with jinja2.
TEST(ChatTemplateFixtures, KeyOrderOfOrderedJsonMatchesJinja2) {
  std::ifstream in(kDir + "expected.json");
  ASSERT_TRUE(in.good());
  const nlohmann::ordered_json expected =
      nlohmann::ordered_json::parse(in, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(expected.is_object());
  ASSERT_GE(expected["key_order"].size(), 8u);
  for (const auto& c : expected["key_order"]) {
    const std::string name = c["name"].get<std::string>();
    Result<ChatTemplate> t = ChatTemplate::parse(
        c.contains("file") ? read_file(kDir + c["file"].get<std::string>()) : c["source"].get<std::string>());
    ASSERT_TRUE(t.is_ok()) << name << ": " << t.status().to_string();
    jinja::RenderOptions options;
    options.now_unix_s = expected["now_unix_s"].get<int64_t>();
    t->set_options(options);
    ASSERT_TRUE(c.contains("output")) << name;
    const std::string want = c["output"].get<std::string>();
    Result<std::string> out = t->render(c["context"]);
    ASSERT_TRUE(out.is_ok()) << name << ": " << out.status().to_string();
    EXPECT_EQ(*out, want) << name;
    // apply() with the messages alone keeps their order too (the server's path).
    if (c.contains("source")) {
      Result<std::string> applied =
          t->apply(c["context"]["messages"], true, c["context"]["bos_token"].get<std::string>(),
                   c["context"]["eos_token"].get<std::string>());
      ASSERT_TRUE(applied.is_ok()) << name;
      EXPECT_EQ(*applied, want) << name;
    }
    // The same context through nlohmann::json (keys sorted) renders differently, except where the
    // template sorts the keys itself: the check above is not vacuous.
    const nlohmann::json sorted = c["context"];
    Result<std::string> sorted_out = t->render(sorted);
    ASSERT_TRUE(sorted_out.is_ok()) << name;
    if (name != "dictsort") {
      EXPECT_NE(*sorted_out, want) << name;
    }
  }
}

}  // namespace
}  // namespace fs
