#include "model/format/gguf_file.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "model/format/mapped_file.h"
#include "test_files.h"

namespace fs {
namespace {

using testing_util::Bytes;
using testing_util::GgufBuilder;

std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

// A small valid file: every metadata value type, a nested array, an F32 and a Q8_0 tensor.
GgufBuilder valid_builder() {
  GgufBuilder g;
  g.kv("u8", 0, Bytes().put<uint8_t>(200).s)
      .kv("i8", 1, Bytes().put<int8_t>(-5).s)
      .kv("u16", 2, Bytes().put<uint16_t>(60000).s)
      .kv("i16", 3, Bytes().put<int16_t>(-300).s)
      .kv_u32("u32", 4000000000u)
      .kv("i32", 5, Bytes().put<int32_t>(-70000).s)
      .kv_f32("f32", 1.5f)
      .kv("bool", 7, Bytes().put<uint8_t>(1).s)
      .kv_str("general.architecture", "llama")
      .kv("u64", 10, Bytes().put<uint64_t>(uint64_t{1} << 63).s)
      .kv("i64", 11, Bytes().put<int64_t>(-(int64_t{1} << 40)).s)
      .kv("f64", 12, Bytes().put<double>(0.25).s)
      .kv_str_array("tokens", {"a", "bc", ""})
      .kv("ints", 9,
          Bytes()
              .put<uint32_t>(5)
              .put<uint64_t>(3)
              .put<int32_t>(1)
              .put<int32_t>(-2)
              .put<int32_t>(3)
              .s)
      // [[1, 2], []] as an array of arrays of uint8
      .kv("nested", 9,
          Bytes()
              .put<uint32_t>(9)
              .put<uint64_t>(2)
              .put<uint32_t>(0)
              .put<uint64_t>(2)
              .put<uint8_t>(1)
              .put<uint8_t>(2)
              .put<uint32_t>(0)
              .put<uint64_t>(0)
              .s);
  g.tensor({"w", {3, 2}, 0, f32_bytes({1, 2, 3, 4, 5, 6})});
  g.tensor({"q", {32, 2}, 8, std::string(2 * 34, '\x11')});
  return g;
}

class GgufFileTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing_util::make_temp_dir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& bytes, const std::string& name = "m.gguf") {
    const std::string path = dir_ + "/" + name;
    testing_util::write_file(path, bytes);
    return path;
  }
  // Opens `bytes` expecting an error with `code` whose message names the file and contains `what`.
  void expect_error(const std::string& bytes, StatusCode code, const std::string& what) {
    const std::string path = write(bytes);
    auto r = GgufFile::open(path);
    ASSERT_FALSE(r.is_ok()) << "expected an error containing '" << what << "'";
    EXPECT_EQ(r.status().code(), code) << r.status().to_string();
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().to_string();
    EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status().to_string();
  }
  std::string dir_;
};

