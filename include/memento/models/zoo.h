#pragma once
/// \file
/// The model zoo: every model is a `Chain` at block granularity (or finer on request),
/// with its loss and a description of its input.
///
/// Families and stage tuples (what crosses a stage boundary is what a checkpoint stores):
/// - gpt (gpt-nano, gpt-mini, gpt2-small, gpt2-medium): pre-LN causal decoder, learned
///   positions, GELU MLP, LM head tied to the token embedding. Input {tokens [B, T] int64},
///   stages embed, block0..N-1, head; tuple {hidden [B, T, C]}; output {logits [B, T, V]};
///   targets {next tokens [B, T]}.
/// - bert (bert-base, bert-large): post-LN encoder, token + position + segment embeddings,
///   MLM head tied to the word embedding. Input {tokens, segments, attention_mask} (all
///   [B, T] int64, mask 1 = real token); tuple {hidden, attention_mask}; targets {labels
///   [B, T], -100 where not masked}.
/// - resnet (resnet18, resnet50): BatchNorm ResNet v1.5; stages stem, each residual block,
///   head. Input {images [B, 3, H, W]}, targets {classes [B]}.
/// - vit (vit-tiny, vit-small, vit-base): patch embedding, class token, learned positions,
///   pre-LN encoder, head on the class token. Same input/targets as resnet.
/// - mlp (mlp): residual MLP classifier. Input {features [B, F]}, targets {classes [B]}.
///
/// Granularity "fine" splits blocks so planners can recompute selectively: for
/// transformers a block becomes norm / QKV projection / attention core (kind
/// "attention_core": scores, softmax, dropout, attention over values) / output projection
/// (+ residual) / norm / MLP (+ residual); for ResNet a block becomes conv/bn/relu units.
/// Fine and block chains built with the same options and seed hold identical parameters
/// and compute identical outputs.
///
/// Tied weights (GPT, BERT): the embedding stage owns the shared matrix and the head stage
/// reads it without registering it, so `chain->parameters()` lists it once and both
/// stages' backward passes accumulate into the same `.grad()`.
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
///
/// Example (a two-layer BERT small enough for a unit test):
/// \code
///   memento::ModelOptions options;
///   options.num_layers = 2; options.hidden_size = 32; options.num_heads = 2;
///   options.vocab_size = 100; options.seq_len = 16; options.batch_size = 2;
///   memento::Model bert = memento::make_model("bert-base", options);
/// \endcode
struct ModelOptions {
  int64_t batch_size = 0;             ///< used by example_batch
  int64_t seq_len = 0;                ///< tokens per sequence (language models), at most the context
  int64_t image_size = 0;             ///< pixels per side (vision models)
  int64_t vocab_size = 0;             ///< language models: vocabulary (default: the model's own)
  int64_t num_classes = 0;            ///< classifiers
  double dropout = -1;                ///< < 0: the model's default
  std::string granularity = "block";  ///< "block" or "fine"
  uint64_t seed = 0;                  ///< parameter initialization seed
  int64_t num_layers = 0;             ///< transformers and mlp: number of blocks
  int64_t hidden_size = 0;            ///< transformers/mlp: model width; resnet: width of the first stage
  int64_t num_heads = 0;              ///< transformers: attention heads (must divide hidden_size)
  int64_t patch_size = 0;             ///< vit: pixels per patch side (must divide image_size)
  int64_t input_features = 0;         ///< mlp: features per example
};

/// What `memento models` lists for each model.
struct ModelInfo {
  std::string name;         ///< e.g. "gpt2-small"
  std::string family;       ///< gpt, bert, resnet, vit, mlp
  int64_t parameter_count;  ///< of the configuration (the default one in model_infos())
  std::string input_shape;  ///< input per batch, e.g. "[8, 1024] tokens"
  std::string description;
};

/// A built model: the chain, its loss, and a generator of batches of its input shape.
struct Model {
  ModelInfo info;
  std::shared_ptr<Chain> chain;
  LossFunction loss;
  /// A random batch with the configured batch size and shapes (seeded, deterministic).
  std::function<Batch(uint64_t seed)> example_batch;
  /// Fraction of correct predictions in a batch (classification / next-token accuracy;
  /// BERT: over the masked positions only).
  std::function<double(const TensorList& outputs, const TensorList& targets)> accuracy;
  /// The same network computed by composing its blocks directly, without stage boundaries
  /// (same parameters as `chain`); the reference that tests hold the chain to.
  std::function<TensorList(const TensorList& inputs)> reference_forward;
};

/// Names of every model, in listing order.
std::vector<std::string> model_names();
/// Info of every model (parameter counts of the default configurations, computed
/// analytically: nothing is allocated).
std::vector<ModelInfo> model_infos();
/// Info of one model under `options`, without building it; throws InvalidArgument like
/// make_model.
ModelInfo model_info(const std::string& name, const ModelOptions& options = {});
/// Parameter count of `name` under `options`, computed from the configuration (equals the
/// numel sum of the built model's parameters, tied weights counted once).
int64_t count_parameters(const std::string& name, const ModelOptions& options = {});
/// Builds a model; throws InvalidArgument listing the valid names and options.
Model make_model(const std::string& name, const ModelOptions& options = {});

}  // namespace memento
