// `chen-greedy`: Chen, Xu, Zhang, Guestrin 2016, "Training Deep Nets with Sublinear
// Memory Cost", Algorithm 3 (memory planning with budget b) on a chain, with the
// paper's search over b.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>
#include <utility>
#include <vector>

#include "planners.h"
#include "segments.h"

namespace memento {

namespace {

struct GreedyPass {
  std::vector<int> segment_starts;   // 0, then the stage after each chosen split point
  double inter_stage_bytes = 0;      // the paper's x: bytes of the kept segment outputs
  double largest_segment_bytes = 0;  // the paper's y: the largest running total at a split
};

// Algorithm 3: walk the stages accumulating what autograd saves; when the running total
// exceeds b, the current stage's output becomes a kept split point and the total restarts.
// Every a_1..a_{L-1} is a candidate split point; a_L (the loss input) cannot be one.
GreedyPass greedy_pass(const ChainProfile& profile, double per_segment_bytes) {
  GreedyPass pass;
  pass.segment_starts.push_back(0);
  double running_bytes = 0;
  for (int i = 0; i < profile.length(); ++i) {
    const StageProfile& stage = profile.stages[i];
    running_bytes += static_cast<double>(stage.saved_bytes);
    if (i + 1 < profile.length() && running_bytes > per_segment_bytes) {
      pass.inter_stage_bytes += static_cast<double>(stage.output_bytes);
      pass.largest_segment_bytes = std::max(pass.largest_segment_bytes, running_bytes);
      pass.segment_starts.push_back(i + 1);
      running_bytes = 0;
    }
  }
  return pass;
}

// Half-octave steps over 2^-8..2^8 around sqrt(x y): wide enough to reach both one
// segment per stage and a single segment on chains with uneven stages.
constexpr int kGridStepsPerOctave = 4;
constexpr int kGridOctaves = 8;

class ChenGreedyPlanner : public Planner {
 public:
  std::string name() const override { return "chen-greedy"; }
  std::string description() const override {
    return "Chen et al. 2016 greedy segmentation under a per-segment budget b, searching b around sqrt(x*y) "
           "for "
           "the fastest plan that fits";
  }

  Plan make_plan(const ChainProfile& profile, const PlannerOptions& options) const override {
    const auto start = std::chrono::steady_clock::now();
    // The paper's first pass with b = 0 measures x (what keeping every split costs) and
    // y (the largest stage); b = sqrt(x y) balances the kept splits against one
    // segment's recomputed graph, and a grid around it is searched.
    const GreedyPass first = greedy_pass(profile, 0);
    const double centre_bytes = std::sqrt(first.inter_stage_bytes * first.largest_segment_bytes);

    std::vector<double> per_segment_budgets = {0, std::numeric_limits<double>::infinity()};
    for (int step = -kGridOctaves * kGridStepsPerOctave; step <= kGridOctaves * kGridStepsPerOctave; ++step) {
      per_segment_budgets.push_back(centre_bytes *
                                    std::exp2(static_cast<double>(step) / kGridStepsPerOctave));
    }

    // Different b often give the same segmentation: score each distinct one once.
    std::set<std::vector<int>> seen;
    std::vector<detail::ScoredSchedule> candidates;
    for (double per_segment_bytes : per_segment_budgets) {
      GreedyPass pass = greedy_pass(profile, per_segment_bytes);
      if (!seen.insert(pass.segment_starts).second) continue;
      candidates.push_back(
          detail::score_schedule(profile, detail::segment_schedule(profile.length(), pass.segment_starts)));
    }
    return detail::plan_from_candidates(name(), profile, options, std::move(candidates), start);
  }
};

}  // namespace

std::unique_ptr<Planner> make_chen_greedy_planner() {
  return std::make_unique<ChenGreedyPlanner>();
}

}  // namespace memento
