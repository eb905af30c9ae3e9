// `gac`: gradient-aware checkpointing (core/gac.h). The plan is the first step's
// schedule; from then on the run-time policy "gac" (PlanRunner) re-decides after every
// measured backward. Its least budget is the bottom of the GAC storage ladder: every stage
// recomputed, which the budget enforcement always reaches.
#include <chrono>

#include "memento/core/gac.h"
#include "planners.h"
#include "segments.h"

namespace memento {

namespace {

class GacPlanner : public Planner {
 public:
  std::string name() const override { return "gac"; }
  std::string description() const override {
    return "gradient-aware checkpointing: stages whose output gradients fall below an adaptive threshold are "
           "recomputed (or packed with codecs), re-decided during training";
  }
  bool supports_codecs() const override { return true; }

  Plan make_plan(const ChainProfile& profile, const PlannerOptions& options) const override {
    const auto start = std::chrono::steady_clock::now();
    const GacController controller(profile, options.budget_bytes(), options.gac(), options.codecs());
    const int64_t least_bytes = controller.least_budget_bytes();
    if (least_bytes > options.budget_bytes()) {
      return infeasible_plan(name(), options, detail::seconds_since(start), least_bytes);
    }
    Plan plan = finish_plan(name(), profile, options, controller.schedule(), detail::seconds_since(start),
                            least_bytes);
    plan.runtime_policy = "gac";
    plan.gac = options.gac();
    return plan;
  }
};

}  // namespace

std::unique_ptr<Planner> make_gac_planner() {
  return std::make_unique<GacPlanner>();
}

}  // namespace memento
