#include <gtest/gtest.h>

#include "tokenizer/template/chat_template.h"

TEST(ChatTemplateSmoke, RendersLoop) {
  auto t = fs::ChatTemplate::parse(
      "{% for m in messages %}{{ m.role }}:{{ m['content'] }};{% endfor %}");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  auto out = t->apply(nlohmann::json::parse(R"([{"role":"user","content":"hi"}])"), false, "", "");
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(*out, "user:hi;");
}
