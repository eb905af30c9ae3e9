#include "memento/data/images.h"

#include <sys/stat.h>

#include "files.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "memento/core/error.h"
#include "random.h"

namespace memento {

namespace {

std::vector<uint8_t> read_binary(const std::string& path, const std::string& what) {
  return detail::read_maybe_gzipped_file(path, what + " file");
}

std::string hex32(uint32_t value) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "0x%08X", value);
  return buffer;
}

uint32_t big_endian32(const std::vector<uint8_t>& bytes, size_t offset) {
  return (uint32_t{bytes[offset]} << 24) | (uint32_t{bytes[offset + 1]} << 16) |
         (uint32_t{bytes[offset + 2]} << 8) | uint32_t{bytes[offset + 3]};
}

// Checks an idx header (magic + dims) and the body size; returns the dims.
std::vector<int64_t> read_idx_header(const std::vector<uint8_t>& bytes, const std::string& path,
                                     uint32_t magic, const char* kind) {
  const size_t dims = magic & 0xFF;
  const size_t header = 4 + 4 * dims;
  if (bytes.size() < header) {
    throw DataError("MNIST file " + path + ": truncated header at byte offset " +
                    std::to_string(bytes.size()) + ": an " + kind + " header needs " +
                    std::to_string(header) + " bytes");
  }
  const uint32_t found = big_endian32(bytes, 0);
  if (found != magic) {
    throw DataError("MNIST file " + path + ": bad magic number " + hex32(found) + " at byte offset 0; an " +
                    kind + " file starts with " + hex32(magic) +
                    " (are the images and labels files swapped?)");
  }
  std::vector<int64_t> shape;
  int64_t body = 1;
  for (size_t d = 0; d < dims; ++d) {
    shape.push_back(big_endian32(bytes, 4 + 4 * d));
    // Saturate instead of overflowing on a corrupt header: it then reads as truncated.
    constexpr int64_t kCap = int64_t{1} << 62;
    body = (shape.back() != 0 && body > kCap / shape.back()) ? kCap : body * shape.back();
  }
  const auto expected = static_cast<int64_t>(header) + body;
  const auto actual = static_cast<int64_t>(bytes.size());
  if (actual < expected) {
    throw DataError("MNIST file " + path + ": truncated at byte offset " + std::to_string(actual) +
                    ": the header (" + std::to_string(shape[0]) + " items) needs " +
                    std::to_string(expected) + " bytes");
  }
  if (actual > expected) {
    throw DataError("MNIST file " + path + ": " + std::to_string(actual - expected) +
                    " unexpected trailing bytes at byte offset " + std::to_string(expected));
  }
  return shape;
}

uint8_t clamp_byte(double value) {
  return static_cast<uint8_t>(std::lround(std::min(255.0, std::max(0.0, value))));
}

// Whether pixel offset (dx, dy) from the centre lies inside a shape of the given class and radius.
bool inside(int64_t shape, double dx, double dy, double radius) {
  const double distance = std::sqrt(dx * dx + dy * dy);
  switch (shape) {
    case 0:
      return distance <= radius;  // circle
    case 1:
      return std::fabs(dx) <= 0.8 * radius && std::fabs(dy) <= 0.8 * radius;  // square
    case 2: {                                                                 // triangle, apex up
      if (dy < -radius || dy > 0.7 * radius) return false;
      return std::fabs(dx) <= (dy + radius) / 1.7;
    }
    case 3:  // cross
      return (std::fabs(dx) <= 0.3 * radius && std::fabs(dy) <= radius) ||
             (std::fabs(dy) <= 0.3 * radius && std::fabs(dx) <= radius);
    default:
      return distance <= radius && distance >= 0.55 * radius;  // ring
  }
}

}  // namespace

ImageSet::ImageSet(torch::Tensor images, torch::Tensor labels, std::vector<std::string> class_names,
                   std::string source)
    : images_(std::move(images)),
      labels_(std::move(labels)),
      class_names_(std::move(class_names)),
      source_(std::move(source)) {
  if (images_.dim() != 4 || images_.scalar_type() != torch::kUInt8) {
    throw InvalidArgument("images of " + source_ + " must be a [N, C, H, W] uint8 tensor");
  }
  if (labels_.dim() != 1 || labels_.scalar_type() != torch::kInt64 || labels_.size(0) != images_.size(0)) {
    throw InvalidArgument("labels of " + source_ + " must be a [N] int64 tensor with one label per image");
  }
  if (class_names_.empty()) throw InvalidArgument("image set " + source_ + " needs at least one class name");
  if (labels_.numel() > 0 &&
      (labels_.min().item<int64_t>() < 0 || labels_.max().item<int64_t>() >= num_classes())) {
    throw InvalidArgument("labels of " + source_ + " must be in [0, " + std::to_string(num_classes()) + ")");
  }
  images_ = images_.contiguous();
  labels_ = labels_.contiguous();
}

