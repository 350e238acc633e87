// libFuzzer target: parse arbitrary bytes as a chat template and render it over a fixed
// conversation. Any input must give a value or a Status, never a crash, hang or huge allocation.
// Build: clang++ -std=c++20 -fsanitize=fuzzer,address,undefined -Isrc
// tests/fuzz/chat_template_fuzz.cc
//        src/tokenizer/template/*.cc src/core/*.cc -lfmt
#include <cstddef>
#include <cstdint>
#include <string>

#include "tokenizer/template/chat_template.h"

namespace {

const nlohmann::json& fuzz_context() {
  static const nlohmann::json context = [] {
    nlohmann::json c = nlohmann::json::object();
    c["messages"] = nlohmann::json::array({
        {{"role", "system"}, {"content", "You are helpful."}},
        {{"role", "user"}, {"content", "Hi \xc3\xa9 \xf0\x9f\x8c\x8d"}},
        {{"role", "assistant"},
         {"content", "<think>x</think>Hello"},
         {"tool_calls",
          nlohmann::json::array(
              {{{"type", "function"}, {"function", {{"name", "f"}, {"arguments", {{"a", 1}}}}}}})}},
        {{"role", "tool"}, {"content", "{\"ok\": true}"}},
        {{"role", "user"}, {"content", ""}},
    });
    c["tools"] = nlohmann::json::array(
        {{{"type", "function"},
          {"function", {{"name", "f"}, {"parameters", {{"type", "object"}}}}}}});
    c["add_generation_prompt"] = true;
    c["bos_token"] = "<s>";
    c["eos_token"] = "</s>";
    return c;
  }();
  return context;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fs::Result<fs::ChatTemplate> t =
      fs::ChatTemplate::parse(std::string(reinterpret_cast<const char*>(data), size));
  if (!t.is_ok()) return 0;
  fs::jinja::RenderOptions options;
  options.max_output_bytes = 1 << 20;
  options.max_loop_iterations = 100'000;
  options.max_list_items = 10'000;
  t->set_options(options);
  fs::Result<std::string> out = t->render(fuzz_context());
  (void)out;
  return 0;
}
