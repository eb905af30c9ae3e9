// The model zoo: parameter counts (analytic vs built vs published), chains against their
// direct reference forward, fine vs block granularity, gradients (tied weights included),
// seeded init, example batches, accuracy and option errors. Tiny configurations only,
// except the one test that builds gpt2-small and resnet50 to check the analytic count.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>

#include "memento/core/error.h"
#include "memento/core/schedule.h"
#include "memento/models/zoo.h"
#include "memento/torch/executor.h"
#include "support.h"

namespace memento {
namespace {

// Small enough for every family; options that do not concern a family are ignored.
ModelOptions tiny_options(const std::string& granularity = "block", uint64_t seed = 3) {
  ModelOptions options;
  options.batch_size = 2;
  options.seq_len = 8;
  options.image_size = 32;
  options.vocab_size = 50;
  options.num_classes = 5;
  options.num_layers = 2;
  options.hidden_size = 16;
  options.num_heads = 2;
  options.patch_size = 8;
  options.input_features = 12;
  options.dropout = 0.1;
  options.granularity = granularity;
  options.seed = seed;
  return options;
}

int64_t numel_sum(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const torch::Tensor& parameter : module.parameters()) total += parameter.numel();
  return total;
}

std::vector<torch::Tensor> parameter_copies(const torch::nn::Module& module) {
  std::vector<torch::Tensor> copies;
  for (const torch::Tensor& parameter : module.parameters()) copies.push_back(parameter.detach().clone());
  return copies;
}

// ------------------------------------------------------------------- registry and counts

TEST(ModelsZoo, ListsEveryFamilyWithShapes) {
  const std::vector<std::string> names = model_names();
  const std::vector<ModelInfo> infos = model_infos();
  ASSERT_EQ(names.size(), infos.size());
  std::set<std::string> families, unique_names;
  for (size_t index = 0; index < infos.size(); ++index) {
    EXPECT_EQ(infos[index].name, names[index]);
    EXPECT_EQ(infos[index].parameter_count, count_parameters(names[index])) << names[index];
    EXPECT_FALSE(infos[index].input_shape.empty()) << names[index];
    EXPECT_FALSE(infos[index].description.empty()) << names[index];
    families.insert(infos[index].family);
    unique_names.insert(names[index]);
  }
  EXPECT_EQ(unique_names.size(), names.size());
  EXPECT_EQ(families, (std::set<std::string>{"gpt", "bert", "resnet", "vit", "mlp"}));
  for (const char* required : {"gpt-nano", "gpt-mini", "gpt2-small", "gpt2-medium", "bert-base", "bert-large",
                               "resnet18", "resnet50", "vit-tiny", "vit-small", "vit-base", "mlp"}) {
    EXPECT_TRUE(unique_names.count(required)) << required;
  }
  EXPECT_EQ(infos[2].name, "gpt2-small");
  EXPECT_EQ(infos[2].parameter_count, 124439808);
  EXPECT_EQ(model_info("gpt2-small").input_shape, "[8, 1024] tokens");
  EXPECT_EQ(model_info("resnet50").input_shape, "[32, 3, 224, 224] images");
}

TEST(ModelsParameterCount, WithinOnePercentOfPublishedFigures) {
  const std::vector<std::pair<std::string, double>> published = {
      {"gpt2-small", 124e6}, {"gpt2-medium", 355e6}, {"bert-base", 110e6},
      {"bert-large", 335e6}, {"resnet18", 11.7e6},   {"resnet50", 25.6e6},
      {"vit-base", 86.6e6},  {"vit-small", 22.1e6},  {"vit-tiny", 5.7e6}};
  for (const auto& [name, figure] : published) {
    const double count = static_cast<double>(count_parameters(name));
    EXPECT_LT(std::abs(count - figure) / figure, 0.01) << name << ": " << count << " vs " << figure;
  }
  // Exact figures of the reference implementations (HF GPT2LMHeadModel with tied head,
  // HF BertForMaskedLM, torchvision resnet18/resnet50, timm vit_base_patch16_224).
  EXPECT_EQ(count_parameters("gpt2-small"), 124439808);
  EXPECT_EQ(count_parameters("bert-base"), 109514298);
  EXPECT_EQ(count_parameters("resnet18"), 11689512);
  EXPECT_EQ(count_parameters("resnet50"), 25557032);
  EXPECT_EQ(count_parameters("vit-base"), 86567656);
}

TEST(ModelsParameterCount, AnalyticEqualsBuiltForEveryTinyModel) {
  for (const std::string& name : model_names()) {
    for (const char* granularity : {"block", "fine"}) {
      const ModelOptions options = tiny_options(granularity);
      Model model = make_model(name, options);
      EXPECT_EQ(numel_sum(*model.chain), count_parameters(name, options)) << name << " " << granularity;
      EXPECT_EQ(model.info.parameter_count, count_parameters(name, options)) << name;
      // Tied weights are listed once: no parameter appears twice.
      std::set<const void*> seen;
      for (const torch::Tensor& parameter : model.chain->parameters()) {
        EXPECT_TRUE(seen.insert(parameter.unsafeGetTensorImpl()).second)
            << name << ": a parameter is listed twice";
      }
    }
  }
}

TEST(ModelsParameterCount, AnalyticEqualsBuiltForGpt2SmallAndResnet50) {
  for (const char* name : {"gpt2-small", "resnet50"}) {
    Model model = make_model(name);
    EXPECT_EQ(numel_sum(*model.chain), count_parameters(name)) << name;
  }
}

// ------------------------------------------------------------------- forward and backward

class ModelsEachModel : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelsEachModel, ChainEqualsReferenceForwardAtBothGranularities) {
  for (const char* granularity : {"block", "fine"}) {
    Model model = make_model(GetParam(), tiny_options(granularity));
    model.chain->train();
    const Batch batch = model.example_batch(5);
    testing::seed_all(11);
    const TensorList chained = model.chain->forward(batch.inputs);
    testing::seed_all(11);
    const TensorList reference = model.reference_forward(batch.inputs);
    ASSERT_EQ(chained.size(), 1u);
    EXPECT_TRUE(testing::bitwise_equal(chained, reference))
        << granularity << ": max |diff| " << testing::max_abs_diff(chained, reference);
  }
}

