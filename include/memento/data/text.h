#pragma once
/// \file
/// Byte-level text for the language models (vocabulary 256): a generated, seeded corpus
/// with real structure, plain text files, and `TokenWindows`, the data set of fixed-length
/// windows with next-token targets.
///
/// The generated corpus mixes lines of four kinds, each learnable from context:
/// sentences of a small grammar with subject-verb agreement ("the small cats chase a red
/// ball near the river."), two-digit additions ("47+35=82"), sorting ("sort 7 3 9 -> 3 7 9")
/// and copying/reversing of short words ("reverse kqzt -> tzqk").
///
/// Example:
/// \code
///   std::vector<uint8_t> bytes = memento::generate_corpus(memento::CorpusOptions().bytes(1 << 20).seed(7));
///   memento::TextSplit split = memento::split_text(bytes, "generated corpus", /*seq_len=*/64);
///   memento::Batch batch = split.train->get_batch({0, 1});  // inputs[0]: [2, 64] int64 tokens
///   // targets[0][b][t] == inputs[0][b][t + 1] inside a window: next-token prediction
/// \endcode

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memento/data/dataset.h"

namespace memento {

/// Options of the generated corpus.
class CorpusOptions {
 public:
  /// Size of the corpus in bytes (default 1 MiB); at least 1024.
  CorpusOptions& bytes(int64_t count) {
    bytes_ = count;
    return *this;
  }
  /// Seed of the generator (default 0): the same seed gives the same corpus everywhere.
  CorpusOptions& seed(uint64_t value) {
    seed_ = value;
    return *this;
  }
  int64_t bytes() const { return bytes_; }
  uint64_t seed() const { return seed_; }

 private:
  int64_t bytes_ = 1 << 20;
  uint64_t seed_ = 0;
};

/// Generates the corpus (exactly options.bytes() bytes, whole lines except possibly the
/// last). Throws InvalidArgument for fewer than 1024 bytes.
std::vector<uint8_t> generate_corpus(const CorpusOptions& options = CorpusOptions());

/// Reads a text file as bytes. Throws DataError naming the file when it cannot be read or
/// is empty.
std::vector<uint8_t> read_text_file(const std::string& path);

/// Windows of `seq_len` tokens from a byte sequence, starting every `stride` bytes; the
/// targets are the same window shifted by one byte. Batches: inputs {[B, seq_len] int64},
/// targets {[B, seq_len] int64}.
class TokenWindows : public Dataset {
 public:
  /// Throws DataError naming `source` when there are fewer than seq_len + 1 bytes, and
  /// InvalidArgument when seq_len or stride < 1.
  TokenWindows(std::vector<uint8_t> bytes, int64_t seq_len, int64_t stride, std::string source);

  int64_t size() const override { return windows_; }
  Batch get_batch(const std::vector<int64_t>& indices) const override;
  std::string describe() const override;
  int64_t items_per_sample() const override { return seq_len_; }
  std::string item_unit() const override { return "tok"; }

  int64_t seq_len() const { return seq_len_; }
  int64_t byte_count() const { return static_cast<int64_t>(bytes_.size()); }

 private:
  std::vector<uint8_t> bytes_;
  int64_t seq_len_;
  int64_t stride_;
  int64_t windows_;
  std::string source_;
};

/// Training and validation windows of one text.
struct TextSplit {
  std::shared_ptr<TokenWindows> train;
  std::shared_ptr<TokenWindows> validation;
};

/// Splits `bytes` into a leading training part and a trailing validation part of
/// `validation_fraction` of the bytes (at least seq_len + 1 of them). Training windows
/// start every seq_len / 2 bytes (overlapping, more distinct contexts), validation
/// windows every seq_len bytes. Throws DataError naming `source` when the text is too
/// short for one window on each side (say how many bytes are needed).
TextSplit split_text(const std::vector<uint8_t>& bytes, const std::string& source, int64_t seq_len,
                     double validation_fraction = 0.1);

/// Masked-language-model windows of a text (BERT pre-training on bytes): every window of
/// `TokenWindows` with `mask_fraction` of its positions selected for prediction, each
/// selected byte replaced by [MASK] (80%), by a random byte (10%) or kept (10%), as BERT
/// does. The selection is static: it depends only on (seed, window index), so every epoch,
/// every evaluation and a resumed run see the same masks. Batches: inputs {tokens,
/// segments, attention mask}, each [B, seq_len] int64 (segment 0 for the first half of a
/// window, 1 for the second; the mask is all ones: windows have no padding), targets
/// {[B, seq_len] int64}: the original byte at selected positions, -100 (ignored by the
/// loss) elsewhere. Vocabulary: the 256 bytes and [MASK] = 256.
///
/// Example:
/// \code
///   memento::MaskedTextSplit split = memento::split_masked_text(bytes, "fortunes", 64, /*seed=*/0);
///   memento::Batch batch = split.train->get_batch({0});  // inputs.size() == 3, targets[0]: [1, 64]
/// \endcode
class MaskedTokenWindows : public Dataset {
 public:
  /// The [MASK] token, one past the bytes.
  static constexpr int64_t kMaskToken = 256;
  /// Bytes and [MASK]: the vocabulary a model of these windows needs.
  static constexpr int64_t kVocabularySize = 257;

  /// Throws InvalidArgument when `mask_fraction` is not in (0, 1] or the windows are shorter
  /// than 2 tokens (two segments).
  MaskedTokenWindows(std::shared_ptr<const TokenWindows> windows, uint64_t seed, double mask_fraction = 0.15);

  int64_t size() const override { return windows_->size(); }
  Batch get_batch(const std::vector<int64_t>& indices) const override;
  std::string describe() const override;
  /// Tokens per window (every one is read, whether masked or not), for throughput.
  int64_t items_per_sample() const override { return windows_->seq_len(); }
  std::string item_unit() const override { return "tok"; }

 private:
  std::shared_ptr<const TokenWindows> windows_;
  uint64_t seed_;
  double mask_fraction_;
};

/// Training and validation masked-LM windows of one text.
struct MaskedTextSplit {
  std::shared_ptr<MaskedTokenWindows> train;
  std::shared_ptr<MaskedTokenWindows> validation;
};

/// `split_text` with masking on both sides (the validation masks come from another seed
/// than the training ones, so they are not the training masks of the same bytes).
/// Throws as `split_text` does.
MaskedTextSplit split_masked_text(const std::vector<uint8_t>& bytes, const std::string& source,
                                  int64_t seq_len, uint64_t seed, double validation_fraction = 0.1);

}  // namespace memento
