#include "core/env.h"

#include <cstdlib>

#include <gtest/gtest.h>

namespace fs {
namespace {

constexpr const char* kVar = "FASTSERVE_ENV_TEST_SETTING";

TEST(EnvTest, IntegerSettingsAreReadAndChecked) {
  ::unsetenv(kVar);
  Result<std::optional<int64_t>> unset = int_from_env(kVar, 0, 10);
  ASSERT_TRUE(unset.is_ok());
  EXPECT_FALSE(unset->has_value());
  ::setenv(kVar, "", 1);
  EXPECT_FALSE(int_from_env(kVar, 0, 10)->has_value());  // empty: unset
  ::setenv(kVar, "7", 1);
  EXPECT_EQ(int_from_env(kVar, 0, 10)->value_or(-1), 7);
  for (const char* bad : {"11", "-1", "3x", "x", "1.5"}) {
    ::setenv(kVar, bad, 1);
    Result<std::optional<int64_t>> r = int_from_env(kVar, 0, 10);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_NE(r.status().message().find(kVar), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("0..10"), std::string::npos) << r.status().message();
  }
  ::unsetenv(kVar);
}

}  // namespace
}  // namespace fs