TEST_P(ModelsEachModel, FineGranularityMatchesBlockGranularity) {
  Model block = make_model(GetParam(), tiny_options("block"));
  Model fine = make_model(GetParam(), tiny_options("fine"));
  EXPECT_GT(fine.chain->length(), block.chain->length());
  ASSERT_TRUE(testing::bitwise_equal(parameter_copies(*block.chain), parameter_copies(*fine.chain)));

  const Batch batch = block.example_batch(2);
  TensorList outputs[2];
  std::vector<torch::Tensor> grads[2];
  Model* models[2] = {&block, &fine};
  for (int which = 0; which < 2; ++which) {
    models[which]->chain->train();
    testing::seed_all(9);
    outputs[which] = models[which]->chain->forward(batch.inputs);
    models[which]->loss(outputs[which], batch.targets).backward();
    grads[which] = testing::gradients(*models[which]->chain);
  }
  EXPECT_TRUE(testing::bitwise_equal(outputs[0], outputs[1]))
      << testing::max_abs_diff(outputs[0], outputs[1]);
  EXPECT_LT(testing::max_abs_diff(grads[0], grads[1]), 1e-6);
}

TEST_P(ModelsEachModel, LossIsFiniteAndEveryParameterGetsAGradient) {
  Model model = make_model(GetParam(), tiny_options("fine"));
  model.chain->train();
  const Batch batch = model.example_batch(1);
  torch::Tensor loss = model.loss(model.chain->forward(batch.inputs), batch.targets);
  ASSERT_EQ(loss.dim(), 0);
  ASSERT_TRUE(std::isfinite(loss.item<double>()));
  loss.backward();
  for (const auto& item : model.chain->named_parameters()) {
    const torch::Tensor& grad = item.value().grad();
    ASSERT_TRUE(grad.defined()) << GetParam() << ": no gradient for " << item.key();
    EXPECT_TRUE(torch::isfinite(grad).all().item<bool>()) << item.key();
    EXPECT_GT(grad.abs().sum().item<double>(), 0) << GetParam() << ": zero gradient for " << item.key();
  }
}

