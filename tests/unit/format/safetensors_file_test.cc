#include "model/format/safetensors_file.h"

#include <gtest/gtest.h>

#include <random>

#include <nlohmann/json.hpp>

#include "model/format/hf_checkpoint.h"
#include "test_files.h"

namespace fs {
namespace {

// Header text + data -> file bytes (header padded with spaces to a multiple of 8, as the reference
// writer does).
std::string safetensors_bytes(std::string header, const std::string& data) {
  while ((header.size() + 8) % 8 != 0) header += ' ';
  testing_util::Bytes b;
  b.put<uint64_t>(header.size());
  return b.s + header + data;
}

// F32 [2, 3] "w", BF16 [4] "b", I64 [2] "ids", metadata.
std::string valid_file() {
  nlohmann::json h;
  h["__metadata__"] = {{"format", "pt"}};
  h["w"] = {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}};
  h["b"] = {{"dtype", "BF16"}, {"shape", {4}}, {"data_offsets", {24, 32}}};
  h["ids"] = {{"dtype", "I64"}, {"shape", {2}}, {"data_offsets", {32, 48}}};
  std::string data(48, '\0');
  for (int i = 0; i < 6; ++i) {
    const float v = static_cast<float>(i + 1);
    std::memcpy(&data[static_cast<size_t>(i) * 4], &v, 4);
  }
  return safetensors_bytes(h.dump(), data);
}

class SafetensorsFileTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing_util::make_temp_dir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& bytes, const std::string& name = "m.safetensors") {
    const std::string path = dir_ + "/" + name;
    testing_util::write_file(path, bytes);
    return path;
  }
  void expect_error(const std::string& bytes, const std::string& what) {
    const std::string path = write(bytes);
    auto r = SafetensorsFile::open(path);
    ASSERT_FALSE(r.is_ok()) << "expected an error containing '" << what << "'";
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().to_string();
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().to_string();
    EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status().to_string();
  }
  std::string dir_;
};

TEST_F(SafetensorsFileTest, ParsesTensorsAndMetadata) {
  auto r = SafetensorsFile::open(write(valid_file()));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const SafetensorsFile& f = **r;
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const SafetensorsTensor* w = f.find_tensor("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::kF32);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w->nbytes, 24u);
  float last;
  std::memcpy(&last, w->data + 20, 4);
  EXPECT_EQ(last, 6.0f);
  EXPECT_EQ(f.find_tensor("b")->dtype, DType::kBF16);
  const SafetensorsTensor* ids = f.find_tensor("ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_FALSE(ids->dtype.has_value());  // listed, unusable
  EXPECT_EQ(ids->dtype_name, "I64");
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
}

TEST_F(SafetensorsFileTest, EveryTruncationIsAnError) {
  const std::string bytes = valid_file();
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string path = write(bytes.substr(0, n));
    auto r = SafetensorsFile::open(path);
    ASSERT_FALSE(r.is_ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().to_string();
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().to_string();
  }
}

TEST_F(SafetensorsFileTest, RejectsMalformedHeaders) {
  expect_error(safetensors_bytes("{\"w\": {\"dtype\": \"F32\", \"sha", ""), "not a JSON object");
  expect_error(safetensors_bytes("\x01\x02garbage\xff", ""), "not a JSON object");
  expect_error(safetensors_bytes("[1, 2]", ""), "not a JSON object");
  testing_util::Bytes huge;
  huge.put<uint64_t>(uint64_t{1} << 60);
  expect_error(huge.s + "{}", "header length");
  expect_error(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                                 std::string(4, '\0')),
               "outside the data section");
  expect_error(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})",
                                 std::string(8, '\0')),
               "outside the data section");
  expect_error(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
                                 std::string(8, '\0')),
               "8 bytes for 3 elements");
  expect_error(safetensors_bytes(R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", ""), "dtype");
  expect_error(
      safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})",
                        std::string(8, '\0')),
      "non-negative");
  expect_error(
      safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", ""),
      "data_offsets");
  expect_error(safetensors_bytes(R"({"w": 3})", ""), "not an object");
  expect_error(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                            "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                                 std::string(8, '\0')),
               "duplicate tensor 'w'");
  expect_error(
      safetensors_bytes(
          R"({"w": {"dtype": "F32", "shape": [1125899906842624, 1125899906842624], "data_offsets": [0, 8]}})",
          std::string(8, '\0')),
      "absurd");
}

