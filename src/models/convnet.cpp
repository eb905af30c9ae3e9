// ResNet (v1.5: the stride sits in the 3x3 convolution, as in torchvision) and the
// residual MLP classifier. As in transformer.cpp, the chain runs each block as a list of
// units over a tensor tuple (one stage per block, or one per conv/bn/relu unit), while
// `reference_forward` composes the same modules directly.
#include <cmath>

#include "families.h"
#include "memento/core/error.h"

namespace memento::models {
namespace {

namespace nn = torch::nn;
using torch::Tensor;

class ConvBnImpl : public nn::Module {
 public:
  ConvBnImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride)
      : conv(register_module("conv", nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, kernel)
                                                    .stride(stride)
                                                    .padding(kernel / 2)
                                                    .bias(false)))),
        norm(register_module("norm", nn::BatchNorm2d(out_channels))) {}

  Tensor forward(const Tensor& x) { return norm->forward(conv->forward(x)); }

  nn::Conv2d conv;
  nn::BatchNorm2d norm;
};
TORCH_MODULE(ConvBn);

// A residual block as conv/bn units: relu after every unit but the last; the last unit
// adds the (possibly downsampled) identity before its relu.
class ResidualBlockImpl : public nn::Module {
 public:
  ResidualBlockImpl(int64_t in_channels, int64_t width, int64_t stride, bool bottleneck) {
    const int64_t out_channels = bottleneck ? 4 * width : width;
    if (bottleneck) {
      units.push_back(ConvBn(in_channels, width, 1, 1));
      units.push_back(ConvBn(width, width, 3, stride));
      units.push_back(ConvBn(width, out_channels, 1, 1));
    } else {
      units.push_back(ConvBn(in_channels, width, 3, stride));
      units.push_back(ConvBn(width, out_channels, 3, 1));
    }
    for (size_t index = 0; index < units.size(); ++index)
      register_module("unit" + std::to_string(index), units[index]);
    if (stride != 1 || in_channels != out_channels) {
      downsample = register_module("downsample", ConvBn(in_channels, out_channels, 1, stride));
    }
  }

  Tensor shortcut(const Tensor& x) { return downsample ? downsample->forward(x) : x; }

  /// The reference: the block written directly.
  Tensor forward(const Tensor& x) {
    Tensor y = x;
    for (size_t index = 0; index + 1 < units.size(); ++index) y = torch::relu(units[index]->forward(y));
    return torch::relu(units.back()->forward(y) + shortcut(x));
  }

  std::vector<ConvBn> units;
  ConvBn downsample{nullptr};
};
TORCH_MODULE(ResidualBlock);

class StemImpl : public nn::Module {
 public:
  StemImpl(int64_t channels, int64_t width) : unit(register_module("unit", ConvBn(channels, width, 7, 2))) {}

  Tensor convolve(const Tensor& images) { return torch::relu(unit->forward(images)); }
  static Tensor pool(const Tensor& x) { return torch::max_pool2d(x, 3, 2, 1); }
  Tensor forward(const Tensor& images) { return pool(convolve(images)); }

  ConvBn unit;
};
TORCH_MODULE(Stem);

class ResNetImpl : public nn::Module {
 public:
  explicit ResNetImpl(const ModelConfig& config)
      : stem(register_module("stem", Stem(config.channels, config.hidden_size))) {
    nn::ModuleList list;
    int64_t in_channels = config.hidden_size;
    for (size_t stage = 0; stage < config.resnet_blocks.size(); ++stage) {
      const int64_t width = config.hidden_size << stage;
      for (int64_t index = 0; index < config.resnet_blocks[stage]; ++index) {
        const int64_t stride = (stage > 0 && index == 0) ? 2 : 1;
        blocks.push_back(ResidualBlock(in_channels, width, stride, config.bottleneck));
        list->push_back(blocks.back());
        in_channels = config.bottleneck ? 4 * width : width;
      }
    }
    register_module("blocks", list);
    classifier = register_module("classifier", nn::Linear(in_channels, config.num_classes));
  }

  Tensor classify(const Tensor& features) { return classifier->forward(features.mean({2, 3})); }

  Tensor forward(const Tensor& images) {
    Tensor x = stem->forward(images);
    for (ResidualBlock& block : blocks) x = block->forward(x);
    return classify(x);
  }

