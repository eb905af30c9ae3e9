#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "memento/core/error.h"
#include "memento/data/dataset.h"
#include "memento/data/images.h"
#include "memento/data/text.h"

namespace {

using memento::DataError;

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "memento_data_" + std::to_string(::getpid()) + "_" + name;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::string> lines_of(const std::vector<uint8_t>& bytes) {
  std::vector<std::string> lines;
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  lines.pop_back();  // the last line may be cut by the size limit
  return lines;
}

// Expects `call` to throw DataError whose message contains every piece of `pieces`.
template <typename Call>
void expect_data_error(Call call, const std::vector<std::string>& pieces) {
  try {
    call();
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    for (const auto& piece : pieces)
      EXPECT_NE(std::string(e.what()).find(piece), std::string::npos) << e.what();
  }
}

TEST(DataCorpus, SameSeedSameBytesAndExactSize) {
  const auto a = memento::generate_corpus(memento::CorpusOptions().bytes(5000).seed(3));
  const auto b = memento::generate_corpus(memento::CorpusOptions().bytes(5000).seed(3));
  const auto c = memento::generate_corpus(memento::CorpusOptions().bytes(5000).seed(4));
  EXPECT_EQ(a.size(), 5000u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_THROW(memento::generate_corpus(memento::CorpusOptions().bytes(100)), memento::InvalidArgument);
}

TEST(DataCorpus, AlgorithmicLinesAreCorrectAndEveryKindAppears) {
  const auto lines = lines_of(memento::generate_corpus(memento::CorpusOptions().bytes(40000).seed(1)));
  int sentences = 0, additions = 0, sorts = 0, copies = 0;
  for (const auto& line : lines) {
    if (line.rfind("sort ", 0) == 0) {
      ++sorts;
      const auto arrow = line.find(" -> ");
      ASSERT_NE(arrow, std::string::npos) << line;
      std::vector<int> before, after;
      std::istringstream left(line.substr(5, arrow - 5)), right(line.substr(arrow + 4));
      for (int v; left >> v;) before.push_back(v);
      for (int v; right >> v;) after.push_back(v);
      std::sort(before.begin(), before.end());
      EXPECT_EQ(before, after) << line;
    } else if (line.rfind("copy ", 0) == 0 || line.rfind("reverse ", 0) == 0) {
      ++copies;
      const bool reverse = line[0] == 'r';
      const auto arrow = line.find(" -> ");
      std::string word = line.substr(reverse ? 8 : 5, arrow - (reverse ? 8 : 5));
      if (reverse) std::reverse(word.begin(), word.end());
      EXPECT_EQ(word, line.substr(arrow + 4)) << line;
    } else if (line.find('=') != std::string::npos) {
      ++additions;
      int a = -1, b = -1, sum = -1;
      ASSERT_EQ(std::sscanf(line.c_str(), "%d+%d=%d", &a, &b, &sum), 3) << line;
      EXPECT_EQ(a + b, sum) << line;
    } else {
      ++sentences;
      EXPECT_TRUE(std::isupper(static_cast<unsigned char>(line[0]))) << line;
      EXPECT_EQ(line.back(), '.') << line;
    }
  }
  EXPECT_GT(sentences, 100);
  EXPECT_GT(additions, 50);
  EXPECT_GT(sorts, 50);
  EXPECT_GT(copies, 50);
}

TEST(DataTokenWindows, TargetsAreInputsShiftedByOne) {
  std::vector<uint8_t> bytes(100);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7);
  memento::TokenWindows windows(bytes, 10, 5, "counting");
  EXPECT_EQ(windows.size(), (100 - 11) / 5 + 1);
  EXPECT_EQ(windows.items_per_sample(), 10);
  const memento::Batch batch = windows.get_batch({0, 3, windows.size() - 1});
  ASSERT_EQ(batch.inputs[0].sizes(), (std::vector<int64_t>{3, 10}));
  EXPECT_EQ(batch.inputs[0].scalar_type(), torch::kInt64);
  EXPECT_EQ(batch.inputs[0][1][0].item<int64_t>(), bytes[15]);
  EXPECT_TRUE(torch::equal(batch.inputs[0].slice(1, 1), batch.targets[0].slice(1, 0, 9)));
  EXPECT_EQ(batch.targets[0][2][9].item<int64_t>(), bytes[(windows.size() - 1) * 5 + 10]);
  EXPECT_THROW(windows.get_batch({windows.size()}), memento::InvalidArgument);
  expect_data_error([&] { memento::TokenWindows(std::vector<uint8_t>(10), 10, 1, "tiny.txt"); },
                    {"tiny.txt", "10 bytes", "11"});
}

TEST(DataTokenWindows, SplitKeepsValidationAsTheTail) {
  std::vector<uint8_t> bytes(1000);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i % 251);
  const auto split = memento::split_text(bytes, "text", 16, 0.2);
  EXPECT_EQ(split.train->byte_count() + split.validation->byte_count(), 1000);
  EXPECT_EQ(split.validation->byte_count(), 200);
  EXPECT_EQ(split.validation->get_batch({0}).inputs[0][0][0].item<int64_t>(), 800 % 251);
  expect_data_error([] { memento::split_text(std::vector<uint8_t>(30), "short.txt", 16); },
                    {"short.txt", "34"});
}

