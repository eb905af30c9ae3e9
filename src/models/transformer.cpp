// GPT (pre-LN causal decoder), BERT (post-LN encoder with an MLM head) and ViT (pre-LN
// encoder over patches). One block implementation serves all three; the chain runs a
// block as a list of sub-steps over a tensor tuple, either all in one stage (block
// granularity) or one stage per sub-step (fine), while `reference_forward` composes the
// same modules directly with plain tensors.
#include <cmath>
#include <limits>

#include "families.h"
#include "memento/core/error.h"

namespace memento::models {
namespace {

namespace nn = torch::nn;
using torch::Tensor;

// Scores, softmax, dropout and attention over values: everything that is quadratic in the
// sequence length. It owns no parameters, which is what makes it cheap to recompute.
class AttentionCoreImpl : public nn::Module {
 public:
  AttentionCoreImpl(int64_t num_heads, bool causal, double dropout)
      : num_heads_(num_heads), causal_(causal), dropout_(register_module("dropout", nn::Dropout(dropout))) {}

  /// q, k, v: [B, H, T, D]; key_mask: undefined or [B, T] with 0 at padding. Returns [B, T, H*D].
  Tensor forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask) {
    const int64_t head_size = q.size(-1);
    Tensor scores = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(head_size)));
    const double minus_infinity = -std::numeric_limits<double>::infinity();
    if (causal_) {
      const int64_t length = q.size(-2);
      Tensor future =
          torch::ones({length, length}, torch::TensorOptions().dtype(torch::kBool).device(q.device()))
              .triu(1);
      scores = scores.masked_fill(future, minus_infinity);
    }
    if (key_mask.defined()) {
      // Every sequence needs at least one real token, or its softmax row is all -inf.
      Tensor padding = key_mask.eq(0).view({key_mask.size(0), 1, 1, key_mask.size(1)});
      scores = scores.masked_fill(padding, minus_infinity);
    }
    Tensor probabilities = dropout_->forward(torch::softmax(scores, -1));
    Tensor attended = torch::matmul(probabilities, v);  // [B, H, T, D]
    return attended.transpose(1, 2).contiguous().view({q.size(0), q.size(2), num_heads_ * head_size});
  }

 private:
  int64_t num_heads_;
  bool causal_;
  nn::Dropout dropout_;
};
TORCH_MODULE(AttentionCore);

// The QKV projection; its outputs are head-split views of one [B, T, 3C] tensor, so a
// boundary after it stores that tensor once.
class QkvProjectionImpl : public nn::Module {
 public:
  QkvProjectionImpl(int64_t hidden_size, int64_t num_heads)
      : num_heads_(num_heads), linear(register_module("linear", nn::Linear(hidden_size, 3 * hidden_size))) {}

  std::vector<Tensor> forward(const Tensor& x) {
    const int64_t batch = x.size(0), length = x.size(1);
    std::vector<Tensor> parts = linear->forward(x).chunk(3, -1);
    for (Tensor& part : parts) {
      part = part.view({batch, length, num_heads_, part.size(-1) / num_heads_}).transpose(1, 2);
    }
    return parts;
  }

  int64_t num_heads_;
  nn::Linear linear;
};
TORCH_MODULE(QkvProjection);

// Output projection with dropout and the residual add.
class OutputProjectionImpl : public nn::Module {
 public:
  OutputProjectionImpl(int64_t hidden_size, double dropout)
      : linear(register_module("linear", nn::Linear(hidden_size, hidden_size))),
        dropout_(register_module("dropout", nn::Dropout(dropout))) {}

  Tensor forward(const Tensor& residual, const Tensor& attended) {
    return residual + dropout_->forward(linear->forward(attended));
  }

  nn::Linear linear;

 private:
  nn::Dropout dropout_;
};
TORCH_MODULE(OutputProjection);

// Position-wise GELU MLP with dropout (the residual add is the caller's).
class FeedForwardImpl : public nn::Module {
 public:
  FeedForwardImpl(int64_t hidden_size, int64_t mlp_size, double dropout)
      : fc(register_module("fc", nn::Linear(hidden_size, mlp_size))),
        projection(register_module("projection", nn::Linear(mlp_size, hidden_size))),
        dropout_(register_module("dropout", nn::Dropout(dropout))) {}

