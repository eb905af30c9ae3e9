// A user's program: its own residual CNN with the usual LibTorch patterns, memento's
// profiler, the optimal planner at 50% of the store-all peak, then training steps through
// the Executor and through PlannedChain in a hand-written loop, each checked bit for bit
// against plain autograd. Exits 1 when any gradient differs.

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <memento/core/budget.h>
#include <memento/core/error.h>
#include <memento/core/planner.h>
#include <memento/torch/checkpoint.h>
#include <memento/torch/executor.h>
#include <memento/torch/planned_chain.h>
#include <memento/torch/profiler.h>

namespace nn = torch::nn;

// x + bn2(conv2(relu_(bn1(conv1(x))))): a residual block, its first ReLU in place.
struct ResidualBlock : memento::StageModule {
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  explicit ResidualBlock(int64_t channels) {
    conv1 =
        register_module("conv1", nn::Conv2d(nn::Conv2dOptions(channels, channels, 3).padding(1).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(channels));
    conv2 =
        register_module("conv2", nn::Conv2d(nn::Conv2dOptions(channels, channels, 3).padding(1).bias(false)));
    bn2 = register_module("bn2", nn::BatchNorm2d(channels));
  }
  memento::TensorList forward(const memento::TensorList& in) override {
    torch::Tensor h = bn1->forward(conv1->forward(in[0]));
    torch::relu_(h);
    return {in[0] + bn2->forward(conv2->forward(h))};
  }
};

std::shared_ptr<memento::Chain> make_model() {
  auto chain = std::make_shared<memento::Chain>();
  nn::Sequential stem(nn::Conv2d(nn::Conv2dOptions(1, 16, 3).padding(1)), nn::BatchNorm2d(16),
                      nn::ReLU(nn::ReLUOptions().inplace(true)));
  chain->add_stage("stem", "conv",
                   std::make_shared<memento::LambdaStage>(
                       [stem](const memento::TensorList& in) mutable -> memento::TensorList {
                         return {stem->forward(in[0])};
                       },
                       stem.ptr()));
  chain->add_stage("block1", "conv", std::make_shared<ResidualBlock>(16));
  nn::Dropout dropout(nn::DropoutOptions(0.2).inplace(true));
  chain->add_stage("dropout", "layer",
                   std::make_shared<memento::LambdaStage>(
                       [dropout](const memento::TensorList& in) mutable -> memento::TensorList {
                         return {dropout->forward(in[0])};
                       },
                       dropout.ptr()));
  chain->add_stage("block2", "conv", std::make_shared<ResidualBlock>(16));
  chain->add_stage("block3", "conv", std::make_shared<ResidualBlock>(16));
  nn::Linear fc(16, 10);
  chain->add_stage("head", "head",
                   std::make_shared<memento::LambdaStage>(
                       [fc](const memento::TensorList& in) mutable -> memento::TensorList {
                         return {fc->forward(torch::adaptive_avg_pool2d(in[0], {1, 1}).flatten(1))};
                       },
                       fc.ptr()));
  chain->train();
  return chain;
}

memento::Batch make_batch(uint64_t seed) {
  torch::manual_seed(seed);
  return {{torch::randn({32, 1, 28, 28})}, {torch::randint(0, 10, {32}, torch::kInt64)}};
}

torch::Tensor loss_of(const memento::TensorList& outputs, const memento::TensorList& targets) {
  return torch::nn::functional::cross_entropy(outputs[0], targets[0]);
}

struct Snapshot {
  std::vector<torch::Tensor> tensors;  // gradients, then buffers
};

Snapshot snapshot(memento::Chain& chain) {
  Snapshot result;
  for (const torch::Tensor& p : chain.parameters())
    result.tensors.push_back(p.grad().defined() ? p.grad().clone() : p);
  for (const torch::Tensor& b : chain.buffers()) result.tensors.push_back(b.clone());
  return result;
}

bool bitwise_equal(const Snapshot& a, const Snapshot& b) {
  if (a.tensors.size() != b.tensors.size()) return false;
  for (size_t k = 0; k < a.tensors.size(); ++k) {
    const torch::Tensor x = a.tensors[k].contiguous(), y = b.tensors[k].contiguous();
    if (x.sizes() != y.sizes() || std::memcmp(x.data_ptr(), y.data_ptr(), x.numel() * x.element_size()) != 0)
      return false;
  }
  return true;
}

// Puts the model back where it was: no gradients, the saved buffers, the same seed.
void reset(memento::Chain& chain, const std::vector<torch::Tensor>& buffers, uint64_t seed) {
  torch::NoGradGuard no_grad;
  for (torch::Tensor& p : chain.parameters()) p.mutable_grad() = torch::Tensor();
  auto current = chain.buffers();
  for (size_t k = 0; k < current.size(); ++k) current[k].copy_(buffers[k]);
  torch::manual_seed(seed);
}

int main() {
  torch::manual_seed(0);
  auto chain = make_model();
  std::vector<torch::Tensor> buffers;
  for (const torch::Tensor& b : chain->buffers()) buffers.push_back(b.clone());

  const memento::ChainProfile profile = memento::profile_chain(*chain, make_batch(1), loss_of);
  const int64_t budget = memento::parse_budget("50%", profile);
  const memento::Plan plan = memento::make_planner("optimal")->plan(profile, memento::PlannerOptions(budget));
  if (!plan.feasible) {
    std::printf("optimal is infeasible at 50%%: needs %s\n",
                memento::format_bytes(plan.min_feasible_budget_bytes).c_str());
    return 1;
  }
  std::printf("plan: optimal at %s (50%% of store-all %s): predicted peak %s, %d recomputed forwards\n",
              memento::format_bytes(budget).c_str(),
              memento::format_bytes(memento::store_all_peak_bytes(profile)).c_str(),
              memento::format_bytes(plan.predicted_peak_bytes).c_str(), plan.recompute_count);
  std::printf("schedule: %s\n", memento::to_string(plan.schedule).c_str());

  bool all_equal = true;
  memento::Executor executor(chain, loss_of);
  memento::PlannedChain planned(chain, plan);
  for (uint64_t step = 0; step < 3; ++step) {
    const memento::Batch batch = make_batch(100 + step);
    reset(*chain, buffers, 7 + step);
    loss_of(chain->forward(batch.inputs), batch.targets).backward();
    const Snapshot plain = snapshot(*chain);

    reset(*chain, buffers, 7 + step);
    const memento::StepResult result = executor.step(plan, batch);
    const bool executor_equal = bitwise_equal(plain, snapshot(*chain));

    reset(*chain, buffers, 7 + step);
    loss_of(planned.forward(batch.inputs), batch.targets).backward();
    const bool loop_equal = bitwise_equal(plain, snapshot(*chain));

    std::printf(
        "step %d: loss %.4f, measured peak %s above the start; bit-identical to plain autograd: executor %s, "
        "own loop %s\n",
        static_cast<int>(step), result.loss,
        memento::format_bytes(result.peak_bytes - result.start_bytes).c_str(), executor_equal ? "yes" : "NO",
        loop_equal ? "yes" : "NO");
    all_equal = all_equal && executor_equal && loop_equal;
  }

  // A misuse gets a clear error: an infeasible plan.
  const memento::Plan too_small =
      memento::make_planner("optimal")->plan(profile, memento::PlannerOptions(profile.fixed_bytes));
  try {
    executor.step(too_small, make_batch(2));
    all_equal = false;
  } catch (const memento::InvalidArgument& error) {
    std::printf("infeasible plan refused: %s\n", error.what());
  }
  std::printf("%s\n", all_equal ? "memento consumer: OK" : "memento consumer: FAILED");
  return all_equal ? 0 : 1;
}
