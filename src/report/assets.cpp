#include "report/assets.h"

namespace memento::report_detail {

std::string asset_text(const EmbeddedAsset& asset) {
  std::string text;
  text.reserve(asset.size_bytes);
  // Every chunk but the last holds exactly kChunkBytes (embed_assets.cmake splits the file
  // that way); sizes come from the table, so a NUL byte in a file could not truncate it.
  constexpr size_t kChunkBytes = 16000;
  for (size_t chunk = 0; chunk < asset.chunk_count; ++chunk) {
    const size_t begin = chunk * kChunkBytes;
    const size_t length = chunk + 1 < asset.chunk_count ? kChunkBytes : asset.size_bytes - begin;
    text.append(asset.chunks[chunk], length);
  }
  return text;
}

}  // namespace memento::report_detail