  Tensor forward(const Tensor& x) {
    return dropout_->forward(projection->forward(torch::gelu(fc->forward(x))));
  }

  nn::Linear fc;
  nn::Linear projection;

 private:
  nn::Dropout dropout_;
};
TORCH_MODULE(FeedForward);

nn::LayerNorm make_norm(const ModelConfig& config) {
  return nn::LayerNorm(nn::LayerNormOptions({config.hidden_size}).eps(config.norm_eps));
}

// One transformer block. pre_ln: h += attn(ln1(h)); h += mlp(ln2(h)) (GPT, ViT).
// post-LN: h = ln1(h + attn(h)); h = ln2(h + mlp(h)) (BERT).
class TransformerBlockImpl : public nn::Module {
 public:
  TransformerBlockImpl(const ModelConfig& config, bool pre_ln, bool causal)
      : pre_ln(pre_ln),
        norm1(make_norm(config)),
        qkv(config.hidden_size, config.num_heads),
        core(config.num_heads, causal, config.dropout),
        output(config.hidden_size, config.dropout),
        norm2(make_norm(config)),
        mlp(config.hidden_size, config.mlp_size, config.dropout) {
    // Registered in execution order, so a fine chain lists the parameters in the same
    // order as the block chain (and seeded init fills them identically).
    if (pre_ln) register_module("norm1", norm1);
    register_module("qkv", qkv);
    register_module("attention_core", core);
    register_module("output", output);
    if (!pre_ln) register_module("norm1", norm1);
    if (pre_ln) register_module("norm2", norm2);
    register_module("mlp", mlp);
    if (!pre_ln) register_module("norm2", norm2);
  }

  /// The reference: the block written directly.
  Tensor forward(Tensor hidden, const Tensor& key_mask) {
    if (pre_ln) {
      std::vector<Tensor> q_k_v = qkv->forward(norm1->forward(hidden));
      hidden = output->forward(hidden, core->forward(q_k_v[0], q_k_v[1], q_k_v[2], key_mask));
      return hidden + mlp->forward(norm2->forward(hidden));
    }
    std::vector<Tensor> q_k_v = qkv->forward(hidden);
    hidden = norm1->forward(output->forward(hidden, core->forward(q_k_v[0], q_k_v[1], q_k_v[2], key_mask)));
    return norm2->forward(hidden + mlp->forward(hidden));
  }

  bool pre_ln;
  nn::LayerNorm norm1;
  QkvProjection qkv;
  AttentionCore core;
  OutputProjection output;
  nn::LayerNorm norm2;
  FeedForward mlp;
};
TORCH_MODULE(TransformerBlock);

// A sub-step of a block over the stage tuple. The tuple is {hidden, extra..., [mask]}:
// the key mask (BERT) always travels last, untouched.
struct SubStep {
  std::string name;
  std::string kind;
  std::shared_ptr<nn::Module> owner;
  LambdaStage::Function function;
};

