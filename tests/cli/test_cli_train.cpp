// `memento train` beyond the GPT demo: a BERT-style encoder on masked bytes of a text, a ViT
// with a chosen patch size on images, model shapes from the command line, and their bad input.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_support.h"

namespace {

using namespace memento::cli_test;
using json = nlohmann::json;

json train_json(std::vector<std::string> args) {
  for (const char* arg : {"--steps", "6", "--eval-every", "3", "--eval-batches", "2", "--compare-repeats",
                          "1", "--format", "json"})
    args.push_back(arg);
  args.insert(args.begin(), "train");
  const CommandResult result = run_memento(args);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return json::parse(result.out);
}

TEST(CliTrain, BertLearnsMaskedBytesOfTheTextUnderAPlan) {
  const json run = train_json({"--model", "bert-base", "--layers", "2", "--hidden", "32", "--heads", "2",
                               "--seq-len", "32", "--batch", "8", "--planner", "optimal", "--budget", "80%"});
  EXPECT_NE(run.at("data").get<std::string>().find("15% masked"), std::string::npos) << run.at("data");
  EXPECT_EQ(run.at("seq_len"), 32);
  // 2 blocks of width 32 over a 257-token vocabulary, not BERT-base's 110M.
  EXPECT_LT(run.at("parameters").get<int64_t>(), 100000);
  EXPECT_LT(run.at("final_val_loss").get<double>(), run.at("initial_val_loss").get<double>());
  // Accuracy counts the masked positions only, so it is a fraction of them.
  const double accuracy = run.at("final_val_accuracy").get<double>();
  EXPECT_GE(accuracy, 0.0);
  EXPECT_LE(accuracy, 1.0);
  EXPECT_LE(run.at("peak_bytes").get<int64_t>(), run.at("budget_bytes").get<int64_t>());
}

TEST(CliTrain, VitTakesItsPatchSizeAndFineGranularity) {
  const json block =
      train_json({"--model", "vit-tiny", "--layers", "2", "--hidden", "32", "--heads", "2", "--image-size",
                  "16", "--patch-size", "4", "--batch", "8", "--planner", "store-all", "--budget", "100%"});
  const json fine = train_json(
      {"--model",      "vit-tiny", "--layers",      "2",   "--hidden", "32", "--heads",   "2",
       "--image-size", "16",       "--patch-size",  "4",   "--batch",  "8",  "--planner", "store-all",
       "--budget",     "100%",     "--granularity", "fine"});
  EXPECT_EQ(block.at("parameters"), fine.at("parameters"));
  // Same parameters and data: the stage boundaries change nothing the optimizer sees.
  EXPECT_EQ(block.at("final_val_loss"), fine.at("final_val_loss"));
}

TEST(CliTrain, BadModelShapesAreOneLineNamingTheOption) {
  expect_bad_input({"train", "--granularity", "medium"}, "--granularity");
  expect_bad_input({"train", "--layers", "-1"}, "--layers");
  expect_bad_input({"train", "--hidden", "-4"}, "--hidden");
  expect_bad_input({"train", "--patch-size", "-2", "--model", "vit-tiny"}, "--patch-size");
  expect_bad_input({"train", "--model", "vit-tiny", "--image-size", "30", "--patch-size", "4"},
                   "--patch-size");
  expect_bad_input({"train", "--hidden", "50", "--heads", "3"}, "divide");
  expect_bad_input({"train", "--model", "mlp"}, "--model");
}

}  // namespace