TEST_F(GgufFileTest, ParsesAllValueTypesAndTensors) {
  const std::string path = write(valid_builder().build());
  auto r = GgufFile::open(path);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const GgufFile& f = **r;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.get_int("u8").value(), 200);
  EXPECT_EQ(f.get_int("i8").value(), -5);
  EXPECT_EQ(f.get_int("u16").value(), 60000);
  EXPECT_EQ(f.get_int("i16").value(), -300);
  EXPECT_EQ(f.get_int("u32").value(), 4000000000);
  EXPECT_EQ(f.get_int("i32").value(), -70000);
  EXPECT_EQ(f.get_int("i64").value(), -(int64_t{1} << 40));
  EXPECT_FALSE(f.get_int("u64").is_ok());  // 2^63 does not fit an int64
  EXPECT_DOUBLE_EQ(f.get_float("u64").value(), 9223372036854775808.0);
  EXPECT_DOUBLE_EQ(f.get_float("f32").value(), 1.5);
  EXPECT_DOUBLE_EQ(f.get_float("f64").value(), 0.25);
  EXPECT_DOUBLE_EQ(f.get_float("i8").value(), -5.0);  // floats accept integers
  EXPECT_FALSE(f.get_int("f32").is_ok());
  EXPECT_EQ(f.find("bool")->as_bool(), std::optional<bool>(true));
  EXPECT_EQ(f.get_string("general.architecture").value(), "llama");
  EXPECT_EQ(f.get_string_array("tokens").value(), (std::vector<std::string>{"a", "bc", ""}));
  EXPECT_EQ(f.get_int_array("ints").value(), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.get_float_array("ints").value(), (std::vector<double>{1, -2, 3}));
  const GgufArray* nested = f.find("nested")->as_array();
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->size(), 2u);
  EXPECT_EQ((*nested)[0].as_array()->size(), 2u);
  EXPECT_EQ((*nested)[0].as_array()->at(1).as_int(), 2);
  EXPECT_TRUE((*nested)[1].as_array()->empty());

  auto missing = f.get_int("nope");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
  EXPECT_NE(missing.status().message().find(path), std::string::npos);
  EXPECT_FALSE(f.get_string("u8").is_ok());
  EXPECT_FALSE(f.get_string_array("ints").is_ok());

  ASSERT_EQ(f.tensors().size(), 2u);
  const GgufTensorInfo* w = f.find_tensor("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::kF32);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w->nbytes, 24u);
  float vals[6];
  std::memcpy(vals, w->data, 24);
  EXPECT_EQ(vals[5], 6.0f);
  const GgufTensorInfo* q = f.find_tensor("q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dtype, DType::kQ8_0);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(q->nbytes, 68u);
  EXPECT_EQ(q->offset_bytes % 32, 0u);
  EXPECT_EQ(q->data[67], 0x11);
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
}

TEST_F(GgufFileTest, AcceptsVersion2AndCustomAlignment) {
  GgufBuilder g = valid_builder();
  g.version = 2;
  g.alignment = 64;
  g.kv_u32("general.alignment", 64);
  auto r = GgufFile::open(write(g.build()));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ((*r)->version(), 2u);
  EXPECT_EQ((*r)->alignment(), 64u);
  EXPECT_EQ((*r)->data_offset() % 64, 0u);
  EXPECT_EQ((*r)->find_tensor("q")->offset_bytes, 64u);
}

TEST_F(GgufFileTest, SizesEverySupportedTensorType) {
  struct Case {
    uint32_t ggml_type;
    DType dtype;
    uint64_t row_bytes;  // for a row of 256 elements
  };
  const std::vector<Case> cases = {
      {0, DType::kF32, 1024},  {1, DType::kF16, 512},   {30, DType::kBF16, 512},
      {8, DType::kQ8_0, 272},  {2, DType::kQ4_0, 144},  {3, DType::kQ4_1, 160},
      {12, DType::kQ4_K, 144}, {14, DType::kQ6_K, 210},
  };
  GgufBuilder g;
  for (const Case& c : cases) {
    g.tensor({fmt::format("t{}", c.ggml_type),
              {256, 3},
              c.ggml_type,
              std::string(3 * c.row_bytes, 'x')});
  }
  auto r = GgufFile::open(write(g.build()));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  for (const Case& c : cases) {
    const GgufTensorInfo* t = (*r)->find_tensor(fmt::format("t{}", c.ggml_type));
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, c.dtype);
    EXPECT_EQ(t->shape, (std::vector<int64_t>{3, 256}));
    EXPECT_EQ(t->nbytes, 3 * c.row_bytes) << dtype_name(c.dtype);
  }
}

TEST_F(GgufFileTest, EveryTruncationIsAnError) {
  const std::string bytes = valid_builder().build();
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string path = write(bytes.substr(0, n));
    auto r = GgufFile::open(path);
    ASSERT_FALSE(r.is_ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << n << ": " << r.status().to_string();
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().to_string();
  }
}

