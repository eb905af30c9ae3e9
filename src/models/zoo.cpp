// The zoo's registry: default configurations, option resolution, parameter counts,
// losses, example batches and accuracy. The networks themselves are built in
// transformer.cpp and convnet.cpp.
#include "memento/models/zoo.h"

#include <fmt/format.h>

#include "families.h"
#include "memento/core/error.h"

namespace memento {
namespace {

using models::ModelConfig;
using torch::Tensor;

struct Definition {
  ModelConfig defaults;
  std::string description;
};

ModelConfig gpt(const std::string& name, int64_t layers, int64_t hidden, int64_t heads, int64_t vocab,
                int64_t context, int64_t batch) {
  ModelConfig config;
  config.name = name;
  config.family = "gpt";
  config.num_layers = layers;
  config.hidden_size = hidden;
  config.num_heads = heads;
  config.vocab_size = vocab;
  config.context = context;
  config.seq_len = context;
  config.batch_size = batch;
  config.dropout = 0.1;
  config.norm_eps = 1e-5;
  return config;
}

ModelConfig bert(const std::string& name, int64_t layers, int64_t hidden, int64_t heads) {
  ModelConfig config;
  config.name = name;
  config.family = "bert";
  config.num_layers = layers;
  config.hidden_size = hidden;
  config.num_heads = heads;
  config.vocab_size = 30522;
  config.context = 512;
  config.seq_len = 128;
  config.type_vocab_size = 2;
  config.batch_size = 8;
  config.dropout = 0.1;
  config.norm_eps = 1e-12;
  return config;
}

ModelConfig resnet(const std::string& name, std::vector<int64_t> blocks, bool bottleneck) {
  ModelConfig config;
  config.name = name;
  config.family = "resnet";
  config.resnet_blocks = std::move(blocks);
  config.bottleneck = bottleneck;
  config.hidden_size = 64;
  config.image_size = 224;
  config.num_classes = 1000;
  config.batch_size = 32;
  return config;
}

ModelConfig vit(const std::string& name, int64_t hidden, int64_t heads) {
  ModelConfig config;
  config.name = name;
  config.family = "vit";
  config.num_layers = 12;
  config.hidden_size = hidden;
  config.num_heads = heads;
  config.image_size = 224;
  config.patch_size = 16;
  config.num_classes = 1000;
  config.batch_size = 32;
  config.dropout = 0.0;
  config.norm_eps = 1e-6;
  return config;
}

ModelConfig mlp() {
  ModelConfig config;
  config.name = "mlp";
  config.family = "mlp";
  config.num_layers = 4;
  config.hidden_size = 128;
  config.input_features = 64;
  config.num_classes = 10;
  config.batch_size = 64;
  config.dropout = 0.1;
  return config;
}

const std::vector<Definition>& definitions() {
  static const std::vector<Definition> table = {
      {gpt("gpt-nano", 3, 48, 3, 256, 64, 4), "tiny byte-level GPT for tests (3 layers, 48 wide)"},
      {gpt("gpt-mini", 6, 192, 6, 256, 128, 16), "byte-level GPT for the demo (6 layers, 192 wide, 6 heads)"},
      {gpt("gpt2-small", 12, 768, 12, 50257, 1024, 8), "GPT-2 124M (12 layers, 768 wide, tied LM head)"},
      {gpt("gpt2-medium", 24, 1024, 16, 50257, 1024, 8), "GPT-2 355M (24 layers, 1024 wide, tied LM head)"},
      {bert("bert-base", 12, 768, 12), "BERT-base 110M, post-LN encoder with a tied MLM head"},
      {bert("bert-large", 24, 1024, 16), "BERT-large 335M, post-LN encoder with a tied MLM head"},
      {resnet("resnet18", {2, 2, 2, 2}, false), "ResNet-18, basic blocks with BatchNorm"},
      {resnet("resnet50", {3, 4, 6, 3}, true), "ResNet-50 (v1.5), bottleneck blocks with BatchNorm"},
      {vit("vit-tiny", 192, 3), "ViT-Ti/16 (12 layers, 192 wide)"},
      {vit("vit-small", 384, 6), "ViT-S/16 (12 layers, 384 wide)"},
      {vit("vit-base", 768, 12), "ViT-B/16 86.6M (12 layers, 768 wide)"},
      {mlp(), "residual MLP classifier (4 blocks, 128 wide) for tests and examples"},
  };
  return table;
}

const Definition& find_definition(const std::string& name) {
  std::string names;
  for (const Definition& definition : definitions()) {
    if (definition.defaults.name == name) return definition;
    names += (names.empty() ? "" : ", ") + definition.defaults.name;
  }
  throw InvalidArgument("unknown model \"" + name + "\"; valid models: " + names);
}

void check_non_negative(int64_t value, const char* option) {
  if (value < 0)
    throw InvalidArgument(fmt::format("option {} must be positive (0 = default), got {}", option, value));
}

// Applies the options over the model's defaults. Options that do not concern a family
// (e.g. seq_len for a ResNet) are ignored, so one set of command-line options serves all.
ModelConfig resolve(const std::string& name, const ModelOptions& options) {
  ModelConfig config = find_definition(name).defaults;
  check_non_negative(options.batch_size, "batch_size");
  check_non_negative(options.seq_len, "seq_len");
  check_non_negative(options.image_size, "image_size");
  check_non_negative(options.vocab_size, "vocab_size");
  check_non_negative(options.num_classes, "num_classes");
  check_non_negative(options.num_layers, "num_layers");
  check_non_negative(options.hidden_size, "hidden_size");
  check_non_negative(options.num_heads, "num_heads");
  check_non_negative(options.patch_size, "patch_size");
  check_non_negative(options.input_features, "input_features");
  if (options.granularity != "block" && options.granularity != "fine") {
    throw InvalidArgument("granularity must be \"block\" or \"fine\", got \"" + options.granularity + "\"");
  }
  if (options.dropout >= 1) {
    throw InvalidArgument(
        fmt::format("dropout must be below 1 (negative = the model's default), got {}", options.dropout));
  }
  config.fine = options.granularity == "fine";
  config.seed = options.seed;
  if (options.dropout >= 0) config.dropout = options.dropout;
  if (options.batch_size > 0) config.batch_size = options.batch_size;
  if (options.hidden_size > 0) config.hidden_size = options.hidden_size;
  const std::string& family = config.family;
  const bool transformer = family == "gpt" || family == "bert" || family == "vit";
  if (transformer || family == "mlp") {
    if (options.num_layers > 0) config.num_layers = options.num_layers;
    config.mlp_size = 4 * config.hidden_size;
  }
  if (transformer) {
    if (options.num_heads > 0) config.num_heads = options.num_heads;
    if (config.hidden_size % config.num_heads != 0) {
      throw InvalidArgument(fmt::format("{}: num_heads {} must divide hidden_size {}", name, config.num_heads,
                                        config.hidden_size));
    }
  }
  if (family == "gpt" || family == "bert") {
    if (options.vocab_size > 0) config.vocab_size = options.vocab_size;
    if (options.seq_len > 0) config.seq_len = options.seq_len;
    if (config.seq_len > config.context) {
      throw InvalidArgument(
          fmt::format("{} has a context of {} tokens; seq_len {} is too long (use at most {})", name,
                      config.context, config.seq_len, config.context));
    }
    if (family == "bert") {
      if (config.vocab_size < 2)
        throw InvalidArgument(name + ": vocab_size must be at least 2 (tokens and [MASK])");
      // [MASK] is 103 in BERT's WordPiece vocabulary, the last token in any other (as in
      // memento's byte-level MaskedTokenWindows).
      config.mask_token = config.vocab_size == 30522 ? 103 : config.vocab_size - 1;
      if (config.seq_len < 2) throw InvalidArgument(name + ": seq_len must be at least 2 (two segments)");
    }
  }
  if (family == "resnet" || family == "vit" || family == "mlp") {
    if (options.num_classes > 0) config.num_classes = options.num_classes;
  }
  if (family == "resnet" || family == "vit") {
    if (options.image_size > 0) config.image_size = options.image_size;
  }
  if (family == "vit") {
    if (options.patch_size > 0) config.patch_size = options.patch_size;
    if (config.image_size % config.patch_size != 0) {
      throw InvalidArgument(
          fmt::format("{}: patch_size {} must divide image_size {}; set --patch-size or --image-size", name,
                      config.patch_size, config.image_size));
    }
  }
  if (family == "mlp" && options.input_features > 0) config.input_features = options.input_features;
  return config;
}

int64_t count(const ModelConfig& config) {
  if (config.family == "resnet" || config.family == "mlp") return models::count_convnet_parameters(config);
  return models::count_transformer_parameters(config);
}

ModelInfo info_of(const ModelConfig& config) {
  ModelInfo info;
  info.name = config.name;
  info.family = config.family;
  info.parameter_count = count(config);
  info.description = find_definition(config.name).description;
  if (config.family == "gpt") {
    info.input_shape = fmt::format("[{}, {}] tokens", config.batch_size, config.seq_len);
  } else if (config.family == "bert") {
    info.input_shape =
        fmt::format("[{}, {}] tokens, segments, attention mask", config.batch_size, config.seq_len);
  } else if (config.family == "mlp") {
    info.input_shape = fmt::format("[{}, {}] features", config.batch_size, config.input_features);
  } else {
    info.input_shape = fmt::format("[{}, {}, {}, {}] images", config.batch_size, config.channels,
                                   config.image_size, config.image_size);
  }
  return info;
}

void expect_single(const TensorList& outputs, const TensorList& targets, const std::string& name) {
  if (outputs.size() != 1 || targets.size() != 1) {
    throw InvalidArgument(
        fmt::format("{}: the loss takes one output (logits) and one target tensor, got {} and {}", name,
                    outputs.size(), targets.size()));
  }
}

// Cross-entropy over the last dimension; targets of -100 are ignored (BERT's unmasked positions).
LossFunction cross_entropy_loss(const std::string& name) {
  return [name](const TensorList& outputs, const TensorList& targets) {
    expect_single(outputs, targets, name);
    const Tensor& logits = outputs[0];
    return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                targets[0].reshape({-1}));
  };
}

std::function<double(const TensorList&, const TensorList&)> accuracy_function(const std::string& name) {
  return [name](const TensorList& outputs, const TensorList& targets) {
    expect_single(outputs, targets, name);
    torch::NoGradGuard no_grad;
    Tensor predicted = outputs[0].argmax(-1).reshape({-1});
    Tensor expected = targets[0].reshape({-1});
    Tensor counted = expected.ne(-100);
    const int64_t total = counted.sum().item<int64_t>();
    if (total == 0) return 0.0;
    const int64_t correct = predicted.eq(expected).logical_and(counted).sum().item<int64_t>();
    return static_cast<double>(correct) / static_cast<double>(total);
  };
}

torch::TensorOptions long_options() {
  return torch::TensorOptions().dtype(torch::kLong);
}

Batch gpt_batch(const ModelConfig& config, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  Tensor tokens = torch::randint(0, config.vocab_size, {config.batch_size, config.seq_len + 1}, generator,
                                 long_options());
  using torch::indexing::Slice;
  return {{tokens.index({Slice(), Slice(0, config.seq_len)}).contiguous()},
          {tokens.index({Slice(), Slice(1, config.seq_len + 1)}).contiguous()}};
}

// BERT pre-training inputs: two segments, trailing padding, and 15% of the real tokens
// selected for prediction (80% replaced by [MASK], 10% by a random token, 10% kept).
Batch bert_batch(const ModelConfig& config, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  const int64_t batch = config.batch_size, length = config.seq_len;
  Tensor tokens = torch::randint(0, config.vocab_size, {batch, length}, generator, long_options());
  Tensor positions = torch::arange(length, long_options()).unsqueeze(0);
  Tensor real_lengths = torch::randint(length / 2 + 1, length + 1, {batch, 1}, generator, long_options());
  Tensor valid = positions.lt(real_lengths);
  Tensor split = torch::randint(1, length, {batch, 1}, generator, long_options());
  Tensor segments = positions.ge(split).logical_and(valid).to(torch::kLong);
  tokens = tokens.masked_fill(valid.logical_not(), 0);
  Tensor selected = torch::rand({batch, length}, generator).lt(0.15).logical_and(valid);
  // Every row predicts at least one token, so the loss is never a mean over nothing.
  Tensor none_selected = selected.sum(1, /*keepdim=*/true).eq(0);
  selected = selected.logical_or(positions.eq(0).logical_and(none_selected));
  Tensor labels = tokens.masked_fill(selected.logical_not(), -100);
  Tensor choice = torch::rand({batch, length}, generator);
  Tensor random_tokens = torch::randint(0, config.vocab_size, {batch, length}, generator, long_options());
  Tensor inputs =
      torch::where(selected.logical_and(choice.lt(0.8)), torch::full_like(tokens, config.mask_token), tokens);
  inputs =
      torch::where(selected.logical_and(choice.ge(0.8)).logical_and(choice.lt(0.9)), random_tokens, inputs);
  return {{inputs, segments, valid.to(torch::kLong)}, {labels}};
}

Batch classifier_batch(const ModelConfig& config, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  Tensor inputs =
      config.family == "mlp"
          ? torch::randn({config.batch_size, config.input_features}, generator)
          : torch::randn({config.batch_size, config.channels, config.image_size, config.image_size},
                         generator);
  Tensor labels = torch::randint(0, config.num_classes, {config.batch_size}, generator, long_options());
  return {{inputs}, {labels}};
}

}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const Definition& definition : definitions()) names.push_back(definition.defaults.name);
  return names;
}

