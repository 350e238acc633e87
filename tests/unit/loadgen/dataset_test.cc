#include "loadgen/dataset.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "tokenizer/tokenizer.h"

namespace fs::loadgen {
namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const auto path =
      std::filesystem::temp_directory_path() / (std::to_string(::getpid()) + "_loadgen_" + name);
  std::ofstream(path) << text;
  return path.string();
}

std::string small_jsonl() {
  std::string text;
  for (int i = 0; i < 20; ++i) {
    // prompt of 4 * (i + 1) chars, output of 8 * (i + 1) chars
    text += R"({"prompt": ")" + std::string(4 * (i + 1), 'a' + i) + R"(", "output": ")" +
            std::string(8 * (i + 1), 'z') + "\"}\n";
  }
  text += R"({"prompt": "empty output", "output": ""})"
          "\n";
  return text;
}

TEST(Dataset, SamplesTextWithoutReplacementDeterministically) {
  DatasetOptions o;
  o.name = write_temp("a.jsonl", small_jsonl());
  o.num_prompts = 20;
  o.seed = 5;
  auto a = sample_requests(o, nullptr);
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  ASSERT_EQ(a->size(), 20u);
  std::set<std::string> prompts;
  for (const BenchRequest& r : *a) {
    prompts.insert(r.prompt);
    EXPECT_EQ(r.num_prompt_tokens * 4, static_cast<int32_t>(r.prompt.size()));  // ceil(chars/4)
    EXPECT_EQ(r.num_output_tokens, 2 * r.num_prompt_tokens);
  }
  EXPECT_EQ(prompts.size(), 20u);  // all distinct; the empty-output record never drawn
  auto b = sample_requests(o, nullptr);
  ASSERT_TRUE(b.is_ok());
  for (size_t i = 0; i < a->size(); ++i) EXPECT_EQ((*a)[i].prompt, (*b)[i].prompt);
  o.seed = 6;
  auto c = sample_requests(o, nullptr);
  ASSERT_TRUE(c.is_ok());
  bool differs = false;
  for (size_t i = 0; i < a->size(); ++i) differs |= (*a)[i].prompt != (*c)[i].prompt;
  EXPECT_TRUE(differs);
}

TEST(Dataset, DrawsAgainWhenMorePromptsThanRecordsAndCapsOutput) {
  DatasetOptions o;
  o.name = write_temp("b.jsonl", small_jsonl());
  o.num_prompts = 45;
  o.max_output_len = 10;
  auto r = sample_requests(o, nullptr);
  ASSERT_TRUE(r.is_ok());
  ASSERT_EQ(r->size(), 45u);
  for (const BenchRequest& q : *r) EXPECT_LE(q.num_output_tokens, 10);
}

TEST(Dataset, LengthTraceSynthesizesPromptsOfTheTracedLength) {
  DatasetOptions o;
  o.name = write_temp("c_lengths.csv",
                      "arrival_time_s,prompt_tokens,output_tokens\n0,12,5\n1,30,7\n"
                      "2,0,3\n3,9,0\n");
  o.num_prompts = 10;
  auto r = sample_requests(o, nullptr);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 10u);
  for (const BenchRequest& q : *r) {
    ASSERT_TRUE(q.num_prompt_tokens == 12 || q.num_prompt_tokens == 30) << q.num_prompt_tokens;
    EXPECT_EQ(q.num_output_tokens, q.num_prompt_tokens == 12 ? 5 : 7);
    EXPECT_EQ(static_cast<int32_t>(q.prompt.size()), 4 * q.num_prompt_tokens);
  }
}

TEST(Dataset, RandomDatasetHonorsLengthsAndRange) {
  DatasetOptions o;
  o.name = "random";
  o.num_prompts = 50;
  o.random_input_len = 40;
  o.random_output_len = 10;
  o.random_range_ratio = 0.5;
  auto r = sample_requests(o, nullptr);
  ASSERT_TRUE(r.is_ok());
  std::set<std::string> prompts;
  for (const BenchRequest& q : *r) {
    EXPECT_GE(q.num_prompt_tokens, 20);
    EXPECT_LE(q.num_prompt_tokens, 60);
    EXPECT_GE(q.num_output_tokens, 5);
    EXPECT_LE(q.num_output_tokens, 15);
    prompts.insert(q.prompt.substr(0, 40));
  }
  EXPECT_GT(prompts.size(), 45u);  // distinct prefixes: no shared-prefix caching
}

TEST(Dataset, SynthesizedPromptIsExactWithATokenizer) {
  auto tok = Tokenizer::load(std::string(FASTSERVE_FIXTURES_DIR) + "/tokenizer/smollm2-vocab.gguf");
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  for (int32_t n : {1, 7, 100, 513}) {
    const std::string p = synthesize_prompt(n, 99 + n, tok->get());
    EXPECT_EQ(count_tokens(tok->get(), p), n);
  }
}

TEST(Dataset, ErrorsNameTheFile) {
  DatasetOptions o;
  o.name = "/nonexistent/x.jsonl";
  auto r = sample_requests(o, nullptr);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("/nonexistent/x.jsonl"), std::string::npos);
  o.name = write_temp("bad.jsonl", "{\"prompt\": 3}\n");
  r = sample_requests(o, nullptr);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  o.name = write_temp("nooutput.jsonl", R"({"prompt": "x", "output": ""})"
                                        "\n");
  r = sample_requests(o, nullptr);
  EXPECT_FALSE(r.is_ok());  // no record passes: reported, not an endless loop
}

TEST(Dataset, SharedDatasetsLoadWhenPresent) {
  DatasetOptions o;
  o.datasets_dir = std::string(FASTSERVE_SOURCE_DIR) + "/../shared/datasets";
  if (!std::filesystem::exists(o.datasets_dir + "/sharegpt.jsonl")) GTEST_SKIP();
  o.name = "sharegpt";
  o.num_prompts = 100;
  auto r = sample_requests(o, nullptr);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  for (const BenchRequest& q : *r) {  // vLLM's ShareGPT filter
    EXPECT_GE(q.num_prompt_tokens, 4);
    EXPECT_LE(q.num_prompt_tokens, 1024);
    EXPECT_LE(q.num_prompt_tokens + q.num_output_tokens, 2048);
  }
}

}  // namespace
}  // namespace fs::loadgen