TEST_F(GgufFileTest, RejectsBadMagicAndVersion) {
  std::string bytes = valid_builder().build();
  bytes[0] = 'X';
  expect_error(bytes, StatusCode::kDataLoss, "bad magic");
  GgufBuilder g = valid_builder();
  g.version = 1;
  expect_error(g.build(), StatusCode::kUnimplemented, "version 1");
  g.version = 7;
  expect_error(g.build(), StatusCode::kDataLoss, "version 7");
}

TEST_F(GgufFileTest, MissingFileIsNotFound) {
  auto r = GgufFile::open(dir_ + "/absent.gguf");
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("absent.gguf"), std::string::npos);
}

TEST_F(GgufFileTest, RejectsUnknownTypes) {
  GgufBuilder g;
  g.tensor({"t", {32}, 6 /* Q5_0: not supported */, std::string(22, '\0')});
  expect_error(g.build(), StatusCode::kUnimplemented, "ggml type id 6");
  GgufBuilder v;
  v.kv("k", 13, Bytes().put<uint32_t>(0).s);
  expect_error(v.build(), StatusCode::kDataLoss, "unknown value type id 13");
  GgufBuilder a;
  a.kv("arr", 9, Bytes().put<uint32_t>(99).put<uint64_t>(1).s);
  expect_error(a.build(), StatusCode::kDataLoss, "unknown value type id 99");
}

TEST_F(GgufFileTest, RejectsAbsurdCountsAndLengths) {
  const uint64_t huge = uint64_t{1} << 60;
  GgufBuilder arr;
  arr.kv("arr", 9, Bytes().put<uint32_t>(4).put<uint64_t>(huge).s);
  expect_error(arr.build(), StatusCode::kDataLoss, "array length 1152921504606846976");
  GgufBuilder str;
  str.kv("s", 8, Bytes().put<uint64_t>(huge).s);
  expect_error(str.build(), StatusCode::kDataLoss, "length 1152921504606846976");
  GgufBuilder key;
  key.kv_u32("k", 1);
  std::string bytes = key.build();
  std::memcpy(&bytes[24], &huge, 8);  // the key length of the first KV
  expect_error(bytes, StatusCode::kDataLoss, "length 1152921504606846976");
  GgufBuilder tc = valid_builder();
  tc.tensor_count_override = static_cast<int64_t>(huge);
  expect_error(tc.build(), StatusCode::kDataLoss, "tensor count");
  GgufBuilder kc = valid_builder();
  kc.kv_count_override = static_cast<int64_t>(huge);
  expect_error(kc.build(), StatusCode::kDataLoss, "metadata count");
  GgufBuilder dims;
  dims.tensor({"t", {huge, huge}, 0, ""});
  expect_error(dims.build(), StatusCode::kDataLoss, "absurd dimension");
  GgufBuilder deep;
  Bytes nested;
  for (int i = 0; i < 20; ++i) nested.put<uint32_t>(9).put<uint64_t>(1);
  deep.kv("deep", 9, nested.s);
  expect_error(deep.build(), StatusCode::kDataLoss, "nests arrays");
}

TEST_F(GgufFileTest, RejectsBadTensorInfos) {
  GgufBuilder past;
  past.tensor({"t", {4}, 0, f32_bytes({1, 2, 3, 4}), /*offset_override=*/4096});
  expect_error(past.build(), StatusCode::kDataLoss, "outside the file");
  GgufBuilder mis;
  mis.tensor({"t", {4}, 0, f32_bytes({1, 2, 3, 4}), /*offset_override=*/4});
  expect_error(mis.build(), StatusCode::kDataLoss, "not aligned");
  GgufBuilder dup;
  dup.tensor({"t", {1}, 0, f32_bytes({1})}).tensor({"t", {1}, 0, f32_bytes({2})});
  expect_error(dup.build(), StatusCode::kDataLoss, "duplicate tensor 't'");
  GgufBuilder dims;
  dims.tensor({"t", {1, 1, 1, 1, 1}, 0, f32_bytes({1})});
  expect_error(dims.build(), StatusCode::kDataLoss, "n_dims 5");
  GgufBuilder block;
  block.tensor({"t", {33}, 8, std::string(34, '\0')});
  expect_error(block.build(), StatusCode::kDataLoss, "not a multiple of the block size 32");
}

