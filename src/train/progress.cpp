#include "memento/train/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ostream>

#include "memento/core/budget.h"

namespace memento {

namespace {

// Exponential smoothing: the first steps (allocator warm-up, cold caches) fade quickly
// without making the numbers jump from step to step.
constexpr double kSmoothing = 0.1;

std::string format_rate(double per_s, const std::string& unit) {
  char buffer[48];
  if (per_s >= 1e6)
    std::snprintf(buffer, sizeof buffer, "%.2fM %s/s", per_s / 1e6, unit.c_str());
  else if (per_s >= 1e3)
    std::snprintf(buffer, sizeof buffer, "%.1fk %s/s", per_s / 1e3, unit.c_str());
  else
    std::snprintf(buffer, sizeof buffer, "%.1f %s/s", per_s, unit.c_str());
  return buffer;
}

}  // namespace

bool stream_is_terminal(std::FILE* stream) {
  return stream != nullptr && ::isatty(::fileno(stream)) == 1;
}

std::string format_eta(double seconds) {
  const auto total = static_cast<int64_t>(std::llround(std::max(0.0, seconds)));
  char buffer[32];
  if (total < 60)
    std::snprintf(buffer, sizeof buffer, "%llds", static_cast<long long>(total));
  else if (total < 3600)
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", static_cast<long long>(total / 60),
                  static_cast<long long>(total % 60));
  else
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", static_cast<long long>(total / 3600),
                  static_cast<long long>(total % 3600 / 60));
  return buffer;
}

std::string format_progress(const ProgressState& state, int bar_width) {
  const std::string total = std::to_string(state.total_steps);
  std::string step = std::to_string(state.step);
  step = std::string(total.size() > step.size() ? total.size() - step.size() : 0, ' ') + step;
  std::string line = "step " + step + "/" + total;
  if (bar_width > 0) {
    const double fraction =
        state.total_steps > 0
            ? std::clamp(static_cast<double>(state.step) / static_cast<double>(state.total_steps), 0.0, 1.0)
            : 0.0;
    const auto filled = static_cast<int>(fraction * bar_width);
    std::string bar(static_cast<size_t>(bar_width), ' ');
    std::fill(bar.begin(), bar.begin() + filled, '=');
    if (filled < bar_width && filled > 0) bar[static_cast<size_t>(filled)] = '>';
    line += " [" + bar + "]";
  }
  char loss[32];
  std::snprintf(loss, sizeof loss, "%.4f", state.loss);
  line += std::string(" loss ") + loss + " | " + format_rate(state.items_per_s, state.item_unit) +
          " | peak " + format_bytes(state.peak_bytes) + " | ETA " + format_eta(state.eta_s);
  return line;
}

ProgressBar::ProgressBar(std::ostream& out, int64_t total_steps, bool interactive, std::string item_unit,
                         int64_t plain_every)
    : out_(out), interactive_(interactive) {
  state_.total_steps = total_steps;
  state_.item_unit = std::move(item_unit);
  plain_every_ = plain_every > 0 ? plain_every : std::max<int64_t>(1, total_steps / 10);
}

void ProgressBar::update(const TrainStep& step) {
  const double items_per_s = step.step_s > 0 ? static_cast<double>(step.items) / step.step_s : 0.0;
  if (updates_ == 0) {
    state_.loss = step.loss;
    state_.items_per_s = items_per_s;
    smoothed_step_s_ = step.step_s;
  } else {
    state_.loss += kSmoothing * (step.loss - state_.loss);
    state_.items_per_s += kSmoothing * (items_per_s - state_.items_per_s);
    smoothed_step_s_ += kSmoothing * (step.step_s - smoothed_step_s_);
  }
  ++updates_;
  state_.step = step.step;
  state_.peak_bytes = std::max(state_.peak_bytes, step.peak_bytes);
  state_.eta_s = smoothed_step_s_ * static_cast<double>(std::max<int64_t>(0, state_.total_steps - step.step));
  if (interactive_) {
    draw();
  } else if (step.step % plain_every_ == 0 || step.step == state_.total_steps || updates_ == 1) {
    out_ << format_progress(state_, 0) << "\n" << std::flush;
  }
}

void ProgressBar::draw() {
  // \r returns to the line start and ESC[K clears what a longer previous line left behind.
  out_ << "\r" << format_progress(state_, 24) << "\x1b[K" << std::flush;
  drawn_ = true;
}

void ProgressBar::message(const std::string& text) {
  if (interactive_ && drawn_) {
    out_ << "\r\x1b[K" << text << "\n";
    draw();
  } else {
    out_ << text << "\n" << std::flush;
  }
}

void ProgressBar::finish() {
  if (interactive_ && drawn_) out_ << "\n" << std::flush;
  drawn_ = false;
}

}  // namespace memento