std::vector<SubStep> block_substeps(const TransformerBlock& block, bool has_mask) {
  // Splits the tuple into its body and the trailing mask, and puts the mask back.
  auto body_of = [has_mask](const TensorList& tuple) {
    return has_mask ? TensorList(tuple.begin(), tuple.end() - 1) : tuple;
  };
  auto mask_of = [has_mask](const TensorList& tuple) { return has_mask ? tuple.back() : Tensor(); };
  auto with_mask = [has_mask](std::initializer_list<Tensor> body, const TensorList& tuple) {
    TensorList result;
    result.reserve(body.size() + 1);
    result.insert(result.end(), body.begin(), body.end());
    if (has_mask) result.push_back(tuple.back());
    return result;
  };
  auto expect = [body_of](const TensorList& tuple, size_t count, const char* step) {
    if (body_of(tuple).size() != count) {
      throw InvalidArgument(std::string("transformer sub-step ") + step + " expects " +
                            std::to_string(count) + " tensors (plus the mask, if any), got " +
                            std::to_string(body_of(tuple).size()));
    }
    return body_of(tuple);
  };
  auto norm_keep = [=](nn::LayerNorm norm) {  // pre-LN: {h} -> {h, norm(h)}
    return [=](const TensorList& tuple) mutable {
      TensorList body = expect(tuple, 1, "norm");
      return with_mask({body[0], norm->forward(body[0])}, tuple);
    };
  };
  auto norm_replace = [=](nn::LayerNorm norm) {  // post-LN: {s} -> {norm(s)}
    return [=](const TensorList& tuple) mutable {
      TensorList body = expect(tuple, 1, "norm");
      return with_mask({norm->forward(body[0])}, tuple);
    };
  };
  const bool pre_ln = block->pre_ln;
  QkvProjection qkv = block->qkv;
  AttentionCore core = block->core;
  OutputProjection output = block->output;
  FeedForward mlp = block->mlp;

  auto qkv_step = [=](const TensorList& tuple) mutable {
    // pre-LN: {h, x} -> {h, q, k, v}; post-LN: {h} -> {h, q, k, v}
    TensorList body = expect(tuple, pre_ln ? 2 : 1, "qkv");
    std::vector<Tensor> q_k_v = qkv->forward(body.back());
    return with_mask({body[0], q_k_v[0], q_k_v[1], q_k_v[2]}, tuple);
  };
  auto core_step = [=](const TensorList& tuple) mutable {
    TensorList body = expect(tuple, 4, "attention_core");
    return with_mask({body[0], core->forward(body[1], body[2], body[3], mask_of(tuple))}, tuple);
  };
  auto output_step = [=](const TensorList& tuple) mutable {
    TensorList body = expect(tuple, 2, "attention_output");
    return with_mask({output->forward(body[0], body[1])}, tuple);
  };
  auto mlp_step = [=](const TensorList& tuple) mutable {
    // pre-LN: {h, x} -> {h + mlp(x)}; post-LN: {h} -> {h + mlp(h)}
    TensorList body = expect(tuple, pre_ln ? 2 : 1, "mlp");
    return with_mask({body[0] + mlp->forward(body.back())}, tuple);
  };
  if (pre_ln) {
    return {{"norm1", "norm", block->norm1.ptr(), norm_keep(block->norm1)},
            {"qkv", "attention", qkv.ptr(), qkv_step},
            {"attention_core", "attention_core", core.ptr(), core_step},
            {"attention_output", "attention", output.ptr(), output_step},
            {"norm2", "norm", block->norm2.ptr(), norm_keep(block->norm2)},
            {"mlp", "mlp", mlp.ptr(), mlp_step}};
  }
  return {{"qkv", "attention", qkv.ptr(), qkv_step},
          {"attention_core", "attention_core", core.ptr(), core_step},
          {"attention_output", "attention", output.ptr(), output_step},
          {"norm1", "norm", block->norm1.ptr(), norm_replace(block->norm1)},
          {"mlp", "mlp", mlp.ptr(), mlp_step},
          {"norm2", "norm", block->norm2.ptr(), norm_replace(block->norm2)}};
}

void add_blocks(Chain& chain, const std::vector<TransformerBlock>& blocks, bool has_mask, bool fine) {
  for (size_t index = 0; index < blocks.size(); ++index) {
    const std::string block_name = "block" + std::to_string(index);
    std::vector<SubStep> steps = block_substeps(blocks[index], has_mask);
    if (fine) {
      for (const SubStep& step : steps) {
        chain.add_stage(block_name + "." + step.name, step.kind, make_stage(step.function, step.owner));
      }
      continue;
    }
    auto run_all = [steps](const TensorList& tuple) {
      TensorList current = tuple;
      for (const SubStep& step : steps) current = step.function(current);
      return current;
    };
    chain.add_stage(block_name, "block", make_stage(run_all, blocks[index].ptr()));
  }
}

std::vector<TransformerBlock> make_blocks(nn::Module& root, const ModelConfig& config, bool pre_ln,
                                          bool causal) {
  std::vector<TransformerBlock> blocks;
  nn::ModuleList list;
  for (int64_t index = 0; index < config.num_layers; ++index) {
    blocks.push_back(TransformerBlock(config, pre_ln, causal));
    list->push_back(blocks.back());
  }
  root.register_module("blocks", list);
  return blocks;
}