  Stem stem;
  std::vector<ResidualBlock> blocks;
  nn::Linear classifier{nullptr};
};
TORCH_MODULE(ResNet);

void expect_inputs(const TensorList& inputs, size_t count, const std::string& stage,
                   const std::string& what) {
  if (inputs.size() != count) {
    throw InvalidArgument("stage " + stage + " expects " + what + " (" + std::to_string(count) +
                          " tensors), got " + std::to_string(inputs.size()));
  }
}

void check_images(const Tensor& images, const ModelConfig& config) {
  if (images.dim() != 4 || images.size(1) != config.channels) {
    throw InvalidArgument(config.name + " expects images of shape [batch, " +
                          std::to_string(config.channels) + ", height, width]");
  }
}

// One unit of a residual block over the tuple {x, y}: x is the block input (kept for the
// shortcut), y the running branch.
struct Unit {
  std::string name;
  std::shared_ptr<nn::Module> owner;
  LambdaStage::Function function;
};

std::vector<Unit> block_units(const ResidualBlock& block) {
  std::vector<Unit> units;
  const size_t count = block->units.size();
  for (size_t index = 0; index + 1 < count; ++index) {
    ConvBn unit = block->units[index];
    const bool first = index == 0;
    units.push_back(
        {"unit" + std::to_string(index), unit.ptr(), [unit, first](const TensorList& tuple) mutable {
           expect_inputs(tuple, first ? 1 : 2, "residual unit", first ? "{x}" : "{x, y}");
           return TensorList{tuple[0], torch::relu(unit->forward(tuple.back()))};
         }});
  }
  ConvBn last = block->units.back();
  ResidualBlock owner_block = block;
  auto owner = std::make_shared<BundleImpl>(std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>{
      {"unit", last.ptr()}, {"downsample", block->downsample ? block->downsample.ptr() : nullptr}});
  units.push_back(
      {"unit" + std::to_string(count - 1), owner, [last, owner_block](const TensorList& tuple) mutable {
         expect_inputs(tuple, 2, "residual unit", "{x, y}");
         return TensorList{torch::relu(last->forward(tuple[1]) + owner_block->shortcut(tuple[0]))};
       }});
  return units;
}

// Kaiming-normal (fan out, ReLU) convolutions, unit BatchNorm, and the default uniform
// init of the classifier, as torchvision does.
void init_resnet(nn::Module& root, at::Generator& generator) {
  for (const auto& module : root.modules()) {
    if (auto* conv = dynamic_cast<nn::Conv2dImpl*>(module.get())) {
      const auto& kernel = conv->options.kernel_size();
      const double fan_out = static_cast<double>(conv->options.out_channels() * (*kernel)[0] * (*kernel)[1]);
      init_normal(conv->weight, std::sqrt(2.0 / fan_out), generator);
    } else if (auto* norm = dynamic_cast<nn::BatchNorm2dImpl*>(module.get())) {
      init_constant(norm->weight, 1);
      init_constant(norm->bias, 0);
    } else if (auto* linear = dynamic_cast<nn::LinearImpl*>(module.get())) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(linear->options.in_features()));
      init_uniform(linear->weight, bound, generator);
      init_uniform(linear->bias, bound, generator);
    }
  }
}

// ---------------------------------------------------------------------------- MLP
class MlpBlockImpl : public nn::Module {
 public:
  MlpBlockImpl(const ModelConfig& config)
      : norm(register_module("norm", nn::LayerNorm(nn::LayerNormOptions({config.hidden_size})))),
        fc(register_module("fc", nn::Linear(config.hidden_size, config.mlp_size))),
        projection(register_module("projection", nn::Linear(config.mlp_size, config.hidden_size))),
        dropout(register_module("dropout", nn::Dropout(config.dropout))) {}

  Tensor branch(const Tensor& normed) {
    return dropout->forward(projection->forward(torch::gelu(fc->forward(normed))));
  }
  Tensor forward(const Tensor& hidden) { return hidden + branch(norm->forward(hidden)); }

  nn::LayerNorm norm;
  nn::Linear fc;
  nn::Linear projection;
  nn::Dropout dropout;
};
TORCH_MODULE(MlpBlock);

