#pragma once
// The chart libraries embedded into the binary at build time (src/report/embed_assets.cmake
// writes their definition from web/node_modules). Internal to the report library.

#include <cstddef>
#include <string>

namespace memento::report_detail {

/// One bundled JavaScript file, stored as consecutive chunks (each a string literal).
struct EmbeddedAsset {
  const char* package;        ///< npm package, e.g. "vega-lite"
  const char* version;        ///< its version from package.json, e.g. "6.5.0"
  const char* file;           ///< path inside the package, e.g. "build/vega-lite.min.js"
  const char* const* chunks;  ///< the file's bytes, split into chunks
  size_t chunk_count;
  size_t size_bytes;  ///< total bytes over all chunks
};

/// Vega, Vega-Lite, vega-embed, in the order a page must load them.
extern const EmbeddedAsset kEmbeddedAssets[];
extern const size_t kEmbeddedAssetCount;

/// The whole file of `asset` (chunks joined).
std::string asset_text(const EmbeddedAsset& asset);

}  // namespace memento::report_detail
