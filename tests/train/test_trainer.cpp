#include <gtest/gtest.h>

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"
#include "memento/data/text.h"
#include "memento/models/zoo.h"
#include "memento/torch/profiler.h"
#include "memento/train/progress.h"
#include "memento/train/trainer.h"

namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "memento_train_" + std::to_string(::getpid()) + "_" + name;
}

memento::TextSplit tiny_text() {
  static const auto bytes = memento::generate_corpus(memento::CorpusOptions().bytes(48 * 1024).seed(5));
  return memento::split_text(bytes, "generated corpus", 32);
}

memento::Model tiny_model(const std::string& name = "gpt-nano") {
  memento::ModelOptions options;
  options.seq_len = 32;
  options.batch_size = 8;
  options.seed = 1;
  return memento::make_model(name, options);
}

memento::TrainOptions tiny_options(int64_t steps) {
  memento::TrainOptions options;
  options.steps = steps;
  options.batch_size = 8;
  options.learning_rate = 3e-3;
  options.eval_batches = 4;
  options.seed = 9;
  return options;
}

// A schedule that recomputes: checkpoint every other stage (a hand-written plan valid for
// any chain, so these tests do not depend on a particular planner).
memento::Schedule recomputing_schedule(int length) {
  memento::ChainProfile profile;
  profile.model = "unit";
  for (int i = 0; i < length; ++i) {
    memento::StageProfile stage;
    stage.name = "s" + std::to_string(i);
    stage.forward_s = stage.backward_s = 1e-3;
    stage.input_bytes = stage.output_bytes = 100;
    stage.saved_bytes = 300;
    profile.stages.push_back(stage);
  }
  memento::Plan plan =
      memento::make_planner("recompute-all")->plan(profile, memento::PlannerOptions(int64_t{1} << 40));
  EXPECT_TRUE(plan.feasible);
  EXPECT_GT(plan.recompute_count, 0);
  return plan.schedule;
}

TEST(TrainLearningRate, WarmsUpThenFollowsACosineToTheFloor) {
  memento::TrainOptions options;
  options.steps = 101;  // 91 decay steps: step 55 is exactly halfway through the cosine
  options.warmup_steps = 10;
  options.learning_rate = 1.0;
  options.min_learning_rate_fraction = 0.1;
  EXPECT_DOUBLE_EQ(memento::learning_rate_at(options, 0), 0.1);
  EXPECT_DOUBLE_EQ(memento::learning_rate_at(options, 9), 1.0);
  EXPECT_DOUBLE_EQ(memento::learning_rate_at(options, 10), 1.0);
  EXPECT_NEAR(memento::learning_rate_at(options, 100), 0.1, 1e-12);
  EXPECT_NEAR(memento::learning_rate_at(options, 55), 0.55, 1e-12);
  for (int64_t step = 11; step <= 100; ++step) {
    EXPECT_LE(memento::learning_rate_at(options, step), memento::learning_rate_at(options, step - 1)) << step;
  }
  options.warmup_steps = -1;  // default: 5% of the run
  EXPECT_DOUBLE_EQ(memento::learning_rate_at(options, 4), 1.0);
  EXPECT_LT(memento::learning_rate_at(options, 3), 1.0);
}

TEST(TrainLoop, LossGoesDownOnTheGeneratedCorpus) {
  const auto text = tiny_text();
  memento::Trainer trainer(tiny_model(), text.train, text.validation, tiny_options(80));
  trainer.set_schedule(recomputing_schedule(trainer.model().chain->length()));
  const memento::Evaluation before = trainer.evaluate();
  EXPECT_NEAR(before.loss, std::log(256.0), 0.6);  // untrained: close to uniform over bytes
  double first_loss = 0, last_loss = 0;
  while (!trainer.finished()) {
    const memento::TrainStep step = trainer.train_step();
    if (step.step == 1) first_loss = step.loss;
    last_loss = step.loss;
    EXPECT_GT(step.recompute_count, 0);
    EXPECT_GT(step.peak_bytes, trainer.state_bytes());
    EXPECT_EQ(step.items, 8 * 32);
    EXPECT_TRUE(std::isfinite(step.grad_norm));
  }
  const memento::Evaluation after = trainer.evaluate();
  EXPECT_EQ(after.step, 80);
  EXPECT_LT(last_loss, first_loss - 1.0);
  EXPECT_LT(after.loss, before.loss - 1.0);
  EXPECT_GT(after.accuracy, before.accuracy + 0.1);
  EXPECT_THROW(trainer.train_step(), memento::InvalidArgument);
}