TEST(DataMaskedTokenWindows, MasksAboutFifteenPercentStaticallyAndLabelsOnlyThose) {
  std::vector<uint8_t> bytes(20000);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>('a' + i % 26);
  auto windows = std::make_shared<memento::TokenWindows>(bytes, 64, 64, "letters");
  const memento::MaskedTokenWindows masked(windows, /*seed=*/5);
  EXPECT_EQ(masked.size(), windows->size());
  std::vector<int64_t> all(static_cast<size_t>(masked.size()));
  for (int64_t i = 0; i < masked.size(); ++i) all[static_cast<size_t>(i)] = i;
  const memento::Batch batch = masked.get_batch(all);
  ASSERT_EQ(batch.inputs.size(), 3u);
  const torch::Tensor original = windows->get_batch(all).inputs[0];
  const torch::Tensor& tokens = batch.inputs[0];
  const torch::Tensor& labels = batch.targets[0];
  const torch::Tensor selected = labels.ne(-100);
  // Labels are the original bytes where selected; unselected positions are untouched.
  EXPECT_TRUE(torch::equal(labels.masked_select(selected), original.masked_select(selected)));
  EXPECT_TRUE(torch::equal(tokens.masked_select(selected.logical_not()),
                           original.masked_select(selected.logical_not())));
  const double fraction = selected.to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(fraction, 0.15, 0.02);
  const torch::Tensor replaced = tokens.masked_select(selected);
  const double as_mask =
      replaced.eq(memento::MaskedTokenWindows::kMaskToken).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(as_mask, 0.8, 0.05);
  EXPECT_LT(tokens.max().item<int64_t>(), memento::MaskedTokenWindows::kVocabularySize);
  EXPECT_TRUE(selected.any(1).all().item<bool>()) << "every window predicts a token";
  // Two segments, halves of the window; no padding.
  EXPECT_EQ(batch.inputs[1][0][31].item<int64_t>(), 0);
  EXPECT_EQ(batch.inputs[1][0][32].item<int64_t>(), 1);
  EXPECT_TRUE(batch.inputs[2].eq(1).all().item<bool>());
  // Static: the same window gets the same mask in any batch; another seed, another mask.
  EXPECT_TRUE(torch::equal(masked.get_batch({7}).inputs[0][0], tokens[7]));
  const memento::MaskedTokenWindows reseeded(windows, /*seed=*/6);
  EXPECT_FALSE(torch::equal(reseeded.get_batch(all).targets[0], labels));
  EXPECT_THROW(memento::MaskedTokenWindows(windows, 0, 0.0), memento::InvalidArgument);
  const auto split = memento::split_masked_text(bytes, "letters", 32, 0);
  EXPECT_EQ(split.validation->get_batch({0}).inputs.size(), 3u);
}

