#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "core/test_support.h"
#include "memento/core/error.h"
#include "memento/core/profile.h"

namespace memento {
namespace {

using nlohmann::json;

json valid_document() {
  return json::parse(R"({
    "model": "tiny",
    "fixed_bytes": 4096,
    "stages": [
      {"name": "embed", "kind": "embed", "forward_s": 0.001, "backward_s": 0.002,
       "input_bytes": 64, "output_bytes": 256, "saved_bytes": 256},
      {"name": "block1", "kind": "mlp", "forward_s": 0.003, "backward_s": 0.006,
       "input_bytes": 256, "output_bytes": 256, "saved_bytes": 1024,
       "forward_temp_bytes": 128, "backward_temp_bytes": 512, "flops": 1e9}
    ]
  })");
}

// Parses `document` and expects a ProfileError whose message holds every fragment.
void expect_profile_error(const std::string& text, std::initializer_list<std::string> fragments) {
  try {
    parse_profile(text, "model.json");
    FAIL() << "expected a ProfileError for " << text;
  } catch (const ProfileError& e) {
    const std::string message = e.what();
    for (const std::string& fragment : fragments) {
      EXPECT_NE(message.find(fragment), std::string::npos)
          << "\"" << fragment << "\" missing from: " << message;
    }
  }
}

void expect_profile_error(const json& document, std::initializer_list<std::string> fragments) {
  expect_profile_error(document.dump(), fragments);
}

void expect_same_profile(const ChainProfile& a, const ChainProfile& b) {
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.fixed_bytes, b.fixed_bytes);
  EXPECT_EQ(a.loss_temp_bytes, b.loss_temp_bytes);
  EXPECT_EQ(a.fixed_breakdown.parameters_bytes, b.fixed_breakdown.parameters_bytes);
  EXPECT_EQ(a.fixed_breakdown.gradients_bytes, b.fixed_breakdown.gradients_bytes);
  EXPECT_EQ(a.fixed_breakdown.optimizer_bytes, b.fixed_breakdown.optimizer_bytes);
  EXPECT_EQ(a.fixed_breakdown.inputs_bytes, b.fixed_breakdown.inputs_bytes);
  ASSERT_EQ(a.length(), b.length());
  for (int i = 0; i < a.length(); ++i) {
    const StageProfile& x = a.stages[i];
    const StageProfile& y = b.stages[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.kind, y.kind);
    EXPECT_EQ(x.forward_s, y.forward_s);  // exact: JSON numbers round-trip doubles
    EXPECT_EQ(x.backward_s, y.backward_s);
    EXPECT_EQ(x.input_bytes, y.input_bytes);
    EXPECT_EQ(x.output_bytes, y.output_bytes);
    EXPECT_EQ(x.saved_bytes, y.saved_bytes);
    EXPECT_EQ(x.forward_temp_bytes, y.forward_temp_bytes);
    EXPECT_EQ(x.backward_temp_bytes, y.backward_temp_bytes);
    EXPECT_EQ(x.flops, y.flops);
    EXPECT_EQ(x.forward_no_grad_temp_bytes, y.forward_no_grad_temp_bytes);
    EXPECT_EQ(x.backward_released_bytes, y.backward_released_bytes);
    EXPECT_EQ(x.output_droppable_bytes, y.output_droppable_bytes);
  }
}

TEST(ProfileJson, ReadsEveryField) {
  const ChainProfile profile = parse_profile(valid_document().dump(), "model.json");
  EXPECT_EQ(profile.model, "tiny");
  EXPECT_EQ(profile.fixed_bytes, 4096);
  ASSERT_EQ(profile.length(), 2);
  EXPECT_EQ(profile.stages[1].name, "block1");
  EXPECT_EQ(profile.stages[1].kind, "mlp");
  EXPECT_EQ(profile.stages[1].saved_bytes, 1024);
  EXPECT_EQ(profile.stages[1].backward_temp_bytes, 512);
  EXPECT_EQ(profile.stages[1].flops, 1e9);
  EXPECT_EQ(profile.stages[0].forward_temp_bytes, 0);  // optional fields default to 0
  EXPECT_EQ(profile.activation_bytes(0), 64);
  EXPECT_EQ(profile.activation_bytes(2), 256);
  EXPECT_DOUBLE_EQ(profile.total_forward_s(), 0.004);
  EXPECT_DOUBLE_EQ(profile.total_backward_s(), 0.008);
  EXPECT_THROW(profile.activation_bytes(3), InvalidArgument);
}

