#pragma once
/// \file
/// `Dataset`: samples addressed by index that assemble themselves into a `Batch`, and
/// `DataLoader`: seeded, reproducible shuffled batches with a position that can be saved
/// and restored, so a resumed run reads exactly the batches the interrupted one would have.
///
/// Example:
/// \code
///   auto corpus = memento::generate_corpus(memento::CorpusOptions());
///   memento::TextSplit split = memento::split_text(corpus, "generated corpus", /*seq_len=*/64);
///   memento::DataLoader loader(split.train, /*batch_size=*/8, /*seed=*/0);
///   memento::Batch batch = loader.next();                // inputs {[8, 64] int64}, targets {[8, 64]}
///   memento::LoaderPosition where = loader.position();   // save it, later loader.set_position(where)
/// \endcode

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memento/torch/chain.h"

namespace memento {

/// A data set of `size()` samples; `get_batch` stacks the samples with the given indices.
class Dataset {
 public:
  virtual ~Dataset() = default;
  /// Number of samples.
  virtual int64_t size() const = 0;
  /// The samples at `indices` (each in [0, size())) as one batch, in that order.
  /// Throws InvalidArgument for an index out of range.
  virtual Batch get_batch(const std::vector<int64_t>& indices) const = 0;
  /// One line for logs, e.g. "generated corpus: 921.6 KiB, 28800 windows of 64 tokens".
  virtual std::string describe() const = 0;
  /// Items a sample counts for throughput (tokens per window; 1 for an image).
  virtual int64_t items_per_sample() const { return 1; }
  /// Unit of those items for throughput ("tok", "img").
  virtual std::string item_unit() const { return "samples"; }
};

/// Where a DataLoader is: `index` batches into epoch `epoch`.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t index = 0;
  bool operator==(const LoaderPosition& other) const { return epoch == other.epoch && index == other.index; }
};

/// One process's share of a data-parallel run: shard `index` of `count`.
struct DataShard {
  int index = 0;
  int count = 1;
};

/// Serves batches of `batch_size` samples, epoch after epoch. With `shuffle`, every epoch
/// visits the samples in a permutation that depends only on (seed, epoch), drawn with a
/// fixed algorithm (the same on every standard library). The last partial batch of an
/// epoch is dropped so every batch has the same shape.
///
/// With a `shard` of `count` > 1, the loader is one rank's part of a global batch of
/// count x batch_size samples: at every position (epoch, index) shard k serves samples
/// [k x batch_size, (k+1) x batch_size) of the global batch that one loader with
/// count x batch_size would serve there, so the ranks together see exactly what one
/// process with the whole batch sees, and every rank's position is the same.
class DataLoader {
 public:
  /// Throws InvalidArgument when batch_size < 1, the shard is not 0 <= index < count, or
  /// the data set has fewer samples than one global batch.
  DataLoader(std::shared_ptr<const Dataset> dataset, int64_t batch_size, uint64_t seed, bool shuffle = true,
             DataShard shard = {});

  /// The next batch; moves to the next epoch when this one is used up.
  Batch next();
  /// Position of the next batch.
  LoaderPosition position() const { return position_; }
  /// Continues from `position` (from position() of a loader with the same data set, batch size
  /// and seed). Throws InvalidArgument for a negative epoch or an index beyond the epoch.
  void set_position(const LoaderPosition& position);

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t batch_size() const { return batch_size_; }
  const DataShard& shard() const { return shard_; }
  const Dataset& dataset() const { return *dataset_; }

 private:
  void build_order();

  std::shared_ptr<const Dataset> dataset_;
  int64_t batch_size_;
  uint64_t seed_;
  bool shuffle_;
  DataShard shard_;
  int64_t batches_per_epoch_;
  LoaderPosition position_;
  int64_t order_epoch_ = -1;
  std::vector<int64_t> order_;
};

/// Up to `max_batches` batches of `batch_size` samples spread evenly over the data set,
/// in a fixed order (no randomness): the evaluation set of a run. With max_batches <= 0
/// every full batch is returned.
std::vector<Batch> evaluation_batches(const Dataset& dataset, int64_t batch_size, int64_t max_batches);

}  // namespace memento