// GPT-2 / BERT / ViT style init: N(0, 0.02) weights, zero biases, unit norms; GPT-2
// additionally scales the residual projections by 1/sqrt(2 * layers).
void init_transformer(nn::Module& root, const ModelConfig& config, at::Generator& generator) {
  for (const auto& module : root.modules()) {
    if (auto* linear = dynamic_cast<nn::LinearImpl*>(module.get())) {
      init_normal(linear->weight, 0.02, generator);
      if (linear->bias.defined()) init_constant(linear->bias, 0);
    } else if (auto* embedding = dynamic_cast<nn::EmbeddingImpl*>(module.get())) {
      init_normal(embedding->weight, 0.02, generator);
    } else if (auto* norm = dynamic_cast<nn::LayerNormImpl*>(module.get())) {
      init_constant(norm->weight, 1);
      init_constant(norm->bias, 0);
    } else if (auto* conv = dynamic_cast<nn::Conv2dImpl*>(module.get())) {
      init_normal(conv->weight, 0.02, generator);
      init_constant(conv->bias, 0);
    }
  }
}

int64_t block_parameters(const ModelConfig& config) {
  const int64_t hidden = config.hidden_size, mlp = config.mlp_size;
  return 2 * 2 * hidden                      // two norms
         + hidden * 3 * hidden + 3 * hidden  // qkv
         + hidden * hidden + hidden          // output projection
         + hidden * mlp + mlp + mlp * hidden + hidden;
}

void check_tokens(const Tensor& tokens, const ModelConfig& config) {
  if (tokens.dim() != 2) {
    throw InvalidArgument(config.name + " expects tokens of shape [batch, seq_len], got " +
                          std::to_string(tokens.dim()) + " dimensions");
  }
  if (tokens.size(1) > config.context) {
    throw InvalidArgument(config.name + " has a context of " + std::to_string(config.context) +
                          " tokens, got sequences of " + std::to_string(tokens.size(1)) +
                          "; use a shorter seq_len");
  }
}

// ---------------------------------------------------------------------------- GPT
class GptEmbeddingImpl : public nn::Module {
 public:
  explicit GptEmbeddingImpl(const ModelConfig& config)
      : config_(config),
        tokens(register_module("tokens", nn::Embedding(config.vocab_size, config.hidden_size))),
        positions(register_module("positions", nn::Embedding(config.context, config.hidden_size))),
        dropout_(register_module("dropout", nn::Dropout(config.dropout))) {}

  Tensor forward(const Tensor& token_ids) {
    check_tokens(token_ids, config_);
    Tensor position_ids = torch::arange(
        token_ids.size(1), torch::TensorOptions().dtype(torch::kLong).device(token_ids.device()));
    return dropout_->forward(tokens->forward(token_ids) + positions->forward(position_ids));
  }

  ModelConfig config_;
  nn::Embedding tokens;
  nn::Embedding positions;

 private:
  nn::Dropout dropout_;
};
TORCH_MODULE(GptEmbedding);

class GptImpl : public nn::Module {
 public:
  explicit GptImpl(const ModelConfig& config)
      : embedding(register_module("embedding", GptEmbedding(config))),
        blocks(make_blocks(*this, config, /*pre_ln=*/true, /*causal=*/true)),
        final_norm(register_module("final_norm", make_norm(config))) {}

  Tensor head(const Tensor& normed) { return torch::linear(normed, embedding->tokens->weight); }

  Tensor forward(const Tensor& token_ids) {
    Tensor hidden = embedding->forward(token_ids);
    for (TransformerBlock& block : blocks) hidden = block->forward(hidden, Tensor());
    return head(final_norm->forward(hidden));
  }

  GptEmbedding embedding;
  std::vector<TransformerBlock> blocks;
  nn::LayerNorm final_norm;
};
TORCH_MODULE(Gpt);

