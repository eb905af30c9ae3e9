#pragma once
/// \file
/// One way to write every output file (profiles, plans, timelines, bench results,
/// reports, training checkpoints): the bytes go to a temporary file next to the target,
/// are flushed to disk (fsync), and only then renamed over it, and the directory entry is
/// synced too. A reader never sees half a file; a failure or a kill at any moment leaves
/// the previous file as it was. The temporary is `.<name>.memento-tmp` in the target's
/// directory: one fixed name per target, removed on any failure, and cleared by the next
/// check_output_path() when a killed run left it behind.
///
/// Example:
/// \code
///   memento::check_output_path("runs/p.json");           // before any work: directory exists, writable
///   ...
///   memento::write_file_atomically("runs/p.json", text);  // IoError naming the file on failure
/// \endcode

#include <string>

namespace memento {

/// The temporary `write_file_atomically(path, ...)` writes first: `.<name>.memento-tmp`
/// beside `path`.
std::string temporary_path_for(const std::string& path);

/// Checks, before any work starts, that `path` can be written: not empty, not a
/// directory, its directory exists and accepts a new file (tried by creating and removing
/// the temporary). A stale temporary of the same target (left by a killed run) is removed.
/// Throws IoError saying what is wrong with the path.
void check_output_path(const std::string& path);

/// Writes `contents` to `path` atomically (see the file comment). Throws IoError naming
/// `path` and the system's reason; the temporary is removed and an earlier `path` is
/// left untouched.
void write_file_atomically(const std::string& path, const std::string& contents);

}  // namespace memento