TEST_P(ModelsEachModel, ExecutorStoreAllStepMatchesPlainAutograd) {
  // Per-stage execution (local graphs on detached inputs) must give the same gradients,
  // tied weights included.
  Model plain = make_model(GetParam(), tiny_options("fine"));
  Model staged = make_model(GetParam(), tiny_options("fine"));
  plain.chain->train();
  staged.chain->train();
  const Batch batch = plain.example_batch(4);
  testing::seed_all(21);
  plain.loss(plain.chain->forward(batch.inputs), batch.targets).backward();
  Executor executor(staged.chain, staged.loss);
  testing::seed_all(21);
  executor.step(store_all_schedule(staged.chain->length()), batch);
  EXPECT_LT(testing::max_abs_diff(testing::gradients(*plain.chain), testing::gradients(*staged.chain)), 1e-5);
}

TEST_P(ModelsEachModel, SeededInitIsDeterministic) {
  Model first = make_model(GetParam(), tiny_options("block", 7));
  Model again = make_model(GetParam(), tiny_options("block", 7));
  Model other = make_model(GetParam(), tiny_options("block", 8));
  EXPECT_TRUE(testing::bitwise_equal(parameter_copies(*first.chain), parameter_copies(*again.chain)));
  EXPECT_FALSE(testing::bitwise_equal(parameter_copies(*first.chain), parameter_copies(*other.chain)));
  EXPECT_TRUE(testing::bitwise_equal(first.example_batch(3).inputs, again.example_batch(3).inputs));
  EXPECT_FALSE(testing::bitwise_equal(first.example_batch(3).inputs, first.example_batch(4).inputs));
}

TEST_P(ModelsEachModel, AccuracyCountsCorrectPredictions) {
  Model model = make_model(GetParam(), tiny_options());
  const Batch batch = model.example_batch(6);
  torch::NoGradGuard no_grad;
  model.chain->eval();
  const TensorList outputs = model.chain->forward(batch.inputs);
  const torch::Tensor targets = batch.targets[0];
  const int64_t classes = outputs[0].size(-1);
  // Logits that put the maximum on the target everywhere (ignored targets point at class 0).
  torch::Tensor perfect = torch::one_hot(targets.clamp_min(0), classes).to(torch::kFloat32);
  EXPECT_DOUBLE_EQ(model.accuracy({perfect}, batch.targets), 1.0);
  torch::Tensor wrong = torch::one_hot((targets.clamp_min(0) + 1) % classes, classes).to(torch::kFloat32);
  EXPECT_DOUBLE_EQ(model.accuracy({wrong}, batch.targets), 0.0);
  const double measured = model.accuracy(outputs, batch.targets);
  EXPECT_GE(measured, 0.0);
  EXPECT_LE(measured, 1.0);
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& character : name) {
    if (!std::isalnum(static_cast<unsigned char>(character))) character = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Zoo, ModelsEachModel, ::testing::ValuesIn(model_names()), test_name);

// ------------------------------------------------------------------- tied weights