class MlpNetImpl : public nn::Module {
 public:
  explicit MlpNetImpl(const ModelConfig& config)
      : config_(config),
        input(register_module("input", nn::Linear(config.input_features, config.hidden_size))) {
    nn::ModuleList list;
    for (int64_t index = 0; index < config.num_layers; ++index) {
      blocks.push_back(MlpBlock(config));
      list->push_back(blocks.back());
    }
    register_module("blocks", list);
    final_norm = register_module("final_norm", nn::LayerNorm(nn::LayerNormOptions({config.hidden_size})));
    classifier = register_module("classifier", nn::Linear(config.hidden_size, config.num_classes));
  }

  Tensor embed(const Tensor& features) {
    if (features.dim() != 2 || features.size(1) != config_.input_features) {
      throw InvalidArgument(config_.name + " expects features of shape [batch, " +
                            std::to_string(config_.input_features) +
                            "]; set input_features to match the data");
    }
    return input->forward(features);
  }
  Tensor classify(const Tensor& hidden) { return classifier->forward(final_norm->forward(hidden)); }
  Tensor forward(const Tensor& features) {
    Tensor hidden = embed(features);
    for (MlpBlock& block : blocks) hidden = block->forward(hidden);
    return classify(hidden);
  }

  ModelConfig config_;
  nn::Linear input;
  std::vector<MlpBlock> blocks;
  nn::LayerNorm final_norm{nullptr};
  nn::Linear classifier{nullptr};
};
TORCH_MODULE(MlpNet);

}  // namespace

BuiltNetwork build_resnet(const ModelConfig& config) {
  at::Generator generator = at::detail::createCPUGenerator(config.seed);
  ResNet resnet(config);
  init_resnet(*resnet, generator);

  auto chain = std::make_shared<Chain>();
  Stem stem = resnet->stem;
  const ModelConfig checked = config;
  if (config.fine) {
    chain->add_stage("stem.unit", "conv",
                     make_stage(
                         [stem, checked](const TensorList& inputs) mutable -> TensorList {
                           expect_inputs(inputs, 1, "stem.unit", "{images}");
                           check_images(inputs[0], checked);
                           return {stem->convolve(inputs[0])};
                         },
                         stem->unit.ptr()));
    chain->add_stage("stem.pool", "pool", make_stage([](const TensorList& inputs) -> TensorList {
                       expect_inputs(inputs, 1, "stem.pool", "{features}");
                       return {StemImpl::pool(inputs[0])};
                     }));
  } else {
    chain->add_stage("stem", "conv",
                     make_stage(
                         [stem, checked](const TensorList& inputs) mutable -> TensorList {
                           expect_inputs(inputs, 1, "stem", "{images}");
                           check_images(inputs[0], checked);
                           return {stem->forward(inputs[0])};
                         },
                         stem.ptr()));
  }
  for (size_t index = 0; index < resnet->blocks.size(); ++index) {
    const std::string block_name = "block" + std::to_string(index);
    std::vector<Unit> units = block_units(resnet->blocks[index]);
    if (config.fine) {
      for (const Unit& unit : units)
        chain->add_stage(block_name + "." + unit.name, "conv", make_stage(unit.function, unit.owner));
      continue;
    }
    auto run_all = [units](const TensorList& tuple) {
      TensorList current = tuple;
      for (const Unit& unit : units) current = unit.function(current);
      return current;
    };
    chain->add_stage(block_name, "block", make_stage(run_all, resnet->blocks[index].ptr()));
  }
  nn::Linear classifier = resnet->classifier;
  chain->add_stage("head", "head",
                   make_stage(
                       [resnet](const TensorList& inputs) mutable -> TensorList {
                         expect_inputs(inputs, 1, "head", "{features}");
                         return {resnet->classify(inputs[0])};
                       },
                       classifier.ptr()));
  return {chain, [resnet, checked](const TensorList& inputs) mutable -> TensorList {
            expect_inputs(inputs, 1, "resnet", "{images}");
            check_images(inputs[0], checked);
            return {resnet->forward(inputs[0])};
          }};
}

