// `selective`: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
// Transformer Models", selective activation recomputation: recompute only the
// attention core (scores, softmax, dropout, attention over values), whose saved tensors
// grow with the square of the sequence length while its FLOPs are small, and keep
// every other stage's graph.
#include <chrono>
#include <utility>
#include <vector>

#include "decisions.h"
#include "memento/core/simulate.h"
#include "planners.h"
#include "segments.h"

namespace memento {

namespace {

constexpr const char* kAttentionCoreKind = "attention_core";

class SelectivePlanner : public Planner {
 public:
  std::string name() const override { return "selective"; }
  std::string description() const override {
    return "Korthikanti et al. selective recomputation: recompute only attention_core stages, keep every "
           "other graph (needs a fine-granularity profile)";
  }

  Plan make_plan(const ChainProfile& profile, const PlannerOptions& options) const override {
    const auto start = std::chrono::steady_clock::now();
    std::vector<detail::StageDecision> decisions;
    decisions.reserve(profile.stages.size());
    for (const StageProfile& stage : profile.stages) {
      decisions.push_back(stage.kind == kAttentionCoreKind ? detail::StageDecision::Recompute
                                                           : detail::StageDecision::Keep);
    }
    // One budget-independent schedule (store-all when no stage is an attention core):
    // its own peak is the least budget at which this planner succeeds.
    Schedule schedule = detail::schedule_from_decisions(profile, decisions);
    const int64_t peak_bytes = simulate(profile, schedule).peak_bytes;
    return finish_plan(name(), profile, options, std::move(schedule), detail::seconds_since(start),
                       peak_bytes);
  }
};

}  // namespace

std::unique_ptr<Planner> make_selective_planner() {
  return std::make_unique<SelectivePlanner>();
}

}  // namespace memento
