#include "memento/data/text.h"

#include "files.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "random.h"

namespace memento {

namespace {

using data_detail::below;
using data_detail::between;

template <size_t N>
const char* pick(std::mt19937_64& rng, const char* const (&words)[N]) {
  return words[below(rng, N)];
}

const char* const kDeterminers[] = {"the", "a", "every", "one", "that"};
const char* const kAdjectives[] = {"small", "red",   "quiet", "old",  "happy", "green",
                                   "tall",  "quick", "lazy",  "blue", "young", "bright"};
const char* const kNouns[] = {"cat",   "dog",     "bird", "fox",    "child", "farmer", "robot",
                              "horse", "teacher", "fish", "sailor", "king",  "ball",   "tree"};
const char* const kPluralNouns[] = {"cats",   "dogs",     "birds", "foxes",   "children", "farmers", "robots",
                                    "horses", "teachers", "fish",  "sailors", "kings",    "balls",   "trees"};
const char* const kVerbs[] = {"see", "chase", "find", "follow", "watch", "help", "like", "carry"};
const char* const kVerbsThird[] = {"sees",    "chases", "finds", "follows",
                                   "watches", "helps",  "likes", "carries"};
const char* const kPlaces[] = {"the river", "the hill", "the house", "the garden", "the market", "the sea"};
const char* const kPrepositions[] = {"near", "behind", "under", "beside"};

// "<det> [adj] noun" — plural subjects drop the determiner's singular forms.
std::string noun_phrase(std::mt19937_64& rng, bool plural) {
  std::string phrase = plural ? (below(rng, 2) ? "the" : "some") : pick(rng, kDeterminers);
  if (below(rng, 2)) phrase += std::string(" ") + pick(rng, kAdjectives);
  const size_t noun = below(rng, std::size(kNouns));
  phrase += std::string(" ") + (plural ? kPluralNouns[noun] : kNouns[noun]);
  return phrase;
}

std::string sentence(std::mt19937_64& rng) {
  const bool plural = below(rng, 3) == 0;
  std::string text = noun_phrase(rng, plural);
  const size_t verb = below(rng, std::size(kVerbs));
  text += std::string(" ") + (plural ? kVerbs[verb] : kVerbsThird[verb]) + " ";
  text += noun_phrase(rng, below(rng, 4) == 0);
  if (below(rng, 2)) text += std::string(" ") + pick(rng, kPrepositions) + " " + pick(rng, kPlaces);
  text += ".";
  text[0] = static_cast<char>(text[0] - 'a' + 'A');
  return text;
}

std::string addition(std::mt19937_64& rng) {
  const int64_t a = between(rng, 0, 99), b = between(rng, 0, 99);
  return std::to_string(a) + "+" + std::to_string(b) + "=" + std::to_string(a + b);
}

std::string sorting(std::mt19937_64& rng) {
  std::vector<int64_t> values(static_cast<size_t>(between(rng, 3, 7)));
  for (auto& value : values) value = between(rng, 0, 9);
  std::string text = "sort";
  for (auto value : values) text += " " + std::to_string(value);
  std::sort(values.begin(), values.end());
  text += " ->";
  for (auto value : values) text += " " + std::to_string(value);
  return text;
}

std::string copying(std::mt19937_64& rng) {
  std::string word(static_cast<size_t>(between(rng, 3, 8)), 'a');
  for (char& c : word) c = static_cast<char>('a' + below(rng, 26));
  const bool reverse = below(rng, 2);
  std::string result = word;
  if (reverse) std::reverse(result.begin(), result.end());
  return std::string(reverse ? "reverse " : "copy ") + word + " -> " + result;
}

}  // namespace

std::vector<uint8_t> generate_corpus(const CorpusOptions& options) {
  if (options.bytes() < 1024) {
    throw InvalidArgument("corpus size " + std::to_string(options.bytes()) +
                          " bytes is too small; use at least 1024");
  }
  std::mt19937_64 rng(data_detail::mix_seed(options.seed()));
  std::vector<uint8_t> bytes;
  bytes.reserve(static_cast<size_t>(options.bytes()));
  while (static_cast<int64_t>(bytes.size()) < options.bytes()) {
    // Half prose, half algorithmic lines: prose teaches local statistics, the algorithmic
    // lines reward attending to earlier tokens in the window.
    std::string line;
    switch (below(rng, 6)) {
      case 0:
      case 1:
      case 2:
        line = sentence(rng);
        break;
      case 3:
        line = addition(rng);
        break;
      case 4:
        line = sorting(rng);
        break;
      default:
        line = copying(rng);
        break;
    }
    line += '\n';
    bytes.insert(bytes.end(), line.begin(), line.end());
  }
  bytes.resize(static_cast<size_t>(options.bytes()));
  return bytes;
}

std::vector<uint8_t> read_text_file(const std::string& path) {
  std::vector<uint8_t> bytes = detail::read_whole_file(path, "text file");
  if (bytes.empty())
    throw DataError("text file " + path + " is empty (0 bytes); give a file with text in it");
  return bytes;
}

TokenWindows::TokenWindows(std::vector<uint8_t> bytes, int64_t seq_len, int64_t stride, std::string source)
    : bytes_(std::move(bytes)), seq_len_(seq_len), stride_(stride), source_(std::move(source)) {
  if (seq_len_ < 1)
    throw InvalidArgument("sequence length must be at least 1, got " + std::to_string(seq_len_));
  if (stride_ < 1) throw InvalidArgument("window stride must be at least 1, got " + std::to_string(stride_));
  const auto count = static_cast<int64_t>(bytes_.size());
  if (count < seq_len_ + 1) {
    throw DataError(source_ + " has " + std::to_string(count) + " bytes; a window of " +
                    std::to_string(seq_len_) + " tokens needs " + std::to_string(seq_len_ + 1) +
                    " (lower --seq-len or give more text)");
  }
  windows_ = (count - seq_len_ - 1) / stride_ + 1;
}

Batch TokenWindows::get_batch(const std::vector<int64_t>& indices) const {
  const auto rows = static_cast<int64_t>(indices.size());
  torch::Tensor inputs = torch::empty({rows, seq_len_}, torch::kInt64);
  torch::Tensor targets = torch::empty({rows, seq_len_}, torch::kInt64);
  int64_t* in = inputs.data_ptr<int64_t>();
  int64_t* out = targets.data_ptr<int64_t>();
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t index = indices[static_cast<size_t>(row)];
    if (index < 0 || index >= windows_) {
      throw InvalidArgument("window " + std::to_string(index) + " is outside " + describe());
    }
    const uint8_t* window = bytes_.data() + index * stride_;
    for (int64_t t = 0; t < seq_len_; ++t) {
      in[row * seq_len_ + t] = window[t];
      out[row * seq_len_ + t] = window[t + 1];
    }
  }
  return {{inputs}, {targets}};
}

