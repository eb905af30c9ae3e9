#include "memento/data/dataset.h"

#include <numeric>

#include "memento/core/error.h"
#include "random.h"

namespace memento {

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, int64_t batch_size, uint64_t seed,
                       bool shuffle, DataShard shard)
    : dataset_(std::move(dataset)), batch_size_(batch_size), seed_(seed), shuffle_(shuffle), shard_(shard) {
  if (!dataset_) throw InvalidArgument("DataLoader needs a data set");
  if (batch_size_ < 1)
    throw InvalidArgument("batch size must be at least 1, got " + std::to_string(batch_size_));
  if (shard_.count < 1 || shard_.index < 0 || shard_.index >= shard_.count) {
    throw InvalidArgument("data shard " + std::to_string(shard_.index) + " of " +
                          std::to_string(shard_.count) + " is not one of the shards 0 to count - 1");
  }
  const int64_t global_batch = batch_size_ * shard_.count;
  batches_per_epoch_ = dataset_->size() / global_batch;
  if (batches_per_epoch_ < 1) {
    throw InvalidArgument(
        "batch size " + std::to_string(batch_size_) +
        (shard_.count > 1 ? " on each of " + std::to_string(shard_.count) + " processes" : "") +
        " is larger than the data set (" + dataset_->describe() + "); lower --batch or use more data");
  }
}

void DataLoader::build_order() {
  order_.resize(static_cast<size_t>(dataset_->size()));
  std::iota(order_.begin(), order_.end(), int64_t{0});
  if (shuffle_) {
    // The permutation depends on (seed, epoch) only, so set_position() needs no saved order.
    std::mt19937_64 rng(
        data_detail::mix_seed(seed_ ^ data_detail::mix_seed(static_cast<uint64_t>(position_.epoch))));
    data_detail::shuffle(order_, rng);
  }
  order_epoch_ = position_.epoch;
}

Batch DataLoader::next() {
  if (position_.index >= batches_per_epoch_) {
    ++position_.epoch;
    position_.index = 0;
  }
  if (order_epoch_ != position_.epoch) build_order();
  const auto begin = order_.begin() + (position_.index * shard_.count + shard_.index) * batch_size_;
  std::vector<int64_t> indices(begin, begin + batch_size_);
  ++position_.index;
  return dataset_->get_batch(indices);
}

void DataLoader::set_position(const LoaderPosition& position) {
  if (position.epoch < 0 || position.index < 0 || position.index > batches_per_epoch_) {
    throw InvalidArgument("data position (epoch " + std::to_string(position.epoch) + ", batch " +
                          std::to_string(position.index) + ") is outside a data set of " +
                          std::to_string(batches_per_epoch_) + " batches per epoch");
  }
  position_ = position;
}

std::vector<Batch> evaluation_batches(const Dataset& dataset, int64_t batch_size, int64_t max_batches) {
  if (batch_size < 1)
    throw InvalidArgument("batch size must be at least 1, got " + std::to_string(batch_size));
  const int64_t available = dataset.size() / batch_size;
  if (available < 1) {
    throw InvalidArgument("evaluation batch size " + std::to_string(batch_size) +
                          " is larger than the data set (" + dataset.describe() +
                          "); lower --batch or use more data");
  }
  const int64_t count = max_batches > 0 ? std::min(max_batches, available) : available;
  // Batches are contiguous runs of samples placed evenly over the set, so a small
  // evaluation still sees the whole validation text rather than its beginning.
  std::vector<Batch> batches;
  batches.reserve(static_cast<size_t>(count));
  for (int64_t b = 0; b < count; ++b) {
    const int64_t first = (b * available / count) * batch_size;
    std::vector<int64_t> indices(static_cast<size_t>(batch_size));
    std::iota(indices.begin(), indices.end(), first);
    batches.push_back(dataset.get_batch(indices));
  }
  return batches;
}

}  // namespace memento