Batch ImageSet::get_batch(const std::vector<int64_t>& indices) const {
  for (int64_t index : indices) {
    if (index < 0 || index >= size())
      throw InvalidArgument("image " + std::to_string(index) + " is outside " + describe());
  }
  const torch::Tensor rows = torch::tensor(indices, torch::kInt64);
  torch::Tensor pixels = images_.index_select(0, rows).to(torch::kFloat32).div_(127.5).sub_(1.0);
  return {{pixels}, {labels_.index_select(0, rows)}};
}

std::string ImageSet::describe() const {
  return source_ + ": " + std::to_string(size()) + " images of " + std::to_string(images_.size(1)) + "x" +
         std::to_string(images_.size(2)) + "x" + std::to_string(images_.size(3)) + ", " +
         std::to_string(num_classes()) + " classes";
}

std::vector<std::string> shape_class_names() {
  return {"circle", "square", "triangle", "cross", "ring"};
}

ImageSet generate_shapes(const ShapesOptions& options) {
  if (options.count() < 1)
    throw InvalidArgument("shape count must be at least 1, got " + std::to_string(options.count()));
  if (options.image_size() < 8) {
    throw InvalidArgument("shape image size must be at least 8 pixels, got " +
                          std::to_string(options.image_size()));
  }
  if (options.channels() != 1 && options.channels() != 3) {
    throw InvalidArgument("shape images have 1 or 3 channels, got " + std::to_string(options.channels()));
  }
  const int64_t count = options.count(), size = options.image_size(), channels = options.channels();
  const auto classes = static_cast<int64_t>(shape_class_names().size());
  std::mt19937_64 rng(data_detail::mix_seed(options.seed()));
  std::vector<int64_t> labels(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) labels[static_cast<size_t>(i)] = i % classes;
  data_detail::shuffle(labels, rng);

  torch::Tensor images = torch::empty({count, channels, size, size}, torch::kUInt8);
  uint8_t* pixels = images.data_ptr<uint8_t>();
  const int64_t plane = size * size;
  for (int64_t n = 0; n < count; ++n) {
    double background[3], foreground[3];
    for (int c = 0; c < 3; ++c) {
      background[c] = 20 + 80 * data_detail::unit(rng);
      foreground[c] = 150 + 105 * data_detail::unit(rng);
    }
    const double radius = size * (0.18 + 0.2 * data_detail::unit(rng));
    const double margin = radius + 1;
    const double cx = margin + (size - 2 * margin) * data_detail::unit(rng);
    const double cy = margin + (size - 2 * margin) * data_detail::unit(rng);
    const int64_t shape = labels[static_cast<size_t>(n)];
    uint8_t* image = pixels + n * channels * plane;
    for (int64_t y = 0; y < size; ++y) {
      for (int64_t x = 0; x < size; ++x) {
        const bool in = inside(shape, x + 0.5 - cx, y + 0.5 - cy, radius);
        for (int64_t c = 0; c < channels; ++c) {
          const double base = channels == 1 ? (in ? 200.0 : 50.0) : (in ? foreground[c] : background[c]);
          image[c * plane + y * size + x] = clamp_byte(base + 24 * (data_detail::unit(rng) - 0.5));
        }
      }
    }
  }
  return ImageSet(images, torch::tensor(labels, torch::kInt64), shape_class_names(),
                  "generated shapes (seed " + std::to_string(options.seed()) + ")");
}

ImageSet read_cifar10(const std::vector<std::string>& paths) {
  constexpr int64_t kRecord = 1 + 3 * 32 * 32;
  if (paths.empty()) throw InvalidArgument("read_cifar10 needs at least one data_batch_*.bin file");
  std::vector<std::vector<uint8_t>> files;
  int64_t records = 0;
  for (const auto& path : paths) {
    files.push_back(read_binary(path, "CIFAR-10"));
    const auto bytes = static_cast<int64_t>(files.back().size());
    if (bytes == 0) throw DataError("CIFAR-10 file " + path + " is empty (0 bytes)");
    if (bytes % kRecord != 0) {
      const int64_t offset = bytes / kRecord * kRecord;
      throw DataError("CIFAR-10 file " + path + ": truncated record " + std::to_string(bytes / kRecord) +
                      " at byte offset " + std::to_string(offset) + " (" + std::to_string(bytes - offset) +
                      " of " + std::to_string(kRecord) + " bytes: 1 label byte + 3072 pixel bytes)");
    }
    records += bytes / kRecord;
  }
  torch::Tensor images = torch::empty({records, 3, 32, 32}, torch::kUInt8);
  torch::Tensor labels = torch::empty({records}, torch::kInt64);
  uint8_t* pixels = images.data_ptr<uint8_t>();
  int64_t* label = labels.data_ptr<int64_t>();
  int64_t row = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const auto& bytes = files[f];
    for (size_t offset = 0; offset < bytes.size(); offset += kRecord, ++row) {
      if (bytes[offset] > 9) {
        throw DataError("CIFAR-10 file " + paths[f] + ": label " + std::to_string(bytes[offset]) +
                        " at byte offset " + std::to_string(offset) + " is not a class 0-9");
      }
      label[row] = bytes[offset];
      std::copy(bytes.begin() + static_cast<std::ptrdiff_t>(offset) + 1,
                bytes.begin() + static_cast<std::ptrdiff_t>(offset) + kRecord, pixels + row * (kRecord - 1));
    }
  }
  std::string source = "CIFAR-10 " + paths.front();
  if (paths.size() > 1) source += " and " + std::to_string(paths.size() - 1) + " more";
  return ImageSet(images, labels,
                  {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"},
                  source);
}