// ---------------------------------------------------------------------------- BERT
class BertEmbeddingImpl : public nn::Module {
 public:
  explicit BertEmbeddingImpl(const ModelConfig& config)
      : config_(config),
        words(register_module("words", nn::Embedding(config.vocab_size, config.hidden_size))),
        positions(register_module("positions", nn::Embedding(config.context, config.hidden_size))),
        segments(register_module("segments", nn::Embedding(config.type_vocab_size, config.hidden_size))),
        norm(register_module("norm", make_norm(config))),
        dropout_(register_module("dropout", nn::Dropout(config.dropout))) {}

  Tensor forward(const Tensor& token_ids, const Tensor& segment_ids) {
    check_tokens(token_ids, config_);
    Tensor position_ids = torch::arange(
        token_ids.size(1), torch::TensorOptions().dtype(torch::kLong).device(token_ids.device()));
    Tensor summed =
        words->forward(token_ids) + positions->forward(position_ids) + segments->forward(segment_ids);
    return dropout_->forward(norm->forward(summed));
  }

  ModelConfig config_;
  nn::Embedding words;
  nn::Embedding positions;
  nn::Embedding segments;
  nn::LayerNorm norm;

 private:
  nn::Dropout dropout_;
};
TORCH_MODULE(BertEmbedding);

// The MLM head's transform (dense, GELU, norm) and the decoder's bias; the decoder's
// weight is the word embedding's.
class BertHeadImpl : public nn::Module {
 public:
  explicit BertHeadImpl(const ModelConfig& config)
      : dense(register_module("dense", nn::Linear(config.hidden_size, config.hidden_size))),
        norm(register_module("norm", make_norm(config))),
        bias(register_parameter("bias", torch::zeros({config.vocab_size}))) {}

  Tensor forward(const Tensor& hidden, const Tensor& word_weight) {
    return torch::linear(norm->forward(torch::gelu(dense->forward(hidden))), word_weight, bias);
  }

  nn::Linear dense;
  nn::LayerNorm norm;
  Tensor bias;
};
TORCH_MODULE(BertHead);

class BertImpl : public nn::Module {
 public:
  explicit BertImpl(const ModelConfig& config)
      : embedding(register_module("embedding", BertEmbedding(config))),
        blocks(make_blocks(*this, config, /*pre_ln=*/false, /*causal=*/false)),
        head(register_module("head", BertHead(config))) {}

  Tensor forward(const Tensor& token_ids, const Tensor& segment_ids, const Tensor& attention_mask) {
    Tensor hidden = embedding->forward(token_ids, segment_ids);
    for (TransformerBlock& block : blocks) hidden = block->forward(hidden, attention_mask);
    return head->forward(hidden, embedding->words->weight);
  }

  BertEmbedding embedding;
  std::vector<TransformerBlock> blocks;
  BertHead head;
};
TORCH_MODULE(Bert);

// ---------------------------------------------------------------------------- ViT
class PatchEmbeddingImpl : public nn::Module {
 public:
  explicit PatchEmbeddingImpl(const ModelConfig& config)
      : config_(config),
        projection(register_module(
            "projection", nn::Conv2d(nn::Conv2dOptions(config.channels, config.hidden_size, config.patch_size)
                                         .stride(config.patch_size)))),
        class_token(register_parameter("class_token", torch::zeros({1, 1, config.hidden_size}))),
        positions(register_parameter(
            "positions",
            torch::zeros(
                {1, (config.image_size / config.patch_size) * (config.image_size / config.patch_size) + 1,
                 config.hidden_size}))),
        dropout_(register_module("dropout", nn::Dropout(config.dropout))) {}

  Tensor forward(const Tensor& images) {
    if (images.dim() != 4 || images.size(1) != config_.channels || images.size(2) != config_.image_size ||
        images.size(3) != config_.image_size) {
      throw InvalidArgument(config_.name + " expects images of shape [batch, " +
                            std::to_string(config_.channels) + ", " + std::to_string(config_.image_size) +
                            ", " + std::to_string(config_.image_size) +
                            "]; set image_size to match the data");
    }
    Tensor patches = projection->forward(images).flatten(2).transpose(1, 2);  // [B, N, C]
    Tensor tokens = torch::cat({class_token.expand({images.size(0), 1, config_.hidden_size}), patches}, 1);
    return dropout_->forward(tokens + positions);
  }