TEST_F(SafetensorsFileTest, RandomCorruptionNeverCrashes) {
  const std::string bytes = valid_file();
  std::mt19937 rng(4321);
  for (int iter = 0; iter < 400; ++iter) {
    std::string corrupt = bytes;
    const int num_flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < num_flips; ++i) {
      corrupt[rng() % corrupt.size()] = static_cast<char>(rng() & 0xff);
    }
    auto r = SafetensorsFile::open(write(corrupt));
    if (!r.is_ok()) continue;
    for (const SafetensorsTensor& t : (*r)->tensors()) {
      uint64_t sum = 0;
      for (uint64_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
      EXPECT_LE(t.nbytes, (*r)->file_bytes()) << sum;
    }
  }
}

TEST_F(SafetensorsFileTest, OpensSingleFileCheckpoint) {
  auto r = HfCheckpoint::open(FASTSERVE_FIXTURES_DIR "/models/tiny-llama");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ((*r)->shards().size(), 1u);
  EXPECT_EQ((*r)->config().at("model_type"), "llama");
  std::string file;
  const SafetensorsTensor* t = (*r)->find_tensor("model.layers.1.mlp.down_proj.weight", &file);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{64, 128}));
  EXPECT_NE(file.find("model.safetensors"), std::string::npos);
}

TEST_F(SafetensorsFileTest, OpensShardedCheckpoint) {
  auto r = HfCheckpoint::open(FASTSERVE_FIXTURES_DIR "/models/tiny-llama3-bf16-sharded");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_GE((*r)->shards().size(), 2u);
  std::string first_file, last_file;
  ASSERT_NE((*r)->find_tensor("model.embed_tokens.weight", &first_file), nullptr);
  const SafetensorsTensor* head = (*r)->find_tensor("lm_head.weight", &last_file);
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->dtype, DType::kBF16);
  EXPECT_NE(first_file, last_file);
}

TEST_F(SafetensorsFileTest, CheckpointErrorsNameTheFile) {
  auto none = HfCheckpoint::open(dir_);
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("config.json"), std::string::npos);

  testing_util::write_file(dir_ + "/config.json", "{\"model_type\": \"llama\"}");
  auto no_weights = HfCheckpoint::open(dir_);
  EXPECT_EQ(no_weights.status().code(), StatusCode::kNotFound);
  EXPECT_NE(no_weights.status().message().find("model.safetensors"), std::string::npos);

  testing_util::write_file(dir_ + "/model.safetensors.index.json",
                           R"({"weight_map": {"w": "model-00001-of-00002.safetensors"}})");
  auto missing_shard = HfCheckpoint::open(dir_);
  EXPECT_EQ(missing_shard.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing_shard.status().message().find("model-00001-of-00002.safetensors"),
            std::string::npos);

  testing_util::write_file(dir_ + "/model.safetensors.index.json",
                           R"({"weight_map": {"w": "../escape.safetensors"}})");
  auto escape = HfCheckpoint::open(dir_);
  EXPECT_EQ(escape.status().code(), StatusCode::kDataLoss);

  testing_util::write_file(dir_ + "/model-00001-of-00001.safetensors", valid_file());
  testing_util::write_file(dir_ + "/model.safetensors.index.json",
                           R"({"weight_map": {"absent": "model-00001-of-00001.safetensors"}})");
  auto absent = HfCheckpoint::open(dir_);
  EXPECT_EQ(absent.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(absent.status().message().find("'absent'"), std::string::npos);

  testing_util::write_file(dir_ + "/config.json", "{not json");
  auto bad_json = HfCheckpoint::open(dir_);
  EXPECT_EQ(bad_json.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(bad_json.status().message().find("config.json"), std::string::npos);
}

}  // namespace
}  // namespace fs