// Runs embed, then the rest of the chain on a detached hidden state, and takes the tied
// matrix's gradient through each use separately.
void expect_tied_gradient_is_sum(const std::string& name, const torch::Tensor& tied, Model& model) {
  model.chain->train();
  const Batch batch = model.example_batch(8);
  testing::seed_all(4);
  model.loss(model.chain->forward(batch.inputs), batch.targets).backward();
  const torch::Tensor full = tied.grad().clone();

  testing::seed_all(4);
  const TensorList embedded = model.chain->forward_stage(0, batch.inputs);
  TensorList rest = embedded;
  rest[0] = embedded[0].detach().requires_grad_(true);
  const torch::Tensor hidden = rest[0];
  for (int index = 1; index < model.chain->length(); ++index) rest = model.chain->forward_stage(index, rest);
  const torch::Tensor loss = model.loss(rest, batch.targets);
  const auto head_grads = torch::autograd::grad({loss}, {tied, hidden});
  const torch::Tensor from_embed = torch::autograd::grad({embedded[0]}, {tied}, {head_grads[1]})[0];
  const torch::Tensor& from_head = head_grads[0];
  EXPECT_GT(from_head.abs().sum().item<double>(), 0) << name;
  EXPECT_GT(from_embed.abs().sum().item<double>(), 0) << name;
  EXPECT_LT(testing::max_abs_diff(full, from_head + from_embed), 1e-6) << name;
}

TEST(ModelsTiedWeights, GptHeadAndEmbeddingGradientsAdd) {
  for (const char* granularity : {"block", "fine"}) {
    Model model = make_model("gpt-nano", tiny_options(granularity));
    const torch::Tensor tied = model.chain->named_parameters()["stage0.owner.tokens.weight"];
    ASSERT_TRUE(tied.defined());
    // The head stage does not register the matrix: it is listed under the embedding only.
    for (const auto& item : model.chain->named_parameters()) {
      if (item.key().rfind("stage0.", 0) != 0) {
        EXPECT_FALSE(item.value().is_same(tied)) << item.key();
      }
    }
    expect_tied_gradient_is_sum("gpt-nano", tied, model);
  }
}

TEST(ModelsTiedWeights, BertDecoderAndWordEmbeddingGradientsAdd) {
  Model model = make_model("bert-base", tiny_options("block"));
  const torch::Tensor tied = model.chain->named_parameters()["stage0.owner.words.weight"];
  ASSERT_TRUE(tied.defined());
  expect_tied_gradient_is_sum("bert-base", tied, model);
}

// ------------------------------------------------------------------- structure and batches

TEST(ModelsGranularity, FineTransformersSplitAttentionCoreNormsAndMlp) {
  for (const char* name : {"gpt-nano", "bert-base", "vit-tiny"}) {
    Model model = make_model(name, tiny_options("fine"));
    int cores = 0, norms = 0, mlps = 0;
    for (int index = 0; index < model.chain->length(); ++index) {
      const std::string& kind = model.chain->stage_kind(index);
      cores += kind == "attention_core";
      norms += kind == "norm";
      mlps += kind == "mlp";
    }
    EXPECT_EQ(cores, 2) << name;
    EXPECT_EQ(mlps, 2) << name;
    EXPECT_GE(norms, 4) << name;
    EXPECT_EQ(model.chain->stage_name(0), "embed");
    EXPECT_EQ(model.chain->stage_name(model.chain->length() - 1), "head");
  }
  Model block = make_model("gpt-nano", tiny_options("block"));
  ASSERT_EQ(block.chain->length(), 4);
  EXPECT_EQ(block.chain->stage_name(1), "block0");
}

TEST(ModelsGranularity, ResnetStagesAreStemBlocksHeadOrConvUnits) {
  Model block = make_model("resnet18", tiny_options("block"));
  EXPECT_EQ(block.chain->length(), 1 + 8 + 1);
  Model fine = make_model("resnet50", tiny_options("fine"));
  // stem (conv unit + pool), 16 bottleneck blocks of 3 units, head.
  EXPECT_EQ(fine.chain->length(), 2 + 16 * 3 + 1);
  EXPECT_EQ(fine.chain->stage_kind(2), "conv");
}