std::string TokenWindows::describe() const {
  return source_ + ": " + format_bytes(static_cast<int64_t>(bytes_.size())) + ", " +
         std::to_string(windows_) + " windows of " + std::to_string(seq_len_) + " tokens";
}

TextSplit split_text(const std::vector<uint8_t>& bytes, const std::string& source, int64_t seq_len,
                     double validation_fraction) {
  if (seq_len < 1)
    throw InvalidArgument("sequence length must be at least 1, got " + std::to_string(seq_len));
  if (!(validation_fraction > 0 && validation_fraction < 1)) {
    throw InvalidArgument("validation fraction must be in (0, 1), got " +
                          std::to_string(validation_fraction));
  }
  const auto total = static_cast<int64_t>(bytes.size());
  const int64_t window = seq_len + 1;
  const int64_t validation =
      std::max(window, static_cast<int64_t>(static_cast<double>(total) * validation_fraction));
  if (total - validation < window) {
    throw DataError(source + " has " + std::to_string(total) + " bytes; training and validation windows of " +
                    std::to_string(seq_len) + " tokens need at least " + std::to_string(2 * window) +
                    " (lower --seq-len or give more text)");
  }
  const auto cut = bytes.begin() + (total - validation);
  TextSplit split;
  split.train = std::make_shared<TokenWindows>(std::vector<uint8_t>(bytes.begin(), cut), seq_len,
                                               std::max<int64_t>(1, seq_len / 2), source + " (train)");
  split.validation = std::make_shared<TokenWindows>(std::vector<uint8_t>(cut, bytes.end()), seq_len, seq_len,
                                                    source + " (validation)");
  return split;
}