TEST(ProfileJson, RoundTripsRandomProfilesThroughText) {
  std::mt19937_64 rng(1234);
  for (int trial = 0; trial < 100; ++trial) {
    testing::RandomProfileOptions options;
    options.zero_probability = trial % 3 == 0 ? 0.2 : 0.0;
    ChainProfile profile = testing::random_profile(rng, 1 + trial % 30, options);
    if (trial % 2 == 0) profile.fixed_breakdown = {1, 2, 3, 4};
    const ChainProfile again = parse_profile(profile_to_json(profile).dump());
    expect_same_profile(profile, again);
  }
}

TEST(ProfileJson, RoundTripsThroughAFile) {
  std::mt19937_64 rng(99);
  ChainProfile profile = testing::random_profile(rng, 12);
  profile.fixed_breakdown = {1000, 1000, 2000, 96};
  const std::string path = ::testing::TempDir() + "memento_profile_round_trip.json";
  write_profile(profile, path);
  expect_same_profile(profile, read_profile(path));
  std::remove(path.c_str());
}

TEST(ProfileErrors, MalformedJsonNamesTheSourceAndPosition) {
  expect_profile_error(std::string(R"({"fixed_bytes": 1, "stages": [)"),
                       {"model.json", "not valid JSON at byte"});
  expect_profile_error(std::string(""), {"model.json", "not valid JSON"});
}

TEST(ProfileErrors, MissingFieldNamesStageAndField) {
  json document = valid_document();
  document["stages"][1].erase("saved_bytes");
  expect_profile_error(document, {"model.json: stage 1 (\"block1\")", "missing field \"saved_bytes\""});
  document = valid_document();
  document["stages"][0].erase("name");
  expect_profile_error(document, {"model.json: stage 0", "missing field \"name\""});
  document = valid_document();
  document.erase("fixed_bytes");
  expect_profile_error(document, {"model.json", "missing field \"fixed_bytes\""});
  document = valid_document();
  document.erase("stages");
  expect_profile_error(document, {"model.json", "missing field \"stages\""});
}

TEST(ProfileErrors, WrongTypeNamesStageAndField) {
  json document = valid_document();
  document["stages"][0]["forward_s"] = "fast";
  expect_profile_error(
      document, {"model.json: stage 0 (\"embed\")", "field \"forward_s\" must be a number", "\"fast\""});
  document = valid_document();
  document["stages"][1]["kind"] = 3;
  expect_profile_error(document, {"stage 1 (\"block1\")", "field \"kind\" must be a string"});
  document = valid_document();
  document["stages"] = json::object();
  expect_profile_error(document, {"model.json", "field \"stages\" must be an array"});
  document = valid_document();
  document["stages"][1] = 7;
  expect_profile_error(document, {"model.json: stage 1", "must be an object"});
  expect_profile_error(std::string("[1, 2]"), {"model.json", "must be a JSON object"});
}

TEST(ProfileErrors, NegativeSizeNamesStageAndField) {
  json document = valid_document();
  document["stages"][1]["backward_temp_bytes"] = -5;
  expect_profile_error(document,
                       {"model.json: stage 1 (\"block1\")", "field \"backward_temp_bytes\"", "byte count"});
  document = valid_document();
  document["stages"][0]["output_bytes"] = 12.5;
  expect_profile_error(document, {"stage 0 (\"embed\")", "field \"output_bytes\"", "whole number"});
  document = valid_document();
  document["fixed_bytes"] = 1e300;
  expect_profile_error(document, {"model.json", "field \"fixed_bytes\""});
}

TEST(ProfileErrors, NegativeTimeNamesStageAndField) {
  json document = valid_document();
  document["stages"][1]["backward_s"] = -0.5;
  expect_profile_error(document,
                       {"model.json: stage 1 (\"block1\")", "field \"backward_s\"", ">= 0 seconds"});
}