TEST(ModelsBatch, GptTargetsAreNextTokens) {
  Model model = make_model("gpt-nano", tiny_options());
  const Batch batch = model.example_batch(0);
  ASSERT_EQ(batch.inputs.size(), 1u);
  EXPECT_EQ(batch.inputs[0].sizes(), (std::vector<int64_t>{2, 8}));
  using torch::indexing::Slice;
  EXPECT_TRUE(torch::equal(batch.inputs[0].index({Slice(), Slice(1)}),
                           batch.targets[0].index({Slice(), Slice(0, 7)})));
  EXPECT_LT(batch.inputs[0].max().item<int64_t>(), 50);
}

TEST(ModelsBatch, BertMasksRealTokensOnly) {
  ModelOptions options = tiny_options();
  options.batch_size = 16;
  options.seq_len = 32;
  options.vocab_size = 200;
  Model model = make_model("bert-base", options);
  const Batch batch = model.example_batch(0);
  ASSERT_EQ(batch.inputs.size(), 3u);
  const torch::Tensor& tokens = batch.inputs[0];
  const torch::Tensor& attention_mask = batch.inputs[2];
  const torch::Tensor& labels = batch.targets[0];
  const torch::Tensor predicted = labels.ne(-100);
  EXPECT_TRUE(predicted.sum(1).gt(0).all().item<bool>());                                // every row predicts
  EXPECT_TRUE(predicted.logical_and(attention_mask.eq(0)).any().item<bool>() == false);  // never padding
  EXPECT_TRUE(tokens.eq(103).logical_and(predicted).any().item<bool>());                 // [MASK] used
  const double fraction = predicted.sum().item<double>() / attention_mask.sum().item<double>();
  EXPECT_GT(fraction, 0.08);
  EXPECT_LT(fraction, 0.25);
  // Padding changes nothing for the real tokens: the attention mask reaches the blocks.
  model.chain->eval();
  torch::NoGradGuard no_grad;
  TensorList padded = batch.inputs;
  padded[0] = tokens.masked_fill(attention_mask.eq(0), 7);
  const torch::Tensor real = attention_mask.eq(1).unsqueeze(-1);
  const torch::Tensor original = model.chain->forward(batch.inputs)[0].masked_fill(real.logical_not(), 0);
  const torch::Tensor changed = model.chain->forward(padded)[0].masked_fill(real.logical_not(), 0);
  EXPECT_LT(testing::max_abs_diff(original, changed), 1e-4);
}

// ------------------------------------------------------------------- errors

TEST(ModelsOptions, ErrorsNameTheProblem) {
  try {
    make_model("gpt-3");
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& error) {
    EXPECT_NE(std::string(error.what()).find("gpt-mini"), std::string::npos) << error.what();
  }
  ModelOptions options;
  options.granularity = "medium";
  EXPECT_THROW(make_model("mlp", options), InvalidArgument);
  options = ModelOptions();
  options.seq_len = 65;
  try {
    count_parameters("gpt-nano", options);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& error) {
    EXPECT_NE(std::string(error.what()).find("context of 64"), std::string::npos) << error.what();
  }
  options = ModelOptions();
  options.num_heads = 5;
  EXPECT_THROW(make_model("gpt-nano", options), InvalidArgument);
  options = ModelOptions();
  options.image_size = 40;
  EXPECT_THROW(model_info("vit-tiny", options), InvalidArgument);
  options = ModelOptions();
  options.batch_size = -1;
  EXPECT_THROW(make_model("mlp", options), InvalidArgument);
  // A sequence longer than the context is refused at run time too.
  Model model = make_model("gpt-nano", tiny_options());
  EXPECT_THROW(model.chain->forward({torch::zeros({1, 65}, torch::kLong)}), InvalidArgument);
}

}  // namespace
}  // namespace memento