TEST_F(GgufFileTest, RejectsBadMetadata) {
  GgufBuilder dup;
  dup.kv_u32("k", 1).kv_u32("k", 2);
  expect_error(dup.build(), StatusCode::kDataLoss, "duplicate metadata 'k'");
  GgufBuilder align;
  align.kv_u32("general.alignment", 24);
  expect_error(align.build(), StatusCode::kDataLoss, "general.alignment");
  GgufBuilder boolean;
  boolean.kv("b", 7, Bytes().put<uint8_t>(2).s);
  expect_error(boolean.build(), StatusCode::kDataLoss, "bool");
}

// Random byte corruption (fixed seed): every result is a clean Status or a file whose tensors all
// lie inside it; ASan/UBSan catch any out-of-bounds read.
TEST_F(GgufFileTest, RandomCorruptionNeverCrashes) {
  const std::string bytes = valid_builder().build();
  std::mt19937 rng(1234);
  int num_ok = 0;
  for (int iter = 0; iter < 400; ++iter) {
    std::string corrupt = bytes;
    const int num_flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < num_flips; ++i) {
      corrupt[rng() % corrupt.size()] = static_cast<char>(rng() & 0xff);
    }
    auto r = GgufFile::open(write(corrupt));
    if (!r.is_ok()) continue;
    ++num_ok;
    for (const GgufTensorInfo& t : (*r)->tensors()) {
      uint64_t sum = 0;
      for (uint64_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
      EXPECT_LE(t.offset_bytes + t.nbytes, (*r)->file_bytes()) << sum;
    }
  }
  EXPECT_GT(num_ok, 0);  // some flips land in tensor data and keep the file valid
}

TEST_F(GgufFileTest, OpensTheTinyLlamaFixture) {
  auto r = GgufFile::open(FASTSERVE_FIXTURES_DIR "/models/tiny-llama.gguf");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ((*r)->get_string("general.architecture").value(), "llama");
  EXPECT_EQ((*r)->get_int("llama.block_count").value(), 2);
  EXPECT_EQ((*r)->tensors().size(), 2u + 9u * 2u + 1u);
  EXPECT_EQ((*r)->find_tensor("token_embd.weight")->shape, (std::vector<int64_t>{320, 64}));
}

}  // namespace
}  // namespace fs

namespace fs {
namespace {

// MappedFile::read_in (what load_model does for large models, with a progress line): every byte
// of the range is reached in order and the progress ends at the range's length, clipped to the
// file; an empty or out-of-range request reports nothing.
TEST(MappedFileTest, ReadInReportsProgressToTheEndOfTheRange) {
  const std::string dir = testing_util::make_temp_dir();
  const std::string path = dir + "/data.bin";
  std::string bytes((size_t{64} << 20) + 12345, '\0');
  for (size_t i = 0; i < bytes.size(); i += 4093) bytes[i] = static_cast<char>(i);
  testing_util::write_file(path, bytes);
  Result<std::unique_ptr<MappedFile>> f = MappedFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  std::vector<size_t> seen;
  (*f)->read_in(100, size_t{1} << 40, [&](size_t done) { seen.push_back(done); });
  ASSERT_EQ(seen.size(), 2u);  // one 64 MiB step and the tail
  EXPECT_EQ(seen[0], size_t{64} << 20);
  EXPECT_EQ(seen[1], bytes.size() - 100);
  seen.clear();
  (*f)->read_in(bytes.size(), 10, [&](size_t done) { seen.push_back(done); });
  (*f)->read_in(0, 0, [&](size_t done) { seen.push_back(done); });
  EXPECT_TRUE(seen.empty());
}

}  // namespace
}  // namespace fs
