// Hostile templates hit a limit and fail cleanly; rendering one template from many threads is safe.
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tokenizer/template/chat_template.h"

namespace fs {
namespace {

Status render_status(const std::string& source, jinja::RenderOptions options = {}) {
  Result<ChatTemplate> t = ChatTemplate::parse(source);
  if (!t.is_ok()) return t.status();
  t->set_options(options);
  Result<std::string> out = t->render(nlohmann::json::object());
  return out.status();
}

TEST(ChatTemplateLimits, LoopIterationsAreBounded) {
  jinja::RenderOptions options;
  options.max_loop_iterations = 10'000;
  Status s = render_status(
      "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}", options);
  EXPECT_EQ(s.message(), "template error at 1:30: more than 10000 loop iterations");
}

TEST(ChatTemplateLimits, ListsAreBounded) {
  Status s = render_status("{{ range(100000000) | length }}");
  EXPECT_EQ(s.message(), "template error at 1:9: range() too long");
  s = render_status("{{ [1] * 1000000000 }}");
  EXPECT_EQ(s.message(), "template error at 1:8: list longer than 65536 items");
}

TEST(ChatTemplateLimits, StringGrowthIsBounded) {
  Status s = render_status(
      "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}"
      "{% endfor %}");
  EXPECT_NE(s.message().find("string longer than 16777216 bytes"), std::string::npos)
      << s.message();
  s = render_status("{{ 'ab' * 100000000000 }}");
  EXPECT_NE(s.message().find("string longer than"), std::string::npos) << s.message();
}

TEST(ChatTemplateLimits, OutputIsBounded) {
  jinja::RenderOptions options;
  options.max_output_bytes = 1000;
  Status s = render_status("{% for i in range(1000) %}xxxxxxxxxx{% endfor %}", options);
  EXPECT_EQ(s.message(), "template error at 1:27: output exceeds 1000 bytes");
}

TEST(ChatTemplateLimits, MacroRecursionIsBounded) {
  Status s = render_status("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  EXPECT_NE(s.message().find("macro calls nested deeper than 32"), std::string::npos)
      << s.message();
}

TEST(ChatTemplateLimits, DeepNestingIsASyntaxErrorNotACrash) {
  for (const char* open_close : {"()", "[]"}) {
    std::string src = "{{ " + std::string(10'000, open_close[0]) + "1" +
                      std::string(10'000, open_close[1]) + " }}";
    Status s = ChatTemplate::parse(src).status();
    EXPECT_NE(s.message().find("nested too deeply"), std::string::npos) << s.message();
  }
  std::string chain = "{{ 1";
  for (int i = 0; i < 10'000; ++i) chain += " + 1";
  EXPECT_NE(ChatTemplate::parse(chain + " }}").status().message().find("nested too deeply"),
            std::string::npos);
  std::string filters = "{{ 'x'";
  for (int i = 0; i < 10'000; ++i) filters += " | trim";
  EXPECT_NE(ChatTemplate::parse(filters + " }}").status().message().find("nested too deeply"),
            std::string::npos);
  std::string nots = "{{ " + std::string(1000, ' ');
  for (int i = 0; i < 10'000; ++i) nots += "not ";
  EXPECT_NE(ChatTemplate::parse(nots + "1 }}").status().message().find("nested too deeply"),
            std::string::npos);
  std::string blocks;
  for (int i = 0; i < 10'000; ++i) blocks += "{% if true %}";
  EXPECT_NE(ChatTemplate::parse(blocks).status().message().find("nested too deeply"),
            std::string::npos);
}

TEST(ChatTemplateLimits, ValueNestingIsBounded) {
  Status s = render_status(
      "{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor "
      "%}");
  EXPECT_NE(s.message().find("value nested too deeply"), std::string::npos) << s.message();

  nlohmann::json deep = nlohmann::json::array();
  for (int i = 0; i < 1000; ++i) deep = nlohmann::json::array({deep});
  Result<ChatTemplate> t = ChatTemplate::parse("{{ messages | length }}");
  ASSERT_TRUE(t.is_ok());
  Result<std::string> out = t->apply(deep, false, "", "");
  ASSERT_FALSE(out.is_ok());
  EXPECT_EQ(out.status().message(), "chat template context nested deeper than 256");
}

TEST(ChatTemplateLimits, NamespaceCyclesDoNotLeak) {  // LeakSanitizer checks this in ASan builds
  Result<ChatTemplate> t = ChatTemplate::parse(
      "{% set ns = namespace(a=1) %}{% set ns.self = ns %}{% set ns.list = [ns] %}{{ ns.self.a }}");
  ASSERT_TRUE(t.is_ok());
  Result<std::string> out = t->render(nlohmann::json::object());
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(*out, "1");
}

TEST(ChatTemplateThreads, ConcurrentRendersOfOneTemplateAgree) {
  Result<ChatTemplate> t = ChatTemplate::parse(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
      "<|{{ m.role }}|>{{ m.content | trim }}{% endfor %}{{ ns.n }}");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  nlohmann::json messages = nlohmann::json::array();
  for (int i = 0; i < 50; ++i) {
    messages.push_back(
        {{"role", i % 2 ? "assistant" : "user"}, {"content", " m" + std::to_string(i)}});
  }
  Result<std::string> reference = t->apply(messages, true, "<s>", "</s>");
  ASSERT_TRUE(reference.is_ok());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int i = 0; i < 50; ++i) {
        Result<std::string> out = t->apply(messages, true, "<s>", "</s>");
        if (!out.is_ok() || *out != *reference) ++mismatches[k];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

}  // namespace
}  // namespace fs