TEST(ProfileErrors, InconsistentSizesNameStageAndField) {
  json document = valid_document();
  document["stages"][1]["input_bytes"] = 128;
  expect_profile_error(document, {"model.json: stage 1 (\"block1\")", "field \"input_bytes\" (128)",
                                  "previous stage's \"output_bytes\" (256)"});
  document = valid_document();
  document["stages"][1]["saved_bytes"] = 100;
  expect_profile_error(
      document, {"stage 1 (\"block1\")", "field \"saved_bytes\" (100)", "below \"output_bytes\" (256)"});
  document = valid_document();
  document["stages"] = json::array();
  expect_profile_error(document, {"model.json", "\"stages\" is empty"});
  document = valid_document();
  document["stages"][1]["output_droppable_bytes"] = 257;
  expect_profile_error(document, {"stage 1 (\"block1\")", "field \"output_droppable_bytes\" (257)",
                                  "exceeds \"output_bytes\" (256)"});
  document = valid_document();
  document["loss_temp_bytes"] = -1;
  expect_profile_error(document, {"model.json", "loss_temp_bytes"});
}

TEST(ProfileJson, PassthroughRoundTripsAndIsValidated) {
  json document = valid_document();
  const int64_t input_bytes = document["stages"][1]["input_bytes"].get<int64_t>();
  document["stages"][1]["output_passthrough"] = json::array({{{"from", 1}, {"bytes", input_bytes / 2}}});
  const ChainProfile profile = parse_profile(document.dump(), "model.json");
  ASSERT_EQ(profile.stages[1].output_passthrough.size(), 1u);
  EXPECT_EQ(profile.stages[1].output_passthrough[0].from, 1);
  EXPECT_EQ(profile.stages[1].output_passthrough_bytes(), input_bytes / 2);
  const ChainProfile again = profile_from_json(profile_to_json(profile), "again");
  EXPECT_EQ(again.stages[1].output_passthrough_bytes(), input_bytes / 2);
  EXPECT_FALSE(profile_to_json(profile)["stages"][0].contains("output_passthrough"));

  json later = document;
  later["stages"][1]["output_passthrough"][0]["from"] = 2;
  expect_profile_error(later, {"stage 1 (\"block1\")", "output_passthrough[0].from", "a_0 .. a_1"});
  json too_much = document;
  too_much["stages"][1]["output_passthrough"][0]["bytes"] = input_bytes + 1;
  expect_profile_error(too_much, {"stage 1 (\"block1\")", "output_passthrough", "only inputs pass through"});
  json not_a_list = document;
  not_a_list["stages"][1]["output_passthrough"] = 5;
  expect_profile_error(not_a_list, {"output_passthrough", "list"});
}

TEST(ProfileErrors, ValidateNamesTheSourceForBuiltProfiles) {
  ChainProfile profile = parse_profile(valid_document().dump());
  profile.stages[0].forward_s = std::numeric_limits<double>::quiet_NaN();
  try {
    validate_profile(profile, "measured");
    FAIL() << "expected ProfileError";
  } catch (const ProfileError& e) {
    EXPECT_NE(std::string(e.what()).find("measured: stage 0 (\"embed\"): field \"forward_s\""),
              std::string::npos)
        << e.what();
  }
  profile = parse_profile(valid_document().dump());
  profile.fixed_bytes = -1;
  EXPECT_THROW(validate_profile(profile), ProfileError);
}

TEST(ProfileErrors, MissingFileNamesThePath) {
  try {
    read_profile("/nonexistent/memento/profile.json");
    FAIL() << "expected ProfileError";
  } catch (const ProfileError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/memento/profile.json"), std::string::npos) << e.what();
  }
}

// ---- regressions found by fuzz/fuzz_profile.cpp -------------------------------------

TEST(ProfileFuzzRegression, NumberBeyondDoubleRangeIsAProfileError) {
  // nlohmann::json throws out_of_range (not parse_error) for such a literal.
  expect_profile_error(std::string(R"({"fixed_bytes": 1, "stages": [{"forward_s": 0.0013E76741839890317}]})"),
                       {"model.json", "not valid JSON", "number overflow"});
  expect_profile_error(std::string("[1e400]"), {"model.json", "not valid JSON"});
}

}  // namespace
}  // namespace memento
