#pragma once
/// \file
/// The model zoo: every model is a `Chain` at block granularity (or finer on request),
/// with its loss and a description of its input.
///
/// Example:
/// \code
///   memento::ModelOptions options;
///   options.batch_size = 4;
///   memento::Model model = memento::make_model("gpt-mini", options);
///   memento::Batch batch = model.example_batch(/*seed=*/0);
///   memento::TensorList out = model.chain->forward(batch.inputs);
///   torch::Tensor loss = model.loss(out, batch.targets);
/// \endcode

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "memento/torch/chain.h"

namespace memento {

/// Options for building a model; 0 means "the model's default".
struct ModelOptions {
  int64_t batch_size = 0;        ///< used by example_batch
  int64_t seq_len = 0;           ///< tokens per sequence (language models)
  int64_t image_size = 0;        ///< pixels per side (vision models)
  int64_t vocab_size = 0;        ///< language models: vocabulary (default: the model's own)
  int64_t num_classes = 0;       ///< classifiers
  double dropout = -1;           ///< < 0: the model's default
  std::string granularity = "block";  ///< "block" or "fine"
  uint64_t seed = 0;             ///< parameter initialization seed
};

/// What `memento models` lists for each model.
struct ModelInfo {
  std::string name;         ///< e.g. "gpt2-small"
  std::string family;       ///< gpt, bert, resnet, vit, mlp
  int64_t parameter_count;  ///< of the default configuration
  std::string input_shape;  ///< default input per batch, e.g. "[8, 256] tokens"
  std::string description;
};

/// A built model: the chain, its loss, and a generator of batches of its input shape.
struct Model {
  ModelInfo info;
  std::shared_ptr<Chain> chain;
  LossFunction loss;
  /// A random batch with the configured batch size and shapes (seeded, deterministic).
  std::function<Batch(uint64_t seed)> example_batch;
  /// Fraction of correct predictions in a batch (classification / next-token accuracy).
  std::function<double(const TensorList& outputs, const TensorList& targets)> accuracy;
};

/// Names of every model, in listing order.
std::vector<std::string> model_names();
/// Info of every model (parameter counts of the default configurations).
std::vector<ModelInfo> model_infos();
/// Builds a model; throws InvalidArgument listing the valid names and options.
Model make_model(const std::string& name, const ModelOptions& options = {});

}  // namespace memento