  ModelConfig config_;
  nn::Conv2d projection;
  Tensor class_token;
  Tensor positions;

 private:
  nn::Dropout dropout_;
};
TORCH_MODULE(PatchEmbedding);

class VitImpl : public nn::Module {
 public:
  explicit VitImpl(const ModelConfig& config)
      : embedding(register_module("embedding", PatchEmbedding(config))),
        blocks(make_blocks(*this, config, /*pre_ln=*/true, /*causal=*/false)),
        final_norm(register_module("final_norm", make_norm(config))),
        classifier(register_module("classifier", nn::Linear(config.hidden_size, config.num_classes))) {}

  Tensor classify(const Tensor& normed) { return classifier->forward(normed.select(1, 0)); }

  Tensor forward(const Tensor& images) {
    Tensor hidden = embedding->forward(images);
    for (TransformerBlock& block : blocks) hidden = block->forward(hidden, Tensor());
    return classify(final_norm->forward(hidden));
  }

  PatchEmbedding embedding;
  std::vector<TransformerBlock> blocks;
  nn::LayerNorm final_norm;
  nn::Linear classifier;
};
TORCH_MODULE(Vit);

void expect_inputs(const TensorList& inputs, size_t count, const std::string& stage,
                   const std::string& what) {
  if (inputs.size() != count) {
    throw InvalidArgument("stage " + stage + " expects " + what + " (" + std::to_string(count) +
                          " tensors), got " + std::to_string(inputs.size()));
  }
}

}  // namespace

// The final norm and the head: one "head" stage at block granularity, a "norm" and a
// "head" stage at fine granularity. `classifier` owns the head's parameters; it is null for
// a head that reads tied weights registered by another stage.
void add_norm_and_head(Chain& chain, nn::LayerNorm final_norm, std::function<Tensor(const Tensor&)> head,
                       std::shared_ptr<nn::Module> classifier, bool fine) {
  if (fine) {
    chain.add_stage("final_norm", "norm",
                    make_stage(
                        [final_norm](const TensorList& inputs) mutable -> TensorList {
                          expect_inputs(inputs, 1, "final_norm", "{hidden}");
                          return {final_norm->forward(inputs[0])};
                        },
                        final_norm.ptr()));
    chain.add_stage("head", "head",
                    make_stage(
                        [head](const TensorList& inputs) -> TensorList {
                          expect_inputs(inputs, 1, "head", "{normed hidden}");
                          return {head(inputs[0])};
                        },
                        classifier));
    return;
  }
  std::shared_ptr<nn::Module> owner = final_norm.ptr();
  if (classifier) {
    owner = std::make_shared<BundleImpl>(std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>{
        {"final_norm", final_norm.ptr()}, {"classifier", classifier}});
  }
  chain.add_stage("head", "head",
                  make_stage(
                      [final_norm, head](const TensorList& inputs) mutable -> TensorList {
                        expect_inputs(inputs, 1, "head", "{hidden}");
                        return {head(final_norm->forward(inputs[0]))};
                      },
                      owner));
}

BuiltNetwork build_gpt(const ModelConfig& config) {
  at::Generator generator = at::detail::createCPUGenerator(config.seed);
  Gpt gpt(config);
  init_transformer(*gpt, config, generator);
  for (TransformerBlock& block : gpt->blocks) {
    const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(config.num_layers));
    init_normal(block->output->linear->weight, residual_std, generator);
    init_normal(block->mlp->projection->weight, residual_std, generator);
  }

  auto chain = std::make_shared<Chain>();
  GptEmbedding embedding = gpt->embedding;
  chain->add_stage("embed", "embed",
                   make_stage(
                       [embedding](const TensorList& inputs) mutable -> TensorList {
                         expect_inputs(inputs, 1, "embed", "{tokens}");
                         return {embedding->forward(inputs[0])};
                       },
                       embedding.ptr()));
  add_blocks(*chain, gpt->blocks, /*has_mask=*/false, config.fine);
  // The head reads the token embedding's weight without registering it (tied weights):
  // the parameter is listed once, under the embed stage, and both stages accumulate into it.
  nn::Embedding tokens = gpt->embedding->tokens;
  add_norm_and_head(
      *chain, gpt->final_norm,
      [tokens](const Tensor& normed) { return torch::linear(normed, tokens->weight); }, nullptr, config.fine);
  return {chain, [gpt](const TensorList& inputs) mutable -> TensorList {
            expect_inputs(inputs, 1, "gpt", "{tokens}");
            return {gpt->forward(inputs[0])};
          }};
}

