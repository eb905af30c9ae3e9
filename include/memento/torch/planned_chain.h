#pragma once
/// \file
/// `PlannedChain`: runs a memento `Plan` inside your own training loop. `forward()` runs
/// the plan's ops before its `Loss` and returns the chain's output, connected to your
/// autograd graph; you compute the loss, call `loss.backward()` (or
/// `torch::autograd::backward`) and step your own optimizer. The backward then runs the
/// plan's ops after `Loss` (recomputations and stage backwards) exactly as
/// `Executor::step` does, so parameter gradients are those of plain autograd bit for bit,
/// and passes the input gradients on to whatever produced the inputs.
///
/// Rules:
/// - the plan must be feasible and static (any exact planner; not `dtr`, which decides at
///   run time: use PlanRunner);
/// - with autograd disabled (NoGradGuard, evaluation) `forward` simply runs the chain;
/// - each forward's backward runs once (no retain_graph), and double backward
///   (`create_graph = true`) raises RuntimeError;
/// - several forwards may be outstanding (gradient accumulation): each keeps what its
///   schedule keeps until its backward runs, or until its outputs are dropped.
///
/// Example:
/// \code
///   auto chain = memento::Chain::from_sequential(net);
///   memento::ChainProfile profile = memento::profile_chain(*chain, batch, loss);
///   memento::Plan plan = memento::make_planner("optimal")->plan(profile,
///   memento::PlannerOptions(budget_bytes)); memento::PlannedChain planned(chain, plan);  // throws if the
///   plan is infeasible torch::optim::SGD optimizer(chain->parameters(), 0.1); for (auto& [x, y] : data) {
///     optimizer.zero_grad();
///     torch::Tensor out = planned.forward(x);
///     torch::nn::functional::cross_entropy(out, y).backward();
///     optimizer.step();
///   }
/// \endcode

#include <memory>

#include "memento/core/planner.h"
#include "memento/torch/chain.h"

namespace memento {

class Executor;

class PlannedChain {
 public:
  /// Throws InvalidArgument when `plan` is infeasible, names a run-time policy, or its
  /// schedule does not fit `chain` (checked with simulate()).
  PlannedChain(std::shared_ptr<Chain> chain, const Plan& plan);
  ~PlannedChain();
  PlannedChain(const PlannedChain&) = delete;
  PlannedChain& operator=(const PlannedChain&) = delete;

  /// Runs the forward part of the plan on `inputs` (a_0) and returns a_L.
  TensorList forward(const TensorList& inputs);
  /// The same for chains of one tensor in and one out (a wrapped Sequential).
  torch::Tensor forward(const torch::Tensor& input);

  /// Replaces the plan (same checks as the constructor); outstanding forwards keep theirs.
  void set_plan(const Plan& plan);
  const Plan& plan() const { return plan_; }
  Chain& chain() const { return *chain_; }

 private:
  std::shared_ptr<Chain> chain_;
  std::shared_ptr<Executor> executor_;
  Plan plan_;
};

}  // namespace memento
