#include <gtest/gtest.h>

#include <string>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/simulate.h"

namespace memento {
namespace {

ChainProfile small_profile() {
  ChainProfile profile;
  profile.fixed_bytes = 1000;
  profile.stages = {{"s0", "mlp", 1.0, 2.0, 10, 20, 50, 5, 7, 0, std::nullopt, 0},
                    {"s1", "head", 3.0, 4.0, 20, 30, 60, 0, 0, 0, std::nullopt, 0}};
  return profile;
}

void expect_invalid(const std::string& text, const std::string& fragment) {
  try {
    parse_budget(text, small_profile());
    FAIL() << "expected InvalidArgument for \"" << text << "\"";
  } catch (const InvalidArgument& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("\"" + text + "\""), std::string::npos) << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
  }
}

TEST(BudgetParse, AbsoluteSizes) {
  EXPECT_EQ(parse_bytes("1.5GiB"), 1610612736);
  EXPECT_EQ(parse_bytes("300MiB"), 314572800);
  EXPECT_EQ(parse_bytes("2GB"), 2000000000);
  EXPECT_EQ(parse_bytes("1048576B"), 1048576);
  EXPECT_EQ(parse_bytes("512 KiB"), 524288);
  EXPECT_EQ(parse_bytes(" 3kb "), 3000);
  EXPECT_EQ(parse_bytes("1TiB"), int64_t{1} << 40);
  EXPECT_EQ(parse_bytes("0"), 0);
  EXPECT_EQ(parse_budget("1.5GiB", small_profile()), 1610612736);
}

TEST(BudgetParse, PercentOfStoreAllPeak) {
  const ChainProfile profile = small_profile();
  const int64_t peak = simulate(profile, store_all_schedule(2)).peak_bytes;
  EXPECT_EQ(store_all_peak_bytes(profile), peak);
  EXPECT_EQ(peak, 1160);
  EXPECT_EQ(parse_budget("40%", profile), 464);
  EXPECT_EQ(parse_budget("100%", profile), peak);
  EXPECT_EQ(parse_budget("250%", profile), 2900);
  EXPECT_TRUE(is_relative_budget("40%"));
  EXPECT_TRUE(is_relative_budget(" 40% "));
  EXPECT_FALSE(is_relative_budget("40MiB"));
}

TEST(BudgetParse, RejectsMalformedValuesWithTheAcceptedForms) {
  expect_invalid("abc", "1.5GiB");
  expect_invalid("-1GiB", "1.5GiB");
  expect_invalid("0%", "above 0%");
  expect_invalid("5XB", "unknown unit \"xb\"");
  expect_invalid("", "1.5GiB");
  expect_invalid("1001%", "at most 1000%");
  expect_invalid("x%", "40%");
  expect_invalid("1e999", "");
}

// "50" is 50 bytes to one reader and 50 MiB to another: refused with the forms meant.
TEST(BudgetParse, BareNumberNeedsAUnit) {
  expect_invalid("50", "50B for bytes");
  expect_invalid("50", "50MiB");
  expect_invalid("50", "50% of the store-all peak");
  expect_invalid("1048576", "no unit");
  try {
    parse_bytes("50");
    FAIL() << "a bare number is not a size";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(std::string(e.what()).find('%'), std::string::npos)
        << "parse_bytes offers no share: " << e.what();
  }
  EXPECT_EQ(parse_bytes("0"), 0);
  EXPECT_EQ(parse_bytes("50B"), 50);
}

TEST(BudgetFormat, BinaryUnits) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(314572800), "300.00 MiB");
  EXPECT_EQ(format_bytes(1610612736), "1.50 GiB");
  EXPECT_EQ(parse_bytes("300.00MiB"), 314572800);
}

}  // namespace
}  // namespace memento
