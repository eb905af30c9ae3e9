#pragma once
// Factories of the built-in planners; the registry (planner.cpp) lists them by name.
// Internal to the core: users go through make_planner(name).

#include <memory>

#include "memento/core/planner.h"

namespace memento {

std::unique_ptr<Planner> make_store_all_planner();
std::unique_ptr<Planner> make_recompute_all_planner();
std::unique_ptr<Planner> make_uniform_planner();
std::unique_ptr<Planner> make_sqrt_n_planner();
std::unique_ptr<Planner> make_chen_greedy_planner();
std::unique_ptr<Planner> make_revolve_planner();
std::unique_ptr<Planner> make_optimal_planner();
std::unique_ptr<Planner> make_mutwo_planner();
std::unique_ptr<Planner> make_selective_planner();
std::unique_ptr<Planner> make_dtr_planner();
std::unique_ptr<Planner> make_gac_planner();

}  // namespace memento