std::vector<double> run_losses(memento::Trainer& trainer, int64_t steps) {
  std::vector<double> losses;
  for (int64_t i = 0; i < steps; ++i) losses.push_back(trainer.train_step().loss);
  return losses;
}

std::vector<torch::Tensor> parameters_of(const memento::Trainer& trainer) {
  std::vector<torch::Tensor> values;
  for (const auto& parameter : trainer.model().chain->parameters())
    values.push_back(parameter.detach().clone());
  return values;
}

void expect_same_parameters(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
}

TEST(TrainSchedules, RecomputingGivesTheSameTrajectoryAsStoreAll) {
  const auto text = tiny_text();
  memento::Trainer store_all(tiny_model(), text.train, text.validation, tiny_options(6));
  const auto expected = run_losses(store_all, 6);
  memento::Trainer recomputing(tiny_model(), text.train, text.validation, tiny_options(6));
  recomputing.set_schedule(recomputing_schedule(recomputing.model().chain->length()));
  EXPECT_EQ(run_losses(recomputing, 6), expected);
  expect_same_parameters(parameters_of(recomputing), parameters_of(store_all));
  EXPECT_THROW(recomputing.set_schedule(memento::store_all_schedule(2)), memento::ScheduleError);
}

TEST(TrainSchedules, MeasuringAStepLeavesTheTrajectoryAlone) {
  const auto text = tiny_text();
  memento::Trainer plain(tiny_model(), text.train, text.validation, tiny_options(6));
  const auto expected = run_losses(plain, 6);
  memento::Trainer measured(tiny_model(), text.train, text.validation, tiny_options(6));
  const auto schedule = recomputing_schedule(measured.model().chain->length());
  std::vector<double> losses;
  for (int i = 0; i < 6; ++i) {
    const memento::TrainStep probe = measured.measure_step(schedule);
    EXPECT_GT(probe.recompute_count, 0);
    losses.push_back(measured.train_step().loss);
    EXPECT_DOUBLE_EQ(probe.loss, losses.back());  // same batch, same parameters, same dropout
  }
  EXPECT_EQ(losses, expected);
}

TEST(TrainCheckpoint, ResumeContinuesBitForBit) {
  const auto text = tiny_text();
  const int64_t k = 5;
  memento::Trainer straight(tiny_model(), text.train, text.validation, tiny_options(2 * k));
  const auto schedule = recomputing_schedule(straight.model().chain->length());
  straight.set_schedule(schedule);
  const auto expected = run_losses(straight, 2 * k);

  const std::string path = temp_path("resume.ckpt");
  std::vector<double> losses;
  {
    memento::Trainer first(tiny_model(), text.train, text.validation, tiny_options(2 * k));
    first.set_schedule(schedule);
    losses = run_losses(first, k);
    first.save(path);
    first.train_step();  // progress after the save must not leak into the checkpoint
  }
  // A freshly built model (other initial parameters) and other torch RNG state: everything
  // must come from the checkpoint.
  memento::ModelOptions other;
  other.seq_len = 32;
  other.seed = 77;
  memento::Trainer second(memento::make_model("gpt-nano", other), text.train, text.validation,
                          tiny_options(2 * k));
  second.set_schedule(schedule);
  torch::manual_seed(12345);
  second.resume(path);
  EXPECT_EQ(second.step(), k);
  const auto rest = run_losses(second, k);
  losses.insert(losses.end(), rest.begin(), rest.end());
  EXPECT_EQ(losses, expected);
  expect_same_parameters(parameters_of(second), parameters_of(straight));
  EXPECT_EQ(second.evaluate().loss, straight.evaluate().loss);
  std::remove(path.c_str());
}

// A gac plan of the tiny model at `fraction` of the way from its least budget to store-all.
memento::Plan gac_plan(const memento::ChainProfile& profile, double fraction,
                       const memento::GacOptions& options, const std::vector<memento::Codec>& codecs = {}) {
  const memento::GacController probe(profile, memento::store_all_peak_bytes(profile), {});
  const int64_t least = probe.least_budget_bytes(), all = memento::store_all_peak_bytes(profile);
  const auto budget = least + static_cast<int64_t>(fraction * static_cast<double>(all - least));
  const memento::Plan plan = memento::plan_training_step(profile, "gac", budget, codecs, options);
  EXPECT_EQ(plan.runtime_policy, "gac");
  return plan;
}

