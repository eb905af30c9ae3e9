#pragma once
/// \file
/// What the run-time policy tests (DTR, GAC) share: one step from a fixed state through a
/// PlanRunner or plain autograd, compared bit for bit, and a measured profile.
///
/// Example:
/// \code
///   const memento::ChainProfile profile = memento::testing::profile_of(model);
///   const auto initial = memento::testing::buffers(*model.chain);
///   const memento::testing::Outcome plain = memento::testing::run(model, initial, 4, nullptr);
///   memento::testing::expect_identical(plain, memento::testing::run(model, initial, 4, &runner), "what");
/// \endcode

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "memento/core/budget.h"
#include "memento/torch/executor.h"
#include "memento/torch/memory.h"
#include "memento/torch/plan_runner.h"
#include "memento/torch/profiler.h"
#include "support.h"

namespace memento {
namespace testing {

// Gradients, loss and the generator after one step from a fixed state (zeroed gradients,
// the initial buffers, the batch of `seed`, the generator seeded for dropout).
struct Outcome {
  std::vector<torch::Tensor> grads;
  std::vector<torch::Tensor> buffers;
  torch::Tensor next_random;
  StepResult step;
};

inline Outcome run(TinyModel& model, const std::vector<torch::Tensor>& initial_buffers, uint64_t seed,
                   PlanRunner* runner) {
  {
    // Zero-filled, not cleared: the gradients stay allocated (fixed bytes, as in the profile)
    // so a step's memory above its start is activations and temporaries only.
    torch::NoGradGuard no_grad;
    for (torch::Tensor& parameter : model.chain->parameters()) {
      if (parameter.grad().defined()) {
        parameter.mutable_grad().zero_();
      } else {
        parameter.mutable_grad() = torch::zeros_like(parameter);
      }
    }
  }
  restore_buffers(*model.chain, initial_buffers);
  Batch batch = model.batch(seed);
  seed_all(seed + 1000);
  Outcome outcome;
  outcome.step = runner ? runner->step(batch) : plain_step(*model.chain, model.loss, batch);
  outcome.grads = gradients(*model.chain);
  for (const torch::Tensor& input : batch.inputs) outcome.grads.push_back(input.grad());
  outcome.buffers = buffers(*model.chain);
  outcome.next_random = torch::rand({4});
  return outcome;
}

inline void expect_identical(const Outcome& plain, const Outcome& dtr, const std::string& what) {
  EXPECT_EQ(plain.step.loss, dtr.step.loss) << what;
  ASSERT_EQ(plain.grads.size(), dtr.grads.size()) << what;
  for (size_t k = 0; k < plain.grads.size(); ++k) {
    EXPECT_TRUE(bitwise_equal(plain.grads[k], dtr.grads[k])) << what << ": gradient " << k;
  }
  EXPECT_TRUE(bitwise_equal(plain.buffers, dtr.buffers)) << what << ": buffers";
  EXPECT_TRUE(bitwise_equal(plain.next_random, dtr.next_random)) << what << ": generator";
}

inline ChainProfile profile_of(TinyModel& model, std::vector<Codec> codecs = {}) {
  MemoryTracker::instance();
  Batch batch = model.batch(1);
  ChainProfile profile =
      profile_chain(*model.chain, batch, model.loss,
                    ProfilerOptions().warmup_runs(0).timed_runs(1).codecs(std::move(codecs)));
  plain_step(*model.chain, model.loss, batch);  // allocate the parameter gradients (fixed bytes)
  return profile;
}

// A budget `fraction` of the way from the fixed bytes to the store-all peak.
inline int64_t budget_at(const ChainProfile& profile, double fraction) {
  const int64_t room = store_all_peak_bytes(profile) - profile.fixed_bytes;
  return profile.fixed_bytes + static_cast<int64_t>(fraction * static_cast<double>(room));
}

}  // namespace testing
}  // namespace memento