BuiltNetwork build_mlp(const ModelConfig& config) {
  at::Generator generator = at::detail::createCPUGenerator(config.seed);
  MlpNet net(config);
  for (const auto& module : net->modules()) {
    if (auto* linear = dynamic_cast<nn::LinearImpl*>(module.get())) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(linear->options.in_features()));
      init_uniform(linear->weight, bound, generator);
      init_uniform(linear->bias, bound, generator);
    }
  }

  auto chain = std::make_shared<Chain>();
  nn::Linear input = net->input;
  chain->add_stage("embed", "embed",
                   make_stage(
                       [net](const TensorList& inputs) mutable -> TensorList {
                         expect_inputs(inputs, 1, "embed", "{features}");
                         return {net->embed(inputs[0])};
                       },
                       input.ptr()));
  for (size_t index = 0; index < net->blocks.size(); ++index) {
    const std::string block_name = "block" + std::to_string(index);
    MlpBlock block = net->blocks[index];
    if (config.fine) {
      chain->add_stage(block_name + ".norm", "norm",
                       make_stage(
                           [block](const TensorList& tuple) mutable -> TensorList {
                             expect_inputs(tuple, 1, "norm", "{hidden}");
                             return {tuple[0], block->norm->forward(tuple[0])};
                           },
                           block->norm.ptr()));
      auto owner =
          std::make_shared<BundleImpl>(std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>{
              {"fc", block->fc.ptr()},
              {"projection", block->projection.ptr()},
              {"dropout", block->dropout.ptr()}});
      chain->add_stage(block_name + ".mlp", "mlp",
                       make_stage(
                           [block](const TensorList& tuple) mutable -> TensorList {
                             expect_inputs(tuple, 2, "mlp", "{hidden, normed}");
                             return {tuple[0] + block->branch(tuple[1])};
                           },
                           owner));
      continue;
    }
    chain->add_stage(block_name, "block",
                     make_stage(
                         [block](const TensorList& tuple) mutable -> TensorList {
                           expect_inputs(tuple, 1, "block", "{hidden}");
                           return {tuple[0] + block->branch(block->norm->forward(tuple[0]))};
                         },
                         block.ptr()));
  }
  auto head_owner =
      std::make_shared<BundleImpl>(std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>{
          {"final_norm", net->final_norm.ptr()}, {"classifier", net->classifier.ptr()}});
  chain->add_stage("head", "head",
                   make_stage(
                       [net](const TensorList& inputs) mutable -> TensorList {
                         expect_inputs(inputs, 1, "head", "{hidden}");
                         return {net->classify(inputs[0])};
                       },
                       head_owner));
  return {chain, [net](const TensorList& inputs) mutable -> TensorList {
            expect_inputs(inputs, 1, "mlp", "{features}");
            return {net->forward(inputs[0])};
          }};
}

int64_t count_convnet_parameters(const ModelConfig& config) {
  if (config.family == "mlp") {
    const int64_t hidden = config.hidden_size, mlp = config.mlp_size;
    const int64_t block = 2 * hidden + hidden * mlp + mlp + mlp * hidden + hidden;
    return config.input_features * hidden + hidden + config.num_layers * block + 2 * hidden +
           hidden * config.num_classes + config.num_classes;
  }
  if (config.family != "resnet") {
    throw InvalidArgument("count_convnet_parameters: unknown family \"" + config.family + "\"");
  }
  auto conv_bn = [](int64_t in_channels, int64_t out_channels, int64_t kernel) {
    return in_channels * out_channels * kernel * kernel + 2 * out_channels;
  };
  int64_t count = conv_bn(config.channels, config.hidden_size, 7);
  int64_t in_channels = config.hidden_size;
  for (size_t stage = 0; stage < config.resnet_blocks.size(); ++stage) {
    const int64_t width = config.hidden_size << stage;
    const int64_t out_channels = config.bottleneck ? 4 * width : width;
    for (int64_t index = 0; index < config.resnet_blocks[stage]; ++index) {
      const int64_t stride = (stage > 0 && index == 0) ? 2 : 1;
      if (config.bottleneck) {
        count += conv_bn(in_channels, width, 1) + conv_bn(width, width, 3) + conv_bn(width, out_channels, 1);
      } else {
        count += conv_bn(in_channels, width, 3) + conv_bn(width, out_channels, 3);
      }
      if (stride != 1 || in_channels != out_channels) count += conv_bn(in_channels, out_channels, 1);
      in_channels = out_channels;
    }
  }
  return count + in_channels * config.num_classes + config.num_classes;
}

}  // namespace memento::models