std::vector<ModelInfo> model_infos() {
  std::vector<ModelInfo> infos;
  for (const Definition& definition : definitions()) infos.push_back(model_info(definition.defaults.name));
  return infos;
}

ModelInfo model_info(const std::string& name, const ModelOptions& options) {
  return info_of(resolve(name, options));
}

int64_t count_parameters(const std::string& name, const ModelOptions& options) {
  return count(resolve(name, options));
}

Model make_model(const std::string& name, const ModelOptions& options) {
  const ModelConfig config = resolve(name, options);
  models::BuiltNetwork network;
  if (config.family == "gpt") {
    network = models::build_gpt(config);
  } else if (config.family == "bert") {
    network = models::build_bert(config);
  } else if (config.family == "vit") {
    network = models::build_vit(config);
  } else if (config.family == "resnet") {
    network = models::build_resnet(config);
  } else {
    network = models::build_mlp(config);
  }
  Model model;
  model.info = info_of(config);
  model.chain = network.chain;
  model.reference_forward = network.reference_forward;
  model.loss = cross_entropy_loss(name);
  model.accuracy = accuracy_function(name);
  if (config.family == "gpt") {
    model.example_batch = [config](uint64_t seed) { return gpt_batch(config, seed); };
  } else if (config.family == "bert") {
    model.example_batch = [config](uint64_t seed) { return bert_batch(config, seed); };
  } else {
    model.example_batch = [config](uint64_t seed) { return classifier_batch(config, seed); };
  }
  return model;
}

}  // namespace memento