ImageSet read_mnist(const std::string& images_path, const std::string& labels_path) {
  const auto image_bytes = read_binary(images_path, "MNIST");
  const auto label_bytes = read_binary(labels_path, "MNIST");
  const auto image_shape = read_idx_header(image_bytes, images_path, 0x00000803, "idx3-ubyte images");
  const auto label_shape = read_idx_header(label_bytes, labels_path, 0x00000801, "idx1-ubyte labels");
  if (image_shape[0] != label_shape[0]) {
    throw DataError("MNIST files disagree: " + images_path + " holds " + std::to_string(image_shape[0]) +
                    " images but " + labels_path + " holds " + std::to_string(label_shape[0]) +
                    " labels (count at byte offset 4); pass matching files");
  }
  const int64_t count = image_shape[0], rows = image_shape[1], cols = image_shape[2];
  torch::Tensor images = torch::empty({count, 1, rows, cols}, torch::kUInt8);
  std::copy(image_bytes.begin() + 16, image_bytes.end(), images.data_ptr<uint8_t>());
  torch::Tensor labels = torch::empty({count}, torch::kInt64);
  int64_t* label = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t value = label_bytes[static_cast<size_t>(8 + i)];
    if (value > 9) {
      throw DataError("MNIST file " + labels_path + ": label " + std::to_string(value) + " at byte offset " +
                      std::to_string(8 + i) + " is not a digit 0-9");
    }
    label[i] = value;
  }
  return ImageSet(images, labels, {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, "MNIST " + images_path);
}

namespace {

std::string existing_idx_file(const std::string& dir, const std::string& name) {
  for (const std::string& candidate : {dir + "/" + name, dir + "/" + name + ".gz"}) {
    struct stat info {};
    if (::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode)) return candidate;
  }
  throw DataError("no " + name + " (or " + name + ".gz) in " + dir +
                  "; give a directory of MNIST-format idx files, e.g. /usr/share/datasets/fashion-mnist");
}

}  // namespace

ImageSet read_mnist_dir(const std::string& dir, const std::string& split) {
  if (split != "train" && split != "t10k")
    throw InvalidArgument("read_mnist_dir: split must be train or t10k, got \"" + split + "\"");
  // Images first, so that a directory missing both names the images file.
  const std::string images_path = existing_idx_file(dir, split + "-images-idx3-ubyte");
  return read_mnist(images_path, existing_idx_file(dir, split + "-labels-idx1-ubyte"));
}

ImageSet fit_images(const ImageSet& set, int64_t channels, int64_t size) {
  if (channels < 1)
    throw InvalidArgument("fit_images: channels must be at least 1, got " + std::to_string(channels));
  if (size < 1) throw InvalidArgument("fit_images: size must be at least 1, got " + std::to_string(size));
  torch::Tensor images = set.images();
  const int64_t have = images.size(1);
  if (have != channels) {
    if (have != 1) {
      throw InvalidArgument("fit_images: only a one-channel set can become " + std::to_string(channels) +
                            " channels; this one has " + std::to_string(have));
    }
    images = images.expand({images.size(0), channels, images.size(2), images.size(3)});
  }
  // Centred: pad with zeros (the datasets' background) or crop, per side.
  const int64_t rows = images.size(2), cols = images.size(3);
  const int64_t top = (size - rows) / 2, left = (size - cols) / 2;
  images = torch::constant_pad_nd(images, {left, size - cols - left, top, size - rows - top}, 0);
  return ImageSet(images.contiguous(), set.labels(), set.class_names(),
                  set.source() + " (fitted to " + std::to_string(channels) + "x" + std::to_string(size) +
                      "x" + std::to_string(size) + ")");
}

}  // namespace memento
