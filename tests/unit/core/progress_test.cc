#include "core/progress.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace fs {
namespace {

TEST(ProgressTest, LogsEachTenthCrossedOnceAndTheEnd) {
  std::vector<std::string> lines;
  const uint64_t gb = 1000 * 1000 * 1000;
  Progress p("reading 'm.gguf'", 10 * gb, gb, [&](std::string_view l) { lines.emplace_back(l); });
  for (const uint64_t done : {gb / 2, gb, gb, 35 * gb / 10, 99 * gb / 10, 10 * gb, 11 * gb}) {
    p.update(done);
  }
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].rfind("reading 'm.gguf': 10% (1.0 of 10.0 GB, ", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("reading 'm.gguf': 30% (3.5 of 10.0 GB, ", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2].rfind("reading 'm.gguf': 90% (9.9 of 10.0 GB, ", 0), 0u) << lines[2];
  EXPECT_EQ(lines[3].rfind("reading 'm.gguf': 100% (10.0 of 10.0 GB, ", 0), 0u) << lines[3];
}

TEST(ProgressTest, SmallTotalsLogNothing) {
  std::vector<std::string> lines;
  Progress small("x", 999, 1000, [&](std::string_view l) { lines.emplace_back(l); });
  small.update(999);
  Progress empty("y", 0, 0, [&](std::string_view l) { lines.emplace_back(l); });
  empty.update(0);
  EXPECT_TRUE(lines.empty());
}

}  // namespace
}  // namespace fs