TEST(DataTextFile, ReadsBytesAndNamesBadFiles) {
  const std::string path = temp_path("text.txt");
  write_file(path, {'h', 'i', '\n', 0xFF});
  EXPECT_EQ(memento::read_text_file(path), (std::vector<uint8_t>{'h', 'i', '\n', 0xFF}));
  const std::string empty = temp_path("empty.txt");
  write_file(empty, {});
  expect_data_error([&] { memento::read_text_file(empty); }, {empty, "empty"});
  expect_data_error([&] { memento::read_text_file(path + ".missing"); }, {path + ".missing"});
  std::remove(path.c_str());
  std::remove(empty.c_str());
}

std::shared_ptr<memento::TokenWindows> numbered_windows(int64_t count) {
  std::vector<uint8_t> bytes(static_cast<size_t>(count + 1));
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i);
  return std::make_shared<memento::TokenWindows>(bytes, 1, 1, "numbers");
}

std::vector<int64_t> first_tokens(const memento::Batch& batch) {
  auto column = batch.inputs[0].select(1, 0).contiguous();
  return std::vector<int64_t>(column.data_ptr<int64_t>(), column.data_ptr<int64_t>() + column.numel());
}

TEST(DataLoaderOrder, EveryEpochIsAPermutationThatDependsOnSeedAndEpoch) {
  auto data = numbered_windows(40);
  memento::DataLoader loader(data, 8, 11);
  EXPECT_EQ(loader.batches_per_epoch(), 5);
  std::vector<std::vector<int64_t>> epochs(2);
  for (auto& epoch : epochs) {
    for (int b = 0; b < 5; ++b) {
      auto tokens = first_tokens(loader.next());
      epoch.insert(epoch.end(), tokens.begin(), tokens.end());
    }
    std::set<int64_t> distinct(epoch.begin(), epoch.end());
    EXPECT_EQ(distinct.size(), 40u);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  memento::DataLoader again(data, 8, 11);
  EXPECT_EQ(first_tokens(again.next()), std::vector<int64_t>(epochs[0].begin(), epochs[0].begin() + 8));
  memento::DataLoader other_seed(data, 8, 12);
  EXPECT_NE(first_tokens(other_seed.next()), std::vector<int64_t>(epochs[0].begin(), epochs[0].begin() + 8));
  memento::DataLoader in_order(data, 8, 11, /*shuffle=*/false);
  EXPECT_EQ(first_tokens(in_order.next()), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(DataLoaderOrder, SetPositionContinuesTheSameSequence) {
  auto data = numbered_windows(30);
  memento::DataLoader reference(data, 4, 5);
  std::vector<std::vector<int64_t>> sequence;
  memento::LoaderPosition saved;
  for (int step = 0; step < 20; ++step) {
    if (step == 9) saved = reference.position();
    sequence.push_back(first_tokens(reference.next()));
  }
  EXPECT_EQ(saved.epoch, 1);  // 7 batches per epoch: step 9 is batch 2 of epoch 1
  EXPECT_EQ(saved.index, 2);
  memento::DataLoader resumed(data, 4, 5);
  resumed.set_position(saved);
  for (int step = 9; step < 20; ++step) EXPECT_EQ(first_tokens(resumed.next()), sequence[step]) << step;
  EXPECT_THROW(resumed.set_position({0, 8}), memento::InvalidArgument);
  EXPECT_THROW(memento::DataLoader(data, 31, 0), memento::InvalidArgument);
}

// Two shards of batch 4 serve, step by step, the two halves of what one loader of batch 8
// serves, across epochs: a data-parallel run sees the data of one process.
TEST(DataLoaderOrder, ShardsSplitEachGlobalBatchInRankOrder) {
  auto data = numbered_windows(40);
  memento::DataLoader whole(data, 8, 11);
  memento::DataLoader first(data, 4, 11, true, {0, 2});
  memento::DataLoader second(data, 4, 11, true, {1, 2});
  EXPECT_EQ(first.batches_per_epoch(), whole.batches_per_epoch());
  for (int step = 0; step < 12; ++step) {
    std::vector<int64_t> joined = first_tokens(first.next());
    const auto rest = first_tokens(second.next());
    joined.insert(joined.end(), rest.begin(), rest.end());
    EXPECT_EQ(joined, first_tokens(whole.next())) << "step " << step;
  }
  EXPECT_THROW(memento::DataLoader(data, 4, 11, true, {2, 2}), memento::InvalidArgument);
  EXPECT_THROW(memento::DataLoader(data, 4, 11, true, {0, 0}), memento::InvalidArgument);
  EXPECT_THROW(memento::DataLoader(data, 21, 11, true, {0, 2}), memento::InvalidArgument);  // 42 > 40
}

TEST(DataLoaderOrder, EvaluationBatchesAreFixedAndSpread) {
  auto data = numbered_windows(100);
  const auto batches = memento::evaluation_batches(*data, 10, 3);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(first_tokens(batches[0])[0], 0);
  EXPECT_EQ(first_tokens(batches[1])[0], 30);
  EXPECT_EQ(first_tokens(batches[2])[0], 60);
  EXPECT_EQ(memento::evaluation_batches(*data, 10, 0).size(), 10u);
}

TEST(DataShapes, DeterministicBalancedAndScaled) {
  const auto options = memento::ShapesOptions().count(50).image_size(16).seed(2);
  const auto a = memento::generate_shapes(options);
  const auto b = memento::generate_shapes(options);
  EXPECT_TRUE(torch::equal(a.images(), b.images()));
  EXPECT_TRUE(torch::equal(a.labels(), b.labels()));
  EXPECT_EQ(a.num_classes(), 5);
  EXPECT_TRUE(torch::equal(torch::bincount(a.labels()), torch::full({5}, 10, torch::kInt64)));
  const auto batch = a.get_batch({0, 1, 2, 3});
  ASSERT_EQ(batch.inputs[0].sizes(), (std::vector<int64_t>{4, 3, 16, 16}));
  EXPECT_GE(batch.inputs[0].min().item<float>(), -1.0f);
  EXPECT_LE(batch.inputs[0].max().item<float>(), 1.0f);
  const auto grey = memento::generate_shapes(memento::ShapesOptions().count(5).channels(1).image_size(8));
  EXPECT_EQ(grey.images().size(1), 1);
  EXPECT_THROW(memento::generate_shapes(memento::ShapesOptions().channels(2)), memento::InvalidArgument);
}

TEST(DataShapes, ShapesDifferInArea) {
  // A ring covers less of its bounding circle than a disc: the class is visible in the pixels.
  const auto set = memento::generate_shapes(memento::ShapesOptions().count(200).image_size(32).channels(1));
  const auto bright = set.images().gt(125).to(torch::kFloat32).mean({1, 2, 3});
  const auto circle_area = bright.index({set.labels().eq(0)}).mean().item<double>();
  const auto ring_area = bright.index({set.labels().eq(4)}).mean().item<double>();
  EXPECT_GT(circle_area, ring_area * 1.3);
}

std::vector<uint8_t> cifar_records(int count) {
  std::vector<uint8_t> bytes;
  for (int r = 0; r < count; ++r) {
    bytes.push_back(static_cast<uint8_t>(r % 10));
    for (int p = 0; p < 3072; ++p) bytes.push_back(static_cast<uint8_t>((p + r) % 256));
  }
  return bytes;
}

TEST(DataCifar, ReadsRecordsChannelMajor) {
  const std::string first = temp_path("data_batch_1.bin"), second = temp_path("data_batch_2.bin");
  write_file(first, cifar_records(3));
  write_file(second, cifar_records(2));
  const auto set = memento::read_cifar10({first, second});
  ASSERT_EQ(set.size(), 5);
  EXPECT_EQ(set.labels()[2].item<int64_t>(), 2);
  EXPECT_EQ(set.labels()[4].item<int64_t>(), 1);
  // pixel p of record r is (p + r) % 256; channel 1 starts at p = 1024.
  EXPECT_EQ(set.images()[1][1][0][5].item<uint8_t>(), (1024 + 5 + 1) % 256);
  std::remove(first.c_str());
  std::remove(second.c_str());
}

TEST(DataCifar, TruncatedFileAndBadLabelNameFileAndOffset) {
  const std::string path = temp_path("data_batch_bad.bin");
  auto bytes = cifar_records(3);
  bytes.resize(bytes.size() - 10);
  write_file(path, bytes);
  expect_data_error([&] { memento::read_cifar10({path}); }, {path, "byte offset 6146", "truncated"});
  bytes = cifar_records(2);
  bytes[3073] = 12;
  write_file(path, bytes);
  expect_data_error([&] { memento::read_cifar10({path}); }, {path, "byte offset 3073", "label 12"});
  std::remove(path.c_str());
}

std::vector<uint8_t> idx(uint32_t magic, const std::vector<uint32_t>& dims,
                         const std::vector<uint8_t>& body) {
  std::vector<uint8_t> bytes;
  auto put = [&](uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(value >> shift));
  };
  put(magic);
  for (auto dim : dims) put(dim);
  bytes.insert(bytes.end(), body.begin(), body.end());
  return bytes;
}

TEST(DataMnist, ReadsIdxPairs) {
  const std::string images = temp_path("images-idx3-ubyte"), labels = temp_path("labels-idx1-ubyte");
  std::vector<uint8_t> pixels(2 * 3 * 4);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 10);
  write_file(images, idx(0x803, {2, 3, 4}, pixels));
  write_file(labels, idx(0x801, {2}, {7, 3}));
  const auto set = memento::read_mnist(images, labels);
  ASSERT_EQ(set.images().sizes(), (std::vector<int64_t>{2, 1, 3, 4}));
  EXPECT_EQ(set.images()[1][0][2][3].item<uint8_t>(), 230);
  EXPECT_EQ(set.labels()[0].item<int64_t>(), 7);
  EXPECT_EQ(set.labels()[1].item<int64_t>(), 3);
  std::remove(images.c_str());
  std::remove(labels.c_str());
}

TEST(DataMnist, BadFilesNameFileAndOffset) {
  const std::string images = temp_path("bad-images-idx3-ubyte"), labels = temp_path("bad-labels-idx1-ubyte");
  write_file(labels, idx(0x801, {2}, {1, 2}));
  write_file(images, idx(0x801, {2, 3, 4}, std::vector<uint8_t>(24)));
  expect_data_error([&] { memento::read_mnist(images, labels); },
                    {images, "magic", "0x00000801", "byte offset 0"});
  write_file(images, idx(0x803, {2, 3, 4}, std::vector<uint8_t>(20)));
  expect_data_error([&] { memento::read_mnist(images, labels); },
                    {images, "truncated", "byte offset 36", "40"});
  write_file(images, {0, 0, 8});
  expect_data_error([&] { memento::read_mnist(images, labels); }, {images, "header", "byte offset 3"});
  write_file(images, idx(0x803, {3, 3, 4}, std::vector<uint8_t>(36)));
  expect_data_error([&] { memento::read_mnist(images, labels); }, {images, labels, "3 images", "2 labels"});
  write_file(images, idx(0x803, {2, 3, 4}, std::vector<uint8_t>(24)));
  write_file(labels, idx(0x801, {2}, {1, 10}));
  expect_data_error([&] { memento::read_mnist(images, labels); }, {labels, "byte offset 9", "label 10"});
  std::remove(images.c_str());
  std::remove(labels.c_str());
}

std::vector<uint8_t> gzipped(const std::vector<uint8_t>& bytes) {
  z_stream stream{};
  // 16 + MAX_WBITS: a gzip header, as Debian's dataset files have.
  EXPECT_EQ(deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::vector<uint8_t> out(deflateBound(&stream, static_cast<uLong>(bytes.size())) + 32);
  stream.next_in = const_cast<Bytef*>(bytes.data());
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

// Debian's dataset-fashion-mnist layout: SPLIT-{images-idx3,labels-idx1}-ubyte.gz in one directory.
TEST(DataMnist, ReadsAGzippedDirectoryAndFitsItToThreeChannels) {
  const std::string dir = temp_path("fashion");
  ::mkdir(dir.c_str(), 0700);
  std::vector<uint8_t> pixels(2 * 4 * 4);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i + 1);
  write_file(dir + "/t10k-images-idx3-ubyte.gz", gzipped(idx(0x803, {2, 4, 4}, pixels)));
  write_file(dir + "/t10k-labels-idx1-ubyte.gz", gzipped(idx(0x801, {2}, {4, 9})));
  const memento::ImageSet set = memento::read_mnist_dir(dir, "t10k");
  ASSERT_EQ(set.images().sizes(), (std::vector<int64_t>{2, 1, 4, 4}));
  EXPECT_EQ(set.images()[1][0][3][3].item<uint8_t>(), 32);
  EXPECT_EQ(set.labels()[1].item<int64_t>(), 9);
  EXPECT_NE(set.source().find("t10k-images-idx3-ubyte.gz"), std::string::npos) << set.source();

  // Padded by one pixel a side, the one channel repeated.
  const memento::ImageSet padded = memento::fit_images(set, 3, 6);
  ASSERT_EQ(padded.images().sizes(), (std::vector<int64_t>{2, 3, 6, 6}));
  EXPECT_EQ(padded.images()[0][2][0][0].item<uint8_t>(), 0);
  EXPECT_EQ(padded.images()[0][2][1][1].item<uint8_t>(), 1);
  EXPECT_EQ(padded.images()[1][0][4][4].item<uint8_t>(), 32);
  EXPECT_TRUE(padded.labels().equal(set.labels()));
  // Cropped to the centre 2x2.
  const memento::ImageSet cropped = memento::fit_images(set, 1, 2);
  ASSERT_EQ(cropped.images().sizes(), (std::vector<int64_t>{2, 1, 2, 2}));
  EXPECT_EQ(cropped.images()[0][0][0][0].item<uint8_t>(), 6);
  EXPECT_THROW(memento::fit_images(padded, 1, 6), memento::InvalidArgument);

  expect_data_error([&] { memento::read_mnist_dir(dir, "train"); }, {"train-images-idx3-ubyte", dir});
  EXPECT_THROW(memento::read_mnist_dir(dir, "test"), memento::InvalidArgument);
  const std::string labels_gz = dir + "/t10k-labels-idx1-ubyte.gz";
  std::vector<uint8_t> truncated = gzipped(idx(0x801, {2}, {4, 9}));
  truncated.resize(truncated.size() / 2);
  write_file(labels_gz, truncated);
  expect_data_error([&] { memento::read_mnist_dir(dir, "t10k"); }, {labels_gz, "truncated gzip"});
  write_file(labels_gz, idx(0x801, {2}, {4, 9}));
  expect_data_error([&] { memento::read_mnist_dir(dir, "t10k"); }, {labels_gz, "not a valid gzip"});
  for (const char* name : {"/t10k-images-idx3-ubyte.gz", "/t10k-labels-idx1-ubyte.gz"})
    std::remove((dir + name).c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
