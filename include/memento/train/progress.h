#pragma once
/// \file
/// Progress of a training run: a bar redrawn in place on a terminal, or plain lines every
/// few steps when the output is a file or a pipe (logs stay readable). A reporter: it
/// writes only to the stream it is given.
///
/// Example:
/// \code
///   memento::ProgressBar progress(std::cout, /*total_steps=*/300, memento::stream_is_terminal(stdout),
///   "tok"); for (...) {
///     memento::TrainStep step = trainer.train_step();
///     progress.update(step);                 // "step 120/300 [=====>   ] loss 1.234 | 41.2k tok/s | ..."
///     progress.message("eval: val loss 1.5"); // a line of its own, the bar is redrawn below it
///   }
///   progress.finish();
/// \endcode

#include <cstdint>
#include <cstdio>
#include <iosfwd>
#include <string>

#include "memento/train/trainer.h"

namespace memento {

/// True when `stream` is a terminal (isatty), so a bar can be redrawn in place.
bool stream_is_terminal(std::FILE* stream);

/// What one progress line shows.
struct ProgressState {
  int64_t step = 0;  ///< steps done
  int64_t total_steps = 0;
  double loss = 0;         ///< smoothed training loss
  double items_per_s = 0;  ///< smoothed throughput
  std::string item_unit;   ///< "tok", "img"
  int64_t peak_bytes = 0;  ///< largest step peak so far
  double eta_s = 0;        ///< estimated seconds left
};

/// One progress line: `step 120/300 [=========>          ] loss 1.2345 | 41.2k tok/s |
/// peak 45.60 MiB | ETA 1m12s`; without the bar when bar_width is 0.
std::string format_progress(const ProgressState& state, int bar_width);

/// "45s", "1m12s", "2h03m".
std::string format_eta(double seconds);

/// Shows a run's progress on `out`.
class ProgressBar {
 public:
  /// `interactive`: redraw one line in place (terminal); otherwise print a plain line every
  /// `plain_every` steps (0: about every 10% of the run) and at the last step.
  ProgressBar(std::ostream& out, int64_t total_steps, bool interactive, std::string item_unit,
              int64_t plain_every = 0);

  /// Records a finished step (loss and throughput are smoothed over recent steps).
  void update(const TrainStep& step);
  /// Prints `text` on a line of its own (above the bar when interactive).
  void message(const std::string& text);
  /// Ends the bar's line (interactive mode); idempotent.
  void finish();

  const ProgressState& state() const { return state_; }

 private:
  void draw();

  std::ostream& out_;
  bool interactive_;
  int64_t plain_every_;
  ProgressState state_;
  double smoothed_step_s_ = 0;
  bool drawn_ = false;
  int64_t updates_ = 0;
};

}  // namespace memento
