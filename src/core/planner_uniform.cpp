// PLACEHOLDER until the planner lands: replaced by its real implementation.
#include <stdexcept>
#include "planners.h"
namespace memento {
std::unique_ptr<Planner> make_uniform_planner() { throw std::logic_error("planner uniform: PLACEHOLDER"); }
}  // namespace memento