memento::ChainProfile tiny_profile(const std::vector<memento::Codec>& codecs = {}) {
  const auto text = tiny_text();
  memento::Model model = tiny_model();
  const memento::Batch batch = text.train->get_batch({0, 1, 2, 3, 4, 5, 6, 7});
  return memento::profile_chain(*model.chain, batch, model.loss,
                                memento::ProfilerOptions().warmup_runs(0).timed_runs(1).codecs(codecs));
}

// Steps with an evaluation every other step, as `memento train --eval-every 2` runs them.
std::vector<double> run_with_evaluations(memento::Trainer& trainer, int64_t steps) {
  std::vector<double> losses;
  for (int64_t i = 0; i < steps; ++i) {
    losses.push_back(trainer.train_step().loss);
    if (trainer.step() % 2 == 0) losses.push_back(trainer.evaluate().loss);
  }
  return losses;
}

TEST(TrainGac, ExactGacTrainsTheTrajectoryOfStoreAll) {
  const auto text = tiny_text();
  memento::Trainer store_all(tiny_model(), text.train, text.validation, tiny_options(6));
  const auto expected = run_with_evaluations(store_all, 6);
  const memento::ChainProfile profile = tiny_profile();  // before the trainer seeds the RNG
  memento::Trainer gac(tiny_model(), text.train, text.validation, tiny_options(6));
  gac.set_plan(gac_plan(profile, 0.3, memento::GacOptions()), profile);
  EXPECT_EQ(run_with_evaluations(gac, 6), expected);
  expect_same_parameters(parameters_of(gac), parameters_of(store_all));
  ASSERT_NE(gac.runner().gac(), nullptr);
  EXPECT_EQ(gac.runner().gac()->history().size(), 6u * static_cast<size_t>(profile.length()));
}

TEST(TrainGac, LossyGacResumesBitForBit) {
  const auto text = tiny_text();
  const std::vector<memento::Codec> codecs = {memento::Codec::BF16, memento::Codec::Int8};
  const memento::ChainProfile profile = tiny_profile(codecs);
  memento::GacOptions options;
  options.mode = memento::GacMode::Lossy;
  options.threshold = memento::GacThreshold::NormMedian;
  const memento::Plan plan = gac_plan(profile, 0.2, options, codecs);
  memento::Trainer straight(tiny_model(), text.train, text.validation, tiny_options(8));
  straight.set_plan(plan, profile);
  const auto expected = run_with_evaluations(straight, 8);
  bool packed = false;
  for (const memento::GacRecord& record : straight.runner().gac()->history())
    packed = packed || record.decision == memento::GacDecision::Compress;
  EXPECT_TRUE(packed) << "the test needs a lossy trajectory";

  const std::string path = temp_path("gac.ckpt");
  std::vector<double> losses;
  {
    memento::Trainer first(tiny_model(), text.train, text.validation, tiny_options(8));
    first.set_plan(plan, profile);
    losses = run_with_evaluations(first, 4);
    first.save(path);
  }
  memento::Trainer second(tiny_model(), text.train, text.validation, tiny_options(8));
  second.set_plan(plan, profile);
  second.resume(path);
  second.evaluate();  // a resumed run evaluates its starting point again: the policy ignores it
  const auto rest = run_with_evaluations(second, 4);
  losses.insert(losses.end(), rest.begin(), rest.end());
  EXPECT_EQ(losses, expected);
  expect_same_parameters(parameters_of(second), parameters_of(straight));
  std::remove(path.c_str());
}

TEST(TrainGac, AFrozenPrefixIsNotUpdated) {
  const auto text = tiny_text();
  memento::Trainer trainer(tiny_model(), text.train, text.validation, tiny_options(6));
  const int length = trainer.model().chain->length();
  std::vector<memento::GacDecision> decisions(static_cast<size_t>(length), memento::GacDecision::Store);
  decisions[0] = decisions[1] = memento::GacDecision::Freeze;
  trainer.set_schedule(memento::gac_schedule(tiny_profile(), decisions,
                                             std::vector<memento::Codec>(static_cast<size_t>(length))));
  const int frozen = trainer.runner().frozen_stages();
  EXPECT_EQ(frozen, 2);
  ASSERT_GT(frozen, 0);
  const memento::Chain& chain = *trainer.model().chain;
  // Parameters only frozen stages use (a weight tied to a training stage still trains).
  std::vector<torch::Tensor> frozen_only, before;
  for (int i = 0; i < frozen; ++i) {
    for (const auto& parameter : chain.stage(i).parameters()) {
      bool shared = false;
      for (int j = frozen; j < chain.length(); ++j) {
        for (const auto& other : chain.stage(j).parameters())
          shared = shared || other.unsafeGetTensorImpl() == parameter.unsafeGetTensorImpl();
      }
      if (!shared) frozen_only.push_back(parameter);
    }
  }
  ASSERT_FALSE(frozen_only.empty());
  for (const auto& parameter : frozen_only) before.push_back(parameter.detach().clone());
  const auto trained_before = parameters_of(trainer);
  trainer.train_step();
  trainer.train_step();
  for (size_t k = 0; k < frozen_only.size(); ++k) EXPECT_TRUE(torch::equal(before[k], frozen_only[k]));
  EXPECT_FALSE(torch::equal(trained_before.back(), parameters_of(trainer).back())) << "the last stage trains";
}