MaskedTokenWindows::MaskedTokenWindows(std::shared_ptr<const TokenWindows> windows, uint64_t seed,
                                       double mask_fraction)
    : windows_(std::move(windows)), seed_(seed), mask_fraction_(mask_fraction) {
  if (!windows_) throw InvalidArgument("masked windows need token windows, got none");
  if (!(mask_fraction_ > 0 && mask_fraction_ <= 1)) {
    throw InvalidArgument("mask fraction must be in (0, 1], got " + std::to_string(mask_fraction_));
  }
  if (windows_->seq_len() < 2) {
    throw InvalidArgument("masked windows need at least 2 tokens (two segments), got " +
                          std::to_string(windows_->seq_len()));
  }
}

Batch MaskedTokenWindows::get_batch(const std::vector<int64_t>& indices) const {
  // The bytes of each window are the next-token data set's inputs; its targets are unused.
  torch::Tensor tokens = windows_->get_batch(indices).inputs[0];
  const int64_t rows = tokens.size(0), length = tokens.size(1);
  torch::Tensor labels = torch::full({rows, length}, -100, torch::kInt64);
  torch::Tensor segments = torch::zeros({rows, length}, torch::kInt64);
  segments.narrow(1, length / 2, length - length / 2).fill_(1);
  int64_t* token = tokens.data_ptr<int64_t>();
  int64_t* label = labels.data_ptr<int64_t>();
  for (int64_t row = 0; row < rows; ++row) {
    const auto index = static_cast<uint64_t>(indices[static_cast<size_t>(row)]);
    std::mt19937_64 rng(data_detail::mix_seed(seed_ ^ data_detail::mix_seed(index)));
    int64_t* window = token + row * length;
    int64_t* target = label + row * length;
    bool any = false;
    for (int64_t t = 0; t < length; ++t) {
      const bool selected = data_detail::unit(rng) < mask_fraction_;
      const double choice = data_detail::unit(rng);
      const auto random_byte = static_cast<int64_t>(below(rng, 256));
      // Every window predicts at least one token: its last position if the draw chose none.
      if (!selected && !(t == length - 1 && !any)) continue;
      any = true;
      target[t] = window[t];
      if (choice < 0.8) {
        window[t] = kMaskToken;
      } else if (choice < 0.9) {
        window[t] = random_byte;
      }
    }
  }
  return {{tokens, segments, torch::ones({rows, length}, torch::kInt64)}, {labels}};
}

std::string MaskedTokenWindows::describe() const {
  char fraction[16];
  std::snprintf(fraction, sizeof fraction, "%g%%", 100 * mask_fraction_);
  return windows_->describe() + ", " + fraction + " masked";
}

MaskedTextSplit split_masked_text(const std::vector<uint8_t>& bytes, const std::string& source,
                                  int64_t seq_len, uint64_t seed, double validation_fraction) {
  const TextSplit text = split_text(bytes, source, seq_len, validation_fraction);
  return {std::make_shared<MaskedTokenWindows>(text.train, seed),
          std::make_shared<MaskedTokenWindows>(text.validation, data_detail::mix_seed(seed + 1))};
}

}  // namespace memento
