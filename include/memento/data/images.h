#pragma once
/// \file
/// Images for the vision models: a generated, seeded set of rendered shapes (the class is
/// the shape), and loaders for the real formats users bring: CIFAR-10 binary batches and
/// MNIST idx files. Bad or truncated files throw DataError naming the file and byte offset.
///
/// Example:
/// \code
///   memento::ImageSet shapes = memento::generate_shapes(memento::ShapesOptions().count(512).image_size(32));
///   memento::Batch batch = shapes.get_batch({0, 1, 2});   // inputs {[3, 3, 32, 32] float}, targets {[3]
///   int64} memento::ImageSet cifar = memento::read_cifar10({"data_batch_1.bin", "data_batch_2.bin"});
///   memento::ImageSet mnist = memento::read_mnist("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
/// \endcode

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "memento/data/dataset.h"

namespace memento {

/// Labelled images held as bytes. Batches: inputs {[B, C, H, W] float32 scaled to [-1, 1]},
/// targets {[B] int64 class indices}.
class ImageSet : public Dataset {
 public:
  /// `images`: [N, C, H, W] uint8; `labels`: [N] int64 in [0, class_names.size()).
  /// Throws InvalidArgument when the shapes, dtypes or labels disagree.
  ImageSet(torch::Tensor images, torch::Tensor labels, std::vector<std::string> class_names,
           std::string source);

  int64_t size() const override { return images_.size(0); }
  Batch get_batch(const std::vector<int64_t>& indices) const override;
  std::string describe() const override;
  std::string item_unit() const override { return "img"; }

  int64_t num_classes() const { return static_cast<int64_t>(class_names_.size()); }
  const std::vector<std::string>& class_names() const { return class_names_; }
  const torch::Tensor& images() const { return images_; }  ///< [N, C, H, W] uint8
  const torch::Tensor& labels() const { return labels_; }  ///< [N] int64
  const std::string& source() const { return source_; }    ///< where the images came from

 private:
  torch::Tensor images_;
  torch::Tensor labels_;
  std::vector<std::string> class_names_;
  std::string source_;
};

/// Options of the generated shapes set.
class ShapesOptions {
 public:
  /// Number of images (default 2048).
  ShapesOptions& count(int64_t value) {
    count_ = value;
    return *this;
  }
  /// Pixels per side (default 32, at least 8).
  ShapesOptions& image_size(int64_t value) {
    image_size_ = value;
    return *this;
  }
  /// 3 (RGB, default) or 1 (grey).
  ShapesOptions& channels(int64_t value) {
    channels_ = value;
    return *this;
  }
  /// Seed of the generator (default 0).
  ShapesOptions& seed(uint64_t value) {
    seed_ = value;
    return *this;
  }
  int64_t count() const { return count_; }
  int64_t image_size() const { return image_size_; }
  int64_t channels() const { return channels_; }
  uint64_t seed() const { return seed_; }

 private:
  int64_t count_ = 2048;
  int64_t image_size_ = 32;
  int64_t channels_ = 3;
  uint64_t seed_ = 0;
};

/// Class names of the shapes set, in label order: circle, square, triangle, cross, ring.
std::vector<std::string> shape_class_names();

/// Renders `count` images, each one shape of a random class, position, size and colour on
/// a random darker background with pixel noise; classes are balanced (label = index mod 5
/// before shuffling). Throws InvalidArgument for a count < 1, a size < 8 or channels not 1 or 3.
ImageSet generate_shapes(const ShapesOptions& options = ShapesOptions());

/// Reads CIFAR-10 binary batches (data_batch_*.bin, test_batch.bin: records of 1 label
/// byte + 3072 pixel bytes, 3x32x32 channel-major). Throws DataError naming the file and
/// the byte offset of a truncated record or a label above 9.
ImageSet read_cifar10(const std::vector<std::string>& paths);

/// Reads an MNIST pair: images (idx3-ubyte: magic 0x00000803, big-endian count, rows,
/// cols, then pixels) and labels (idx1-ubyte: magic 0x00000801, count, then labels).
/// Throws DataError naming the file and byte offset for a wrong magic number, a truncated
/// header or body, a label above 9, or counts that disagree between the two files.
/// Files ending in .gz are decompressed first.
ImageSet read_mnist(const std::string& images_path, const std::string& labels_path);

/// Reads the MNIST-format pair `SPLIT-images-idx3-ubyte` and `SPLIT-labels-idx1-ubyte`
/// (each also found with .gz) from `dir`; `split` is "train" or "t10k". Debian's
/// dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist.
ImageSet read_mnist_dir(const std::string& dir, const std::string& split);

/// The set with `channels` channels (a one-channel set repeated) and `size` x `size`
/// pixels, centred: padded with zeros or cropped. For zoo models that take 3-channel
/// images: fit_images(read_mnist_dir(dir, "train"), 3, 32) pads 28x28 by 2 pixels a side.
ImageSet fit_images(const ImageSet& set, int64_t channels, int64_t size);

}  // namespace memento
