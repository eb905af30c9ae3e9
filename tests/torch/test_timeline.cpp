// The memory timeline of one training step: exact events, phases, categories, lifetimes
// and the peak breakdown, on tiny chains.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"
#include "memento/torch/executor.h"
#include "memento/torch/memory.h"
#include "memento/torch/profiler.h"
#include "memento/torch/timeline.h"
#include "support.h"

namespace memento {
namespace {

using testing::TinyModel;

constexpr int kActivations = static_cast<int>(MemoryCategory::Activations);
constexpr int kOptimizerState = static_cast<int>(MemoryCategory::OptimizerState);
constexpr int kParameters = static_cast<int>(MemoryCategory::Parameters);
constexpr int kInputs = static_cast<int>(MemoryCategory::Inputs);

struct TinySetup {
  TinyModel model;
  Batch batch;
  ChainProfile profile;
};

// The tracker first, so the model's and the batch's bytes are tracked.
TinySetup make_setup(double dropout = 0.3) {
  MemoryTracker::instance();
  testing::seed_all(3);
  TinySetup setup;
  setup.model = testing::sequential_chain(/*batch_size=*/16, /*width=*/32, dropout);
  setup.batch = setup.model.batch(1);
  setup.profile = profile_chain(*setup.model.chain, setup.batch, setup.model.loss,
                                ProfilerOptions().warmup_runs(0).timed_runs(1).model("tiny"));
  return setup;
}

Plan store_all_plan(const ChainProfile& profile) {
  return make_planner("store-all")->plan(profile, PlannerOptions(store_all_peak_bytes(profile)));
}

// A checkpointing schedule for a 7-stage chain: a_1 is a checkpoint, stages 0, 1 and 2
// are recomputed once each (Fg1, Fg2 after B3; Fg0 after B1).
Plan checkpoint_plan(const ChainProfile& profile) {
  const Schedule schedule = {Op::forward_no_grad(0),    Op::forward_checkpoint(1),
                             Op::forward_no_grad(2),    Op::forward_with_graph(3),
                             Op::forward_with_graph(4), Op::forward_with_graph(5),
                             Op::forward_with_graph(6), Op::loss(),
                             Op::backward(6),           Op::backward(5),
                             Op::backward(4),           Op::backward(3),
                             Op::forward_with_graph(1), Op::forward_with_graph(2),
                             Op::backward(2),           Op::backward(1),
                             Op::forward_with_graph(0), Op::backward(0)};
  return finish_plan("manual", profile, PlannerOptions(store_all_peak_bytes(profile) * 2), schedule, 0, 0);
}

int64_t sum(const CategoryBytes& bytes) {
  int64_t total = 0;
  for (int64_t value : bytes) total += value;
  return total;
}

// The invariants every recorded timeline satisfies.
void expect_consistent(const MemoryTimeline& timeline) {
  ASSERT_FALSE(timeline.events.empty());
  ASSERT_FALSE(timeline.phases.empty());
  int64_t live = timeline.start_bytes;
  CategoryBytes running = timeline.start_by_category;
  EXPECT_EQ(sum(running), timeline.start_bytes);
  int64_t peak = timeline.start_bytes;
  double previous_t = 0;
  for (size_t k = 0; k < timeline.events.size(); ++k) {
    const TimelineEvent& event = timeline.events[k];
    live += event.allocate ? event.bytes : -event.bytes;
    running[static_cast<int>(event.category)] += event.allocate ? event.bytes : -event.bytes;
    ASSERT_EQ(event.live_bytes, live) << "event " << k;
    ASSERT_GE(event.phase_index, 0) << "event " << k;
    ASSERT_LT(event.phase_index, static_cast<int>(timeline.phases.size())) << "event " << k;
    ASSERT_GE(event.bytes, 0);
    EXPECT_GE(event.t_s, 0);
    EXPECT_GE(event.t_s + 1e-3, previous_t);  // stamped on arrival: order within a millisecond
    previous_t = std::max(previous_t, event.t_s);
    peak = std::max(peak, live);
  }
  for (int index = 0; index < kMemoryCategoryCount; ++index) {
    EXPECT_GE(running[index], 0) << memory_category_name(static_cast<MemoryCategory>(index));
  }
  // Sum of the event bytes is the change in live bytes over the step.
  EXPECT_EQ(live, timeline.end_bytes);
  EXPECT_EQ(timeline.peak.bytes, peak);
  EXPECT_EQ(timeline.measured_peak_bytes, peak);
  EXPECT_EQ(sum(timeline.peak.by_category), timeline.peak.bytes);
  for (int64_t bytes : timeline.peak.by_category) EXPECT_GE(bytes, 0);
  if (timeline.peak.event >= 0) {
    EXPECT_EQ(timeline.events[static_cast<size_t>(timeline.peak.event)].live_bytes, timeline.peak.bytes);
  }
  for (const TimelinePhase& phase : timeline.phases) {
    EXPECT_FALSE(phase.label.empty());
    EXPECT_LE(phase.start_s, phase.end_s) << phase.label;
    EXPECT_LE(phase.first_event, phase.end_event) << phase.label;
  }
  for (const ActivationLifetime& lifetime : timeline.lifetimes) {
    EXPECT_LE(lifetime.created_s, lifetime.last_used_s) << lifetime.name;
    EXPECT_LE(lifetime.last_used_s, lifetime.freed_s) << lifetime.name;
    EXPECT_LE(lifetime.freed_s, timeline.step_s) << lifetime.name;
    EXPECT_GT(lifetime.bytes, 0) << lifetime.name;
  }
}

TEST(Timeline, StoreAllStepIsExactAndComplete) {
  TinySetup setup = make_setup();
  torch::optim::SGD sgd(setup.model.chain->parameters(), torch::optim::SGDOptions(0.01));
  Executor executor(setup.model.chain, setup.model.loss);
  const Plan plan = store_all_plan(setup.profile);
  const MemoryTimeline timeline =
      record_timeline(executor, plan, setup.profile, setup.batch, TimelineOptions().optimizer(&sgd));
  expect_consistent(timeline);
  // The tracker's peak since the executor's step began is the timeline's peak.
  EXPECT_EQ(timeline.peak.bytes, MemoryTracker::instance().peak_bytes());
  EXPECT_GE(timeline.peak.bytes, timeline.step.peak_bytes);

  // One phase per op, in schedule order, then the optimizer.
  const int length = setup.profile.length();
  ASSERT_EQ(timeline.phases.size(), plan.schedule.size() + 1);
  for (size_t k = 0; k < plan.schedule.size(); ++k) {
    EXPECT_EQ(timeline.phases[k].op_index, static_cast<int>(k));
    EXPECT_EQ(timeline.phases[k].stage, plan.schedule[k].stage);
  }
  EXPECT_EQ(timeline.phases.back().label, "optimizer");
  for (int stage = 0; stage < length; ++stage) {
    EXPECT_GE(timeline.find_phase("forward " + std::to_string(stage)), 0);
    EXPECT_GE(timeline.find_phase("backward " + std::to_string(stage)), 0);
    EXPECT_EQ(timeline.find_phase("recompute " + std::to_string(stage)), -1);
  }
  EXPECT_GE(timeline.find_phase("loss"), 0);

  // Starting bytes by role: parameters and inputs are known exactly.
  EXPECT_EQ(timeline.start_by_category[kParameters], setup.profile.fixed_breakdown.parameters_bytes);
  EXPECT_EQ(timeline.start_by_category[kInputs], setup.profile.fixed_breakdown.inputs_bytes);
  EXPECT_EQ(timeline.start_by_category[kActivations], 0);

  // Store-all keeps one graph per stage, each freed by its backward after being used by it.
  ASSERT_EQ(static_cast<int>(timeline.lifetimes.size()), length);
  for (const ActivationLifetime& lifetime : timeline.lifetimes) {
    EXPECT_EQ(lifetime.kind, "saved");
    EXPECT_EQ(lifetime.name, "saved_" + std::to_string(lifetime.stage));
    EXPECT_EQ(timeline.phases[lifetime.freed_phase].label, "backward " + std::to_string(lifetime.stage));
    EXPECT_EQ(lifetime.last_used_phase, lifetime.freed_phase);
    // What the forward kept is what the profiler measured as the stage's saved bytes.
    EXPECT_EQ(lifetime.bytes, setup.profile.stages[lifetime.stage].saved_bytes) << lifetime.name;
  }
}

TEST(Timeline, TemporariesAreFreedInTheOpThatMadeThem) {
  TinySetup setup = make_setup();
  Executor executor(setup.model.chain, setup.model.loss);
  const MemoryTimeline timeline =
      record_timeline(executor, store_all_plan(setup.profile), setup.profile, setup.batch);
  expect_consistent(timeline);
  std::map<int, int64_t> temporary_balance;  // per phase: allocated minus freed temporaries
  int temporaries = 0;
  for (const TimelineEvent& event : timeline.events) {
    if (event.category != MemoryCategory::Temporaries) continue;
    ++temporaries;
    temporary_balance[event.phase_index] += event.allocate ? event.bytes : -event.bytes;
  }
  EXPECT_GT(temporaries, 0);
  for (const auto& [phase, balance] : temporary_balance)
    EXPECT_EQ(balance, 0) << timeline.phases[phase].label;
  // Without an optimizer there is no optimizer phase.
  EXPECT_EQ(timeline.find_phase("optimizer"), -1);
}

TEST(Timeline, RecomputePhasesAppearExactlyForRecomputedForwards) {
  TinySetup setup = make_setup();
  ASSERT_EQ(setup.profile.length(), 7);
  Executor executor(setup.model.chain, setup.model.loss);
  const Plan plan = checkpoint_plan(setup.profile);
  ASSERT_TRUE(plan.feasible);
  ASSERT_EQ(simulate(setup.profile, plan.schedule).recompute_count, 3);
  const MemoryTimeline timeline = record_timeline(executor, plan, setup.profile, setup.batch);
  expect_consistent(timeline);
  EXPECT_EQ(timeline.step.recompute_count, 3);

  std::vector<std::string> labels;
  for (const TimelinePhase& phase : timeline.phases) labels.push_back(phase.label);
  const std::vector<std::string> expected = {
      "forward 0",   "forward 1",   "forward 2",  "forward 3",  "forward 4",   "forward 5",
      "forward 6",   "loss",        "backward 6", "backward 5", "backward 4",  "backward 3",
      "recompute 1", "recompute 2", "backward 2", "backward 1", "recompute 0", "backward 0"};
  EXPECT_EQ(labels, expected);
  for (const TimelinePhase& phase : timeline.phases) {
    EXPECT_EQ(phase.kind == "recompute", phase.label.rfind("recompute", 0) == 0);
  }

  // Stored outputs a_1 (kept as a checkpoint until B1), a_2 (dropped by Fn2), a_3 (until
  // B3), and one saved set per forward with graph.
  std::map<std::string, std::pair<std::string, std::string>> span;  // name -> (created by, freed by)
  for (const ActivationLifetime& lifetime : timeline.lifetimes) {
    ASSERT_GE(lifetime.freed_phase, 0) << lifetime.name;
    span[lifetime.name] = {labels[lifetime.created_phase], labels[lifetime.freed_phase]};
  }
  EXPECT_EQ(timeline.lifetimes.size(), 10u);
  EXPECT_EQ(span["a_1"], std::make_pair(std::string("forward 0"), std::string("backward 1")));
  EXPECT_EQ(span["a_2"], std::make_pair(std::string("forward 1"), std::string("forward 2")));
  EXPECT_EQ(span["a_3"], std::make_pair(std::string("forward 2"), std::string("backward 3")));
  EXPECT_EQ(span["saved_1"], std::make_pair(std::string("recompute 1"), std::string("backward 1")));
  EXPECT_EQ(span["saved_0"], std::make_pair(std::string("recompute 0"), std::string("backward 0")));
  // a_1 is read last by Fg1 (recompute 1), then pinned until B1 frees it: its last use is B1.
  for (const ActivationLifetime& lifetime : timeline.lifetimes) {
    if (lifetime.name == "a_1") {
      EXPECT_EQ(labels[lifetime.last_used_phase], "backward 1");
    }
    if (lifetime.name == "a_2") {
      EXPECT_EQ(labels[lifetime.last_used_phase], "forward 2");
    }
  }
  // The checkpointing step holds less at its peak than store-all.
  const MemoryTimeline store_all =
      record_timeline(executor, store_all_plan(setup.profile), setup.profile, setup.batch);
  EXPECT_LT(timeline.peak.by_category[kActivations], store_all.peak.by_category[kActivations]);
}

TEST(Timeline, OnDemandRecomputationsOfAPolicyArePhasesOfTheirOwn) {
  TinySetup setup = make_setup(/*dropout=*/0);
  Executor executor(setup.model.chain, setup.model.loss);
  // Like a run-time policy: drops graph 2 just before the op after it runs.
  ExecutorHooks policy;
  policy.before_op = [](Executor& ex, const OpEvent& event) {
    if (event.op == Op::forward_with_graph(3) && event.op_index >= 0) ex.evict_graph(2);
  };
  executor.add_hooks(policy);
  const MemoryTimeline timeline = record_timeline(executor, store_all_plan(setup.profile), setup.profile,
                                                  setup.batch, TimelineOptions().warmup_steps(0));
  expect_consistent(timeline);
  EXPECT_EQ(timeline.step.on_demand_count, 2);  // a_3 for Fg3, graph 2 for B2
  int on_demand = 0;
  for (const TimelinePhase& phase : timeline.phases) {
    if (phase.op_index >= 0) continue;
    ++on_demand;
    EXPECT_EQ(phase.kind, "recompute");
  }
  EXPECT_EQ(on_demand, 2);
  // The evicted graph 2 was freed where the policy dropped it, before forward 3.
  const int forward_2 = timeline.find_phase("forward 2");
  int saved_2 = 0;
  for (const ActivationLifetime& lifetime : timeline.lifetimes) {
    if (lifetime.name != "saved_2") continue;
    ++saved_2;
    if (lifetime.created_phase == forward_2) {
      EXPECT_EQ(timeline.phases[lifetime.freed_phase].label, "forward 3");
    } else {
      EXPECT_EQ(timeline.phases[lifetime.freed_phase].label, "backward 2");
    }
  }
  EXPECT_EQ(saved_2, 2);
}

TEST(Timeline, OptimizerStateIsClassifiedAndItsStepTagged) {
  TinySetup setup = make_setup();
  torch::optim::Adam adam(setup.model.chain->parameters(), torch::optim::AdamOptions(1e-3));
  Executor executor(setup.model.chain, setup.model.loss);
  const MemoryTimeline timeline =
      record_timeline(executor, store_all_plan(setup.profile), setup.profile, setup.batch,
                      TimelineOptions().optimizer(&adam).warmup_steps(1));
  expect_consistent(timeline);
  // After one warm-up step Adam holds two moments per trainable parameter.
  EXPECT_EQ(timeline.start_by_category[kOptimizerState], optimizer_state_bytes("adam", *setup.model.chain));
  const int optimizer = timeline.find_phase("optimizer");
  ASSERT_GE(optimizer, 0);
  EXPECT_EQ(optimizer, static_cast<int>(timeline.phases.size()) - 1);
  for (const TimelineEvent& event : timeline.events) {
    if (event.phase_index != optimizer) continue;
    EXPECT_TRUE(event.category == MemoryCategory::OptimizerState ||
                event.category == MemoryCategory::Temporaries)
        << memory_category_name(event.category);
  }
}

TEST(Timeline, FirstStepAllocatesOptimizerStateInsideTheStep) {
  TinySetup setup = make_setup();
  torch::optim::Adam adam(setup.model.chain->parameters(), torch::optim::AdamOptions(1e-3));
  Executor executor(setup.model.chain, setup.model.loss);
  const MemoryTimeline timeline =
      record_timeline(executor, store_all_plan(setup.profile), setup.profile, setup.batch,
                      TimelineOptions().optimizer(&adam).warmup_steps(0));
  expect_consistent(timeline);
  EXPECT_EQ(timeline.start_by_category[kOptimizerState], 0);
  int64_t kept = 0;
  for (const TimelineEvent& event : timeline.events) {
    if (event.category == MemoryCategory::OptimizerState) kept += event.allocate ? event.bytes : -event.bytes;
  }
  EXPECT_EQ(kept, optimizer_state_bytes("adam", *setup.model.chain));
}

TEST(Timeline, JsonFollowsTheFormat) {
  TinySetup setup = make_setup();
  torch::optim::SGD sgd(setup.model.chain->parameters(), torch::optim::SGDOptions(0.01));
  Executor executor(setup.model.chain, setup.model.loss);
  const MemoryTimeline store_all = record_timeline(executor, store_all_plan(setup.profile), setup.profile,
                                                   setup.batch, TimelineOptions().optimizer(&sgd));
  const Plan plan = checkpoint_plan(setup.profile);
  const MemoryTimeline checkpointed =
      record_timeline(executor, plan, setup.profile, setup.batch,
                      TimelineOptions().optimizer(&sgd).budget_bytes(plan.budget_bytes).model("tiny chain"));
  const nlohmann::json document = timelines_to_json({store_all, checkpointed});
  const nlohmann::json parsed = nlohmann::json::parse(document.dump());
  EXPECT_EQ(parsed["format"], "memento.timelines/1");
  ASSERT_EQ(parsed["timelines"].size(), 2u);
  const nlohmann::json& first = parsed["timelines"][0];
  EXPECT_EQ(first["format"], "memento.timeline/1");
  EXPECT_EQ(first["planner"], "store-all");
  EXPECT_TRUE(first["budget_bytes"].is_null());
  EXPECT_EQ(first["model"], "tiny");
  const nlohmann::json& second = parsed["timelines"][1];
  EXPECT_EQ(second["budget_bytes"], plan.budget_bytes);
  EXPECT_EQ(second["model"], "tiny chain");
  EXPECT_EQ(second["predicted_peak_bytes"], plan.predicted_peak_bytes);
  for (const nlohmann::json& timeline : parsed["timelines"]) {
    EXPECT_EQ(timeline["categories"].size(), static_cast<size_t>(kMemoryCategoryCount));
    int64_t start = 0;
    for (const auto& entry : timeline["start_by_category"].items()) start += entry.value().get<int64_t>();
    int64_t live = start;
    for (const nlohmann::json& event : timeline["events"]) {
      ASSERT_TRUE(event["kind"] == "alloc" || event["kind"] == "free");
      ASSERT_TRUE(event["phase"].is_string());
      ASSERT_FALSE(event["phase"].get<std::string>().empty());
      ASSERT_TRUE(timeline["start_by_category"].contains(event["category"].get<std::string>()));
      live += (event["kind"] == "alloc" ? 1 : -1) * event["bytes"].get<int64_t>();
      ASSERT_EQ(event["live_bytes"].get<int64_t>(), live);
    }
    int64_t at_peak = 0;
    for (const auto& entry : timeline["peak"]["by_category"].items()) at_peak += entry.value().get<int64_t>();
    EXPECT_EQ(at_peak, timeline["peak"]["bytes"].get<int64_t>());
    EXPECT_EQ(timeline["measured_peak_bytes"], timeline["peak"]["bytes"]);
    EXPECT_TRUE(timeline["peak"]["phase"].is_string());
    for (const nlohmann::json& phase : timeline["phases"]) {
      const std::string kind = phase["kind"];
      EXPECT_TRUE(kind == "forward" || kind == "recompute" || kind == "backward" || kind == "loss" ||
                  kind == "optimizer" || kind == "free")
          << kind;
    }
    for (const nlohmann::json& lifetime : timeline["lifetimes"]) {
      EXPECT_LE(lifetime["created_s"].get<double>(), lifetime["last_used_s"].get<double>());
      EXPECT_LE(lifetime["last_used_s"].get<double>(), lifetime["freed_s"].get<double>());
    }
  }
}

TEST(Timeline, RejectsBadOptionsAndInfeasiblePlans) {
  TinySetup setup = make_setup();
  Executor executor(setup.model.chain, setup.model.loss);
  EXPECT_THROW(record_timeline(executor, store_all_plan(setup.profile), setup.profile, setup.batch,
                               TimelineOptions().warmup_steps(-1)),
               InvalidArgument);
  Plan infeasible = make_planner("store-all")->plan(setup.profile, PlannerOptions(1));
  ASSERT_FALSE(infeasible.feasible);
  EXPECT_THROW(record_timeline(executor, infeasible, setup.profile, setup.batch), InvalidArgument);
  // Nothing stays attached after a refusal: a following recording works.
  const MemoryTimeline timeline =
      record_timeline(executor, store_all_plan(setup.profile), setup.profile, setup.batch);
  expect_consistent(timeline);
}

}  // namespace
}  // namespace memento
