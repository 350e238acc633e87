// dequantize_rows() against gguf-py 0.19's gguf.quants.dequantize on the fixtures written by
// scripts/make_quant_fixtures.py (tests/fixtures/quant/): must be bit-exact.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"

namespace fs::cpu {
namespace {

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct Fixture {
  std::string name;
  DType dtype;
  int64_t rows, cols;
};

std::vector<Fixture> load_manifest() {
  std::ifstream in(std::string(FASTSERVE_FIXTURES_DIR) + "/quant/manifest.txt");
  std::vector<Fixture> out;
  std::string name;
  uint32_t id;
  int64_t rows, cols;
  while (in >> name >> id >> rows >> cols) {
    const auto dt = dtype_from_ggml(id);
    EXPECT_TRUE(dt.has_value()) << name;
    if (dt) out.push_back({name, *dt, rows, cols});
  }
  return out;
}

TEST(Dequantize, MatchesGgufPyBitExactForEveryType) {
  const std::vector<Fixture> fixtures = load_manifest();
  ASSERT_EQ(fixtures.size(), 7u);
  const std::string dir = std::string(FASTSERVE_FIXTURES_DIR) + "/quant/";
  for (const Fixture& f : fixtures) {
    SCOPED_TRACE(f.name);
    const std::vector<char> raw = read_file(dir + f.name + ".bin");
    const std::vector<char> expected_bytes = read_file(dir + f.name + ".f32");
    ASSERT_EQ(static_cast<int64_t>(raw.size()), f.rows * dtype_row_bytes(f.dtype, f.cols));
    ASSERT_EQ(static_cast<int64_t>(expected_bytes.size()), f.rows * f.cols * 4);
    std::vector<float> expected(f.rows * f.cols);
    std::memcpy(expected.data(), expected_bytes.data(), expected_bytes.size());

    const WeightView w{f.dtype, f.rows, f.cols, raw.data()};
    std::vector<float> out(f.rows * f.cols);
    dequantize_rows(w, 0, f.rows, out.data());
    for (int64_t i = 0; i < f.rows * f.cols; ++i) {
      ASSERT_EQ(out[i], expected[i]) << "row " << i / f.cols << " col " << i % f.cols;
    }
    // A sub-range lands at the right offset.
    std::vector<float> sub(2 * f.cols);
    dequantize_rows(w, 3, 2, sub.data());
    for (int64_t i = 0; i < 2 * f.cols; ++i) ASSERT_EQ(sub[i], expected[3 * f.cols + i]);
  }
}

TEST(Dequantize, F32IsACopy) {
  const std::vector<float> data = {1.0f, -2.5f, 3.0f, 0.0f, 7.0f, 8.0f};
  const WeightView w{DType::kF32, 2, 3, data.data()};
  std::vector<float> out(3);
  dequantize_rows(w, 1, 1, out.data());
  EXPECT_EQ(out, (std::vector<float>{0.0f, 7.0f, 8.0f}));
}

}  // namespace
}  // namespace fs::cpu
