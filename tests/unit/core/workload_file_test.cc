#include "core/workload_file.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace fs {
namespace {

class WorkloadFileTest : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("fs_workload_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(WorkloadFileTest, ReadsTextRowsSkippingBlankLines) {
  auto rows = read_text_rows(
      write("a.jsonl", "{\"prompt\": \"hi\", \"output\": \"there\"}\n\r\n\n{\"prompt\": \"x\"}\n"), "dataset");
  ASSERT_TRUE(rows.is_ok()) << rows.status().to_string();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].prompt, "hi");
  EXPECT_EQ((*rows)[0].output, "there");
  EXPECT_EQ((*rows)[1].output, "");
}

TEST_F(WorkloadFileTest, ReadsLengthColumnsInAnyOrderWithCrlf) {
  auto rows = read_length_rows(
      write("a.csv", "id,output_tokens ,prompt_tokens\r\n1,5,7\r\n\r\n2,9,11\r\n"), "trace");
  ASSERT_TRUE(rows.is_ok()) << rows.status().to_string();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].prompt_tokens, 7);
  EXPECT_EQ((*rows)[0].output_tokens, 5);
  EXPECT_EQ((*rows)[1].prompt_tokens, 11);
}

TEST_F(WorkloadFileTest, ErrorsNameTheFileAndLine) {
  auto missing = read_text_rows((dir_ / "none.jsonl").string(), "dataset");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("dataset"), std::string::npos);

  auto bad = read_text_rows(write("b.jsonl", "{\"prompt\": \"ok\"}\n{\"prompt\": 3}\n"), "dataset");
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("b.jsonl:2"), std::string::npos) << bad.status().message();

  auto empty = read_text_rows(write("e.jsonl", "\n\n"), "dataset");
  EXPECT_EQ(empty.status().code(), StatusCode::kDataLoss);

  auto no_col = read_length_rows(write("c.csv", "prompt_tokens,x\n1,2\n"), "trace");
  EXPECT_EQ(no_col.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(no_col.status().message().find("header lacks"), std::string::npos);

  auto short_row = read_length_rows(write("d.csv", "prompt_tokens,output_tokens\n1,2\n3\n"), "trace");
  EXPECT_EQ(short_row.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(short_row.status().message().find("d.csv:3"), std::string::npos);

  auto header_only = read_length_rows(write("h.csv", "prompt_tokens,output_tokens\n"), "trace");
  EXPECT_EQ(header_only.status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace fs