std::vector<std::string> files_starting_with(const std::string& prefix) {
  const auto slash = prefix.rfind('/');
  const std::string directory = prefix.substr(0, slash), stem = prefix.substr(slash + 1);
  std::vector<std::string> names;
  if (DIR* dir = ::opendir(directory.c_str())) {
    while (const dirent* entry = ::readdir(dir)) {
      const std::string name = entry->d_name;
      if (name.rfind(stem, 0) == 0) names.push_back(name);
    }
    ::closedir(dir);
  }
  return names;
}

template <typename Error, typename Call>
void expect_error(Call call, const std::vector<std::string>& pieces) {
  try {
    call();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    for (const auto& piece : pieces)
      EXPECT_NE(std::string(e.what()).find(piece), std::string::npos) << e.what();
  }
}

TEST(TrainCheckpoint, SaveIsAtomicAndBadCheckpointsAreRefusedByName) {
  const auto text = tiny_text();
  const std::string path = temp_path("atomic.ckpt");
  memento::Trainer trainer(tiny_model(), text.train, text.validation, tiny_options(4));
  trainer.train_step();
  trainer.save(path);
  trainer.train_step();
  trainer.save(path);  // replaces the previous one
  EXPECT_EQ(files_starting_with(path), std::vector<std::string>{path.substr(path.rfind('/') + 1)});

  memento::Trainer fresh(tiny_model(), text.train, text.validation, tiny_options(4));
  fresh.resume(path);
  EXPECT_EQ(fresh.step(), 2);

  // Truncated file: refused with the file name, and the trainer is unchanged.
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string broken = temp_path("broken.ckpt");
  std::ofstream(broken, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  memento::Trainer other(tiny_model(), text.train, text.validation, tiny_options(4));
  expect_error<memento::DataError>([&] { other.resume(broken); }, {broken});
  EXPECT_EQ(other.step(), 0);
  expect_error<memento::DataError>([&] { other.resume(path + ".missing"); }, {path + ".missing"});

  memento::TrainOptions different_batch = tiny_options(4);
  different_batch.batch_size = 4;
  memento::Trainer batch4(tiny_model(), text.train, text.validation, different_batch);
  expect_error<memento::InvalidArgument>([&] { batch4.resume(path); }, {path, "--batch"});

  memento::ModelOptions wider;
  wider.seq_len = 32;
  wider.hidden_size = 60;  // divisible by its 3 heads
  memento::Trainer wide(memento::make_model("gpt-nano", wider), text.train, text.validation, tiny_options(4));
  expect_error<memento::InvalidArgument>([&] { wide.resume(path); }, {path, "shape"});
  std::remove(path.c_str());
  std::remove(broken.c_str());
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Any changed byte is refused by the checksum before a byte of it is used, naming the file,
// and the file is left as it is; a checkpoint of the same state is the same bytes.
TEST(TrainCheckpoint, EveryFlippedByteIsRefusedAndSavesAreDeterministic) {
  const auto text = tiny_text();
  const std::string first_path = temp_path("first.ckpt"), second_path = temp_path("second.ckpt");
  for (const std::string& path : {first_path, second_path}) {
    memento::Trainer trainer(tiny_model(), text.train, text.validation, tiny_options(4));
    trainer.train_step();
    trainer.train_step();
    trainer.save(path);
  }
  const std::string bytes = file_bytes(first_path);
  ASSERT_EQ(bytes, file_bytes(second_path)) << "two identical runs must write identical checkpoints";
  ASSERT_EQ(bytes.rfind("memento-sealed\nformat memento.checkpoint\nversion 2\n", 0), 0u);

  std::mt19937_64 random(3);
  const std::string flipped = temp_path("flipped.ckpt");
  for (int trial = 0; trial < 40; ++trial) {
    std::string damaged = bytes;
    const size_t offset = trial == 0 ? bytes.size() - 1 : random() % bytes.size();
    damaged[offset] = static_cast<char>(damaged[offset] ^ (1 + random() % 255));
    std::ofstream(flipped, std::ios::binary)
        .write(damaged.data(), static_cast<std::streamsize>(damaged.size()));
    memento::Trainer trainer(tiny_model(), text.train, text.validation, tiny_options(4));
    try {
      trainer.resume(flipped);
      ADD_FAILURE() << "a flip at byte " << offset << " of " << bytes.size() << " was accepted";
    } catch (const memento::Error& e) {
      EXPECT_NE(std::string(e.what()).find(flipped), std::string::npos) << e.what();
    }
    EXPECT_EQ(trainer.step(), 0) << "a refused checkpoint must leave the trainer as it was";
    EXPECT_EQ(file_bytes(flipped), damaged) << "a refused checkpoint is left untouched";
  }
  for (const std::string& path : {first_path, second_path, flipped}) std::remove(path.c_str());
}

TEST(TrainPlanning, InfeasibleBudgetNamesTheMinimum) {
  memento::ChainProfile profile;
  profile.model = "toy";
  profile.fixed_bytes = 1000;
  for (int i = 0; i < 6; ++i) {
    memento::StageProfile stage;
    stage.name = "s" + std::to_string(i);
    stage.forward_s = stage.backward_s = 1e-3;
    stage.input_bytes = stage.output_bytes = 100;
    stage.saved_bytes = 400;
    profile.stages.push_back(stage);
  }
  const int64_t store_all = memento::store_all_peak_bytes(profile);
  const memento::Plan plan = memento::plan_training_step(profile, "optimal", store_all / 2 + 500);
  EXPECT_TRUE(plan.feasible);
  EXPECT_LE(plan.predicted_peak_bytes, store_all / 2 + 500);
  expect_error<memento::InvalidArgument>([&] { memento::plan_training_step(profile, "optimal", 1100); },
                                         {"minimum feasible", "--budget", "optimal"});
  EXPECT_THROW(memento::plan_training_step(profile, "no-such-planner", store_all), memento::InvalidArgument);
}

TEST(TrainProgress, LineShowsStepLossThroughputPeakAndEta) {
  memento::ProgressState state;
  state.step = 30;
  state.total_steps = 300;
  state.loss = 1.23456;
  state.items_per_s = 41234;
  state.item_unit = "tok";
  state.peak_bytes = 3 * 1024 * 1024;
  state.eta_s = 72;
  EXPECT_EQ(memento::format_progress(state, 10),
            "step  30/300 [=>        ] loss 1.2346 | 41.2k tok/s | peak 3.00 MiB | ETA 1m12s");
  EXPECT_EQ(memento::format_progress(state, 0),
            "step  30/300 loss 1.2346 | 41.2k tok/s | peak 3.00 MiB | ETA 1m12s");
  EXPECT_EQ(memento::format_eta(7325), "2h02m");
}

TEST(TrainProgress, PlainLinesWhenNotATerminalAndRedrawOtherwise) {
  memento::TrainStep step;
  step.items = 100;
  step.step_s = 0.5;
  step.loss = 2.0;
  std::ostringstream plain_out;
  memento::ProgressBar plain(plain_out, 20, /*interactive=*/false, "tok", 5);
  for (int i = 1; i <= 20; ++i) {
    step.step = i;
    plain.update(step);
  }
  plain.message("eval");
  plain.finish();
  const std::string plain_text = plain_out.str();
  EXPECT_EQ(plain_text.find('\r'), std::string::npos);
  EXPECT_EQ(std::count(plain_text.begin(), plain_text.end(), '\n'), 6);  // steps 1, 5, 10, 15, 20 + message
  EXPECT_NE(plain_text.find("200.0 tok/s"), std::string::npos);
  EXPECT_NE(plain_text.find("step 20/20"), std::string::npos);

  std::ostringstream bar_out;
  memento::ProgressBar bar(bar_out, 20, /*interactive=*/true, "tok");
  step.step = 1;
  bar.update(step);
  bar.message("eval");
  bar.finish();
  const std::string bar_text = bar_out.str();
  EXPECT_EQ(bar_text.rfind("\r", 0), 0u);
  EXPECT_NE(bar_text.find("\r\x1b[Keval\n"), std::string::npos);
  EXPECT_EQ(bar_text.back(), '\n');
}

}  // namespace
