#pragma once
/// \file
/// Seeded random chain profiles for the core tests: heterogeneous times, sizes and
/// temporaries that always pass validate_profile(), so planners and simulators can be
/// checked on hundreds of chains with a reproducible seed.
///
/// Example:
/// \code
///   std::mt19937_64 rng(42);
///   memento::ChainProfile profile = memento::testing::random_profile(rng, 8);
///   int64_t budget = memento::testing::random_budget(rng, profile);
/// \endcode

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include "memento/core/profile.h"
#include "memento/core/schedule.h"
#include "memento/core/simulate.h"

namespace memento {
namespace testing {

/// Shape of the chains random_profile() draws.
struct RandomProfileOptions {
  int64_t min_activation_bytes = 1 << 10;  ///< smallest activation size a_i
  int64_t max_activation_bytes = 1 << 20;  ///< largest activation size a_i
  double max_saved_factor = 6.0;           ///< saved_bytes is output_bytes x [1, max_saved_factor]
  double temp_probability = 0.5;           ///< chance a stage has forward/backward temporaries
  double zero_probability = 0.0;           ///< chance a size or time is 0 (edge cases)
  int64_t max_fixed_bytes = 1 << 22;       ///< fixed_bytes is drawn from [0, max_fixed_bytes]
  bool homogeneous = false;                ///< every stage identical (Revolve's setting)
};

/// Draws an integer uniformly from [low, high].
inline int64_t uniform_int(std::mt19937_64& rng, int64_t low, int64_t high) {
  return std::uniform_int_distribution<int64_t>(low, std::max(low, high))(rng);
}

/// Draws a double log-uniformly from [low, high] (low > 0).
inline double log_uniform(std::mt19937_64& rng, double low, double high) {
  std::uniform_real_distribution<double> exponent(std::log(low), std::log(high));
  return std::exp(exponent(rng));
}

/// A valid ChainProfile of `length` stages (length >= 1) with heterogeneous costs:
/// forward times log-uniform in [1e-4, 1e-2] s, backward 1-3x forward, activation sizes
/// log-uniform in [min, max]_activation_bytes, saved_bytes >= output_bytes, optional
/// temporaries. Deterministic for a given rng state.
inline ChainProfile random_profile(std::mt19937_64& rng, int length,
                                   const RandomProfileOptions& options = {}) {
  std::bernoulli_distribution zero(options.zero_probability);
  std::bernoulli_distribution has_temp(options.temp_probability);
  auto activation = [&]() -> int64_t {
    if (zero(rng)) return 0;
    return static_cast<int64_t>(
        log_uniform(rng, static_cast<double>(std::max<int64_t>(1, options.min_activation_bytes)),
                    static_cast<double>(std::max<int64_t>(1, options.max_activation_bytes))));
  };
  auto draw_stage = [&](int index, int64_t input_bytes, int64_t output_bytes) {
    StageProfile stage;
    stage.name = "stage" + std::to_string(index);
    stage.kind = index % 2 == 0 ? "attention" : "mlp";
    stage.forward_s = zero(rng) ? 0.0 : log_uniform(rng, 1e-4, 1e-2);
    stage.backward_s =
        zero(rng) ? 0.0 : stage.forward_s * std::uniform_real_distribution<double>(1.0, 3.0)(rng);
    stage.input_bytes = input_bytes;
    stage.output_bytes = output_bytes;
    const double saved_factor = std::uniform_real_distribution<double>(1.0, options.max_saved_factor)(rng);
    stage.saved_bytes = static_cast<int64_t>(static_cast<double>(output_bytes) * saved_factor) +
                        (zero(rng) ? 0 : uniform_int(rng, 0, input_bytes));
    if (has_temp(rng)) {
      stage.forward_temp_bytes = uniform_int(rng, 0, 2 * std::max(input_bytes, output_bytes));
      stage.backward_temp_bytes = uniform_int(rng, 0, 2 * std::max(input_bytes, output_bytes));
      // Half the stages measure a different no-grad transient (dropout masks, etc.).
      if (zero(rng))
        stage.forward_no_grad_temp_bytes = uniform_int(rng, 0, 2 * std::max(input_bytes, output_bytes));
      if (zero(rng)) stage.backward_released_bytes = uniform_int(rng, 0, stage.saved_bytes);
    }
    stage.flops = stage.forward_s * 1e12;
    return stage;
  };

  ChainProfile profile;
  profile.model = "random-" + std::to_string(length);
  profile.fixed_bytes = uniform_int(rng, 0, options.max_fixed_bytes);
  if (options.homogeneous) {
    const int64_t size = std::max<int64_t>(1, activation());
    const StageProfile stage = draw_stage(0, size, size);
    for (int i = 0; i < length; ++i) {
      profile.stages.push_back(stage);
      profile.stages.back().name = "stage" + std::to_string(i);
    }
    return profile;
  }
  int64_t input_bytes = activation();
  for (int i = 0; i < length; ++i) {
    const int64_t output_bytes = activation();
    profile.stages.push_back(draw_stage(i, input_bytes, output_bytes));
    input_bytes = output_bytes;
  }
  // Often a head whose backward does not need its output (logits), and loss transients.
  StageProfile& last = profile.stages.back();
  if (!zero(rng)) last.output_droppable_bytes = uniform_int(rng, 0, last.output_bytes);
  if (has_temp(rng)) profile.loss_temp_bytes = uniform_int(rng, 0, 2 * last.output_bytes);
  return profile;
}

/// A budget drawn between a lower bound every schedule needs (fixed bytes plus the
/// largest single stage's graph) and 110% of the store-all peak, so that planners see
/// both feasible and infeasible budgets.
inline int64_t random_budget(std::mt19937_64& rng, const ChainProfile& profile) {
  int64_t largest_stage_bytes = 0;
  for (const StageProfile& stage : profile.stages) {
    largest_stage_bytes = std::max(largest_stage_bytes, stage.saved_bytes + stage.forward_temp_bytes);
    largest_stage_bytes = std::max(largest_stage_bytes, stage.output_bytes + stage.no_grad_temp_bytes());
  }
  const int64_t low = profile.fixed_bytes + largest_stage_bytes;
  const int64_t store_all_peak = simulate(profile, store_all_schedule(profile.length())).peak_bytes;
  return uniform_int(rng, low, store_all_peak + store_all_peak / 10);
}

/// Lossy costs as a codec would give them: the graph shrinks by `factor` (the input, which
/// a lossy graph packs too, counted in), packing costs a fraction of the forward.
inline void add_lossy_costs(std::mt19937_64& rng, ChainProfile& profile, Codec codec, double factor) {
  for (StageProfile& stage : profile.stages) {
    StageProfile::LossyCost cost;
    cost.codec = codec;
    const int64_t saved = stage.saved_bytes - stage.output_bytes + stage.input_bytes + stage.output_bytes;
    cost.saved_bytes = static_cast<int64_t>(static_cast<double>(std::max<int64_t>(saved, 0)) * factor);
    cost.forward_temp_bytes = uniform_int(rng, 0, stage.forward_temp_bytes + 1);
    cost.backward_temp_bytes = stage.backward_temp_bytes + uniform_int(rng, 0, stage.input_bytes + 1);
    cost.pack_s = stage.forward_s * std::uniform_real_distribution<double>(0.01, 0.3)(rng);
    cost.unpack_s = stage.backward_s * std::uniform_real_distribution<double>(0.01, 0.3)(rng);
    stage.lossy.push_back(cost);
  }
}

}  // namespace testing
}  // namespace memento