BuiltNetwork build_bert(const ModelConfig& config) {
  at::Generator generator = at::detail::createCPUGenerator(config.seed);
  Bert bert(config);
  init_transformer(*bert, config, generator);

  auto chain = std::make_shared<Chain>();
  BertEmbedding embedding = bert->embedding;
  chain->add_stage("embed", "embed",
                   make_stage(
                       [embedding](const TensorList& inputs) mutable -> TensorList {
                         expect_inputs(inputs, 3, "embed", "{tokens, segments, attention_mask}");
                         return {embedding->forward(inputs[0], inputs[1]), inputs[2]};
                       },
                       embedding.ptr()));
  add_blocks(*chain, bert->blocks, /*has_mask=*/true, config.fine);
  BertHead head = bert->head;
  nn::Embedding words = bert->embedding->words;
  chain->add_stage("head", "head",
                   make_stage(
                       [head, words](const TensorList& inputs) mutable -> TensorList {
                         expect_inputs(inputs, 2, "head", "{hidden, attention_mask}");
                         return {head->forward(inputs[0], words->weight)};
                       },
                       head.ptr()));
  return {chain, [bert](const TensorList& inputs) mutable -> TensorList {
            expect_inputs(inputs, 3, "bert", "{tokens, segments, attention_mask}");
            return {bert->forward(inputs[0], inputs[1], inputs[2])};
          }};
}

BuiltNetwork build_vit(const ModelConfig& config) {
  at::Generator generator = at::detail::createCPUGenerator(config.seed);
  Vit vit(config);
  init_transformer(*vit, config, generator);
  init_normal(vit->embedding->class_token, 0.02, generator);
  init_normal(vit->embedding->positions, 0.02, generator);

  auto chain = std::make_shared<Chain>();
  PatchEmbedding embedding = vit->embedding;
  chain->add_stage("embed", "embed",
                   make_stage(
                       [embedding](const TensorList& inputs) mutable -> TensorList {
                         expect_inputs(inputs, 1, "embed", "{images}");
                         return {embedding->forward(inputs[0])};
                       },
                       embedding.ptr()));
  add_blocks(*chain, vit->blocks, /*has_mask=*/false, config.fine);
  nn::Linear classifier = vit->classifier;
  add_norm_and_head(
      *chain, vit->final_norm,
      [classifier](const Tensor& normed) mutable { return classifier->forward(normed.select(1, 0)); },
      classifier.ptr(), config.fine);
  return {chain, [vit](const TensorList& inputs) mutable -> TensorList {
            expect_inputs(inputs, 1, "vit", "{images}");
            return {vit->forward(inputs[0])};
          }};
}

int64_t count_transformer_parameters(const ModelConfig& config) {
  const int64_t hidden = config.hidden_size;
  const int64_t blocks = config.num_layers * block_parameters(config);
  if (config.family == "gpt") {
    return config.vocab_size * hidden + config.context * hidden + blocks + 2 * hidden;
  }
  if (config.family == "bert") {
    const int64_t embeddings =
        (config.vocab_size + config.context + config.type_vocab_size) * hidden + 2 * hidden;
    const int64_t head = hidden * hidden + hidden + 2 * hidden + config.vocab_size;
    return embeddings + blocks + head;
  }
  if (config.family == "vit") {
    const int64_t patches = (config.image_size / config.patch_size) * (config.image_size / config.patch_size);
    const int64_t embeddings = config.channels * config.patch_size * config.patch_size * hidden +
                               hidden                     // conv
                               + hidden                   // class token
                               + (patches + 1) * hidden;  // positions
    return embeddings + blocks + 2 * hidden + hidden * config.num_classes + config.num_classes;
  }
  throw InvalidArgument("count_transformer_parameters: unknown family \"" + config.family + "\"");
}

}  // namespace memento::models
