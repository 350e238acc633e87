// Every error path reports a Status naming the template position (line:column); none crashes.
#include <gtest/gtest.h>

#include "tokenizer/template/chat_template.h"

namespace fs {
namespace {

std::string parse_error(const std::string& source) {
  Result<ChatTemplate> t = ChatTemplate::parse(source);
  EXPECT_FALSE(t.is_ok()) << source;
  if (t.is_ok()) return "";
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  return t.status().message();
}

std::string render_error(const std::string& source,
                         nlohmann::json context = nlohmann::json::object()) {
  Result<ChatTemplate> t = ChatTemplate::parse(source);
  EXPECT_TRUE(t.is_ok()) << source << ": " << t.status().to_string();
  if (!t.is_ok()) return "";
  Result<std::string> out = t->render(context);
  EXPECT_FALSE(out.is_ok()) << source << " rendered " << *out;
  if (out.is_ok()) return "";
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  return out.status().message();
}

TEST(ChatTemplateSyntaxErrors, UnclosedBlockNamesEndOfTemplate) {
  EXPECT_EQ(parse_error("{% if x %}abc"),
            "template syntax error at 1:14: unexpected end of template, expected '{% endif %}'");
  EXPECT_EQ(parse_error("{% for m in messages %}\n{{ m }}"),
            "template syntax error at 2:8: unexpected end of template, expected '{% endfor %}'");
}

TEST(ChatTemplateSyntaxErrors, MissingExpression) {
  EXPECT_EQ(parse_error("hello\n{{ 1 + }}"),
            "template syntax error at 2:8: expected an expression, got '}}'");
}

TEST(ChatTemplateSyntaxErrors, UnknownStatement) {
  EXPECT_EQ(parse_error("ab\n  {% frobnicate %}"),
            "template syntax error at 2:6: unknown statement 'frobnicate'");
  EXPECT_EQ(parse_error("{% endif %}"), "template syntax error at 1:4: unknown statement 'endif'");
}

TEST(ChatTemplateSyntaxErrors, LexerErrors) {
  EXPECT_EQ(parse_error("{{ 'abc }}"), "template syntax error at 1:4: unterminated string");
  EXPECT_EQ(parse_error("ab{# x"), "template syntax error at 1:3: unterminated comment");
  EXPECT_EQ(parse_error("{{ a $ b }}"), "template syntax error at 1:6: unexpected character '$'");
  EXPECT_EQ(parse_error("x\n{{ a "), "template syntax error at 2:1: unterminated '{{'");
  EXPECT_EQ(parse_error("{% raw %}abc"), "template syntax error at 1:1: missing {% endraw %}");
  EXPECT_EQ(parse_error("{{ '\\x4' }}"),
            "template syntax error at 1:8: truncated \\x, \\u or \\U escape in string");
}

TEST(ChatTemplateSyntaxErrors, BadTokens) {
  EXPECT_EQ(parse_error("{{ 99999999999999999999 }}"),
            "template syntax error at 1:4: integer literal too large");
  EXPECT_EQ(parse_error("{% for in x %}{% endfor %}"),
            "template syntax error at 1:11: expected 'in', got name 'x'");
  EXPECT_EQ(parse_error("{{ x[] }}"), "template syntax error at 1:8: empty subscript");
  EXPECT_EQ(parse_error("{{ f(a=1, 2) }}"),
            "template syntax error at 1:11: positional argument after keyword argument");
  EXPECT_EQ(parse_error("{% for x in y recursive %}{% endfor %}"),
            "template syntax error at 1:15: recursive for loops are not supported");
  EXPECT_EQ(parse_error("{{ x }"), "template syntax error at 1:1: unterminated '{{'");
}

TEST(ChatTemplateRenderErrors, UnknownFilterAndTest) {
  EXPECT_EQ(render_error("\n  {{ x | nope }}"), "template error at 2:10: unknown filter 'nope'");
  EXPECT_EQ(render_error("{{ x is nope }}"), "template error at 1:6: unknown test 'nope'");
  EXPECT_EQ(render_error("{{ 1 is divisibleby }}"),
            "template error at 1:6: test 'divisibleby' needs an argument");
}

TEST(ChatTemplateRenderErrors, RaiseExceptionCarriesMessage) {
  EXPECT_EQ(
      render_error("{% if true %}\n  {{ raise_exception('Roles must alternate') }}{% endif %}"),
      "template error at 2:21: Roles must alternate");
}

TEST(ChatTemplateRenderErrors, UndefinedAccess) {
  EXPECT_EQ(render_error("{{ foo.bar }}"), "template error at 1:7: 'foo' is undefined");
  EXPECT_EQ(render_error("{{ m.content.strip() }}", {{"m", nlohmann::json::object()}}),
            "template error at 1:13: 'dict object' has no attribute 'content'");
  EXPECT_EQ(render_error("{{ foo() }}"), "template error at 1:4: 'foo' is undefined");
  EXPECT_EQ(render_error("{{ foo + 1 }}"), "template error at 1:8: 'foo' is undefined");
}

TEST(ChatTemplateRenderErrors, TypeErrors) {
  EXPECT_EQ(render_error("{{ 'a' + 1 }}"),
            "template error at 1:8: unsupported operand type(s) for +: 'str' and 'int'");
  EXPECT_EQ(render_error("{{ 1 < 'a' }}"),
            "template error at 1:4: '<' not supported between instances of 'int' and 'str'");
  EXPECT_EQ(render_error("{{ 1 in 'abc' }}"),
            "template error at 1:4: 'in <string>' requires string as left operand, not int");
  EXPECT_EQ(render_error("{% for x in 5 %}{% endfor %}"),
            "template error at 1:13: 'int' object is not iterable");
  EXPECT_EQ(render_error("{{ 5() }}"), "template error at 1:4: 'int' object is not callable");
  EXPECT_EQ(render_error("{{ 'a'.nope() }}"),
            "template error at 1:7: 'str' object has no attribute 'nope'");
  EXPECT_EQ(render_error("{{ [1].append(2) }}"),
            "template error at 1:7: 'list' object has no attribute 'append' (or calling it is not "
            "supported)");
  EXPECT_EQ(render_error("{{ {'a': 1} | tojson(indent='x') }}"),
            "template error at 1:15: tojson: indent must be an integer");
  EXPECT_EQ(render_error("{{ x | tojson }}"),
            "template error at 1:8: tojson: object of type undefined is not JSON serializable");
}

TEST(ChatTemplateRenderErrors, ArithmeticErrors) {
  EXPECT_EQ(render_error("{{ 1 // 0 }}"),
            "template error at 1:6: integer division or modulo by zero");
  EXPECT_EQ(render_error("{{ 1 / 0 }}"), "template error at 1:6: division by zero");
  EXPECT_EQ(render_error("{{ 9223372036854775807 + 1 }}"),
            "template error at 1:24: integer overflow");
  EXPECT_EQ(render_error("{{ 2 ** 64 }}"), "template error at 1:6: integer overflow");
  EXPECT_EQ(render_error("{{ [1, 2][::0] }}"), "template error at 1:10: slice step cannot be zero");
}

TEST(ChatTemplateRenderErrors, AssignmentErrors) {
  EXPECT_EQ(render_error("{% set x = 1 %}{% set x.y = 2 %}"),
            "template error at 1:19: cannot assign attribute on non-namespace object 'x'");
  EXPECT_EQ(render_error("{% set a, b = [1, 2, 3] %}"),
            "template error at 1:4: cannot unpack 3 values into 2 names");
  EXPECT_EQ(render_error("{% macro f(a) %}{% endmacro %}{{ f(1, 2) }}"),
            "template error at 1:35: macro 'f' takes 1 arguments, got 2");
  EXPECT_EQ(render_error("{% macro f(a) %}{% endmacro %}{{ f(b=1) }}"),
            "template error at 1:35: macro 'f' has no argument 'b'");
}

TEST(ChatTemplateRenderErrors, ContextMustBeObject) {
  Result<ChatTemplate> t = ChatTemplate::parse("x");
  ASSERT_TRUE(t.is_ok());
  Result<std::string> out = t->render(nlohmann::json::array());
  ASSERT_FALSE(out.is_ok());
  EXPECT_EQ(out.status().message(), "chat template context must be a JSON object");
}

}  // namespace
}  // namespace fs
