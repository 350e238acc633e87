// The public API: parse, render with a context, apply with the standard variables, copies.
#include <gtest/gtest.h>

#include "tokenizer/template/chat_template.h"

namespace fs {
namespace {

TEST(ChatTemplateApi, ApplyPassesStandardVariables) {
  Result<ChatTemplate> t = ChatTemplate::parse(
      "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m['content'] }};{% endfor %}"
      "{% if add_generation_prompt %}assistant:{% endif %}{{ eos_token }}");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  nlohmann::json messages = nlohmann::json::parse(R"([{"role":"user","content":"hi"}])");
  Result<std::string> out = t->apply(messages, true, "<s>", "</s>");
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(*out, "<s>user:hi;assistant:</s>");
  out = t->apply(messages, false, "", "");
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(*out, "user:hi;");
}

TEST(ChatTemplateApi, RenderSeesExtraKeywordArguments) {
  Result<ChatTemplate> t = ChatTemplate::parse(
      "{% if tools %}{{ tools | map(attribute='name') | join(',') }}{% endif %}"
      "{% if enable_thinking is defined and not enable_thinking %}/no_think{% endif %}");
  ASSERT_TRUE(t.is_ok());
  nlohmann::json context = {{"messages", nlohmann::json::array()},
                            {"tools", {{{"name", "a"}}, {{"name", "b"}}}},
                            {"enable_thinking", false}};
  Result<std::string> out = t->render(context);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(*out, "a,b/no_think");
}

TEST(ChatTemplateApi, CopiesShareTheParsedTemplate) {
  Result<ChatTemplate> t = ChatTemplate::parse("{{ 'x' ~ messages | length }}\n");
  ASSERT_TRUE(t.is_ok());
  ChatTemplate copy = *t;
  EXPECT_EQ(copy.source(), "{{ 'x' ~ messages | length }}\n");
  Result<std::string> a = t->apply(nlohmann::json::array({1, 2}), false, "", "");
  Result<std::string> b = copy.apply(nlohmann::json::array({1, 2}), false, "", "");
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_EQ(*a, "x2");
  EXPECT_EQ(*a, *b);
}

TEST(ChatTemplateApi, StrftimeNowUsesTheConfiguredClock) {
  Result<ChatTemplate> t = ChatTemplate::parse("{{ strftime_now('%Y') | int > 2000 }}");
  ASSERT_TRUE(t.is_ok());
  Result<std::string> out = t->render(nlohmann::json::object());
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(*out, "True");
  jinja::RenderOptions options;
  options.now_unix_s = 0;
  t->set_options(options);
  Result<ChatTemplate> year = ChatTemplate::parse("{{ strftime_now('%Y') }}");
  ASSERT_TRUE(year.is_ok());
  year->set_options(options);
  out = year->render(nlohmann::json::object());
  ASSERT_TRUE(out.is_ok());
  EXPECT_TRUE(*out == "1970" || *out == "1969") << *out;  // depends on the local time zone
}

TEST(ChatTemplateApi, EmptyTemplateRendersEmpty) {
  Result<ChatTemplate> t = ChatTemplate::parse("");
  ASSERT_TRUE(t.is_ok());
  Result<std::string> out = t->render(nlohmann::json::object());
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(*out, "");
}

}  // namespace
}  // namespace fs
