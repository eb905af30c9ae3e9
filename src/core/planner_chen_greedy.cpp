// PLACEHOLDER until the planner lands: replaced by its real implementation.
#include <stdexcept>
#include "planners.h"
namespace memento {
std::unique_ptr<Planner> make_chen_greedy_planner() { throw std::logic_error("planner chen_greedy: PLACEHOLDER"); }
}  // namespace memento
