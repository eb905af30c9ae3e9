#include "exhaustive.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <queue>
#include <stdexcept>
#include <unordered_map>

#include "memento/core/simulate.h"

namespace memento {
namespace testing {

namespace {

// Schedules of the segment a..b, where stage `length` is the loss; mirrors the planner's
// recursion but enumerates instead of minimizing.
// With codecs, every stage may also run lossy: Fq(a) then the rest, or Fq(a) X(a+1) B(a)
// as a leaf.
std::vector<Schedule> enumerate(int a, int b, int length, const std::vector<Codec>& codecs = {}) {
  std::vector<Schedule> out;
  if (a < length) {
    for (Codec codec : codecs) {
      if (a == b) {
        out.push_back({Op::forward_lossy(a, codec), Op::free(a + 1), Op::backward(a)});
        continue;
      }
      for (const Schedule& rest : enumerate(a + 1, b, length, codecs)) {
        Schedule s = {Op::forward_lossy(a, codec)};
        s.insert(s.end(), rest.begin(), rest.end());
        if (a + 1 == length) s.push_back(Op::free(length));
        s.push_back(Op::backward(a));
        out.push_back(std::move(s));
      }
    }
  }
  if (a == b) {
    if (a == length) {
      out.push_back({Op::loss()});
    } else {
      out.push_back({Op::forward_with_graph(a), Op::backward(a)});
    }
    return out;
  }
  for (const Schedule& rest : enumerate(a + 1, b, length, codecs)) {
    Schedule s = {Op::forward_with_graph(a)};
    s.insert(s.end(), rest.begin(), rest.end());
    s.push_back(Op::backward(a));
    out.push_back(std::move(s));
  }
  for (int j = a + 1; j <= b; ++j) {
    const std::vector<Schedule> right = enumerate(j, b, length, codecs);
    const std::vector<Schedule> left = enumerate(a, j - 1, length, codecs);
    for (const Schedule& r : right) {
      for (const Schedule& l : left) {
        Schedule s = {Op::forward_checkpoint(a)};
        for (int k = a + 1; k < j; ++k) s.push_back(Op::forward_no_grad(k));
        s.insert(s.end(), r.begin(), r.end());
        if (j == length) s.push_back(Op::free(length));
        s.insert(s.end(), l.begin(), l.end());
        out.push_back(std::move(s));
      }
    }
  }
  return out;
}

// The simulator's state packed in bits: stored a_1..a_L, graphs 0..L-1, gradients
// d_1..d_L, and whether Backward(0) ran. Transitions follow schedule.h exactly.
class StateCodec {
 public:
  explicit StateCodec(const ChainProfile& profile) : profile_(profile), length_(profile.length()) {}

  bool stored(uint64_t s, int i) const { return (s >> (i - 1)) & 1u; }                  // 1..L
  bool graph(uint64_t s, int i) const { return (s >> (length_ + i)) & 1u; }             // 0..L-1
  bool gradient(uint64_t s, int i) const { return (s >> (2 * length_ + i - 1)) & 1u; }  // 1..L
  bool done(uint64_t s) const { return (s >> (3 * length_)) & 1u; }
  uint64_t set_stored(uint64_t s, int i, bool v) const { return put(s, i - 1, v); }
  uint64_t set_graph(uint64_t s, int i, bool v) const { return put(s, length_ + i, v); }
  uint64_t set_gradient(uint64_t s, int i, bool v) const { return put(s, 2 * length_ + i - 1, v); }
  uint64_t set_done(uint64_t s) const { return put(s, 3 * length_, true); }

  bool available(uint64_t s, int i) const { return i == 0 || stored(s, i) || graph(s, i - 1); }

  int64_t live_bytes(uint64_t s) const {
    int64_t bytes = profile_.fixed_bytes;
    for (int i = 1; i <= length_; ++i) {
      if (stored(s, i) && !graph(s, i - 1)) bytes += profile_.activation_bytes(i);
      if (gradient(s, i)) bytes += profile_.activation_bytes(i);
    }
    for (int i = 0; i < length_; ++i) {
      if (!graph(s, i)) continue;
      // The last stage's graph drops its outputs once the Loss has made d_L.
      const bool dropped = i == length_ - 1 && gradient(s, length_);
      bytes += dropped ? profile_.last_graph_after_loss_bytes() : profile_.stages[i].saved_bytes;
    }
    return bytes;
  }

  // Applies op to s; false when the op's requirements do not hold.
  bool apply(uint64_t s, const Op& op, uint64_t& next, int64_t& peak, double& time_s) const {
    const int i = op.stage;
    const int64_t before = live_bytes(s);
    next = s;
    time_s = 0;
    switch (op.kind) {
      case OpKind::ForwardNoGrad:
      case OpKind::ForwardCheckpoint: {
        if (!available(s, i) || available(s, i + 1)) return false;
        const StageProfile& stage = profile_.stages[i];
        peak = before + stage.output_bytes + stage.no_grad_temp_bytes();
        time_s = stage.forward_s;
        next = set_stored(next, i + 1, true);
        if (op.kind == OpKind::ForwardNoGrad && i > 0) next = set_stored(next, i, false);
        return true;
      }
      case OpKind::ForwardWithGraph: {
        if (!available(s, i) || graph(s, i)) return false;
        const StageProfile& stage = profile_.stages[i];
        peak = before + stage.saved_bytes + stage.forward_temp_bytes;
        time_s = stage.forward_s;
        next = set_graph(next, i, true);
        next = set_stored(next, i + 1, false);
        return true;
      }
      case OpKind::Loss: {
        if (!available(s, length_) || gradient(s, length_)) return false;
        peak = before + profile_.activation_bytes(length_) + profile_.loss_temp_bytes +
               (stored(s, length_) ? profile_.stages.back().output_droppable_bytes : 0);
        next = set_gradient(next, length_, true);
        return true;
      }
      case OpKind::Backward: {
        if (!graph(s, i) || !gradient(s, i + 1) || !available(s, i)) return false;
        const StageProfile& stage = profile_.stages[i];
        peak = before + stage.backward_peak_extra_bytes(i > 0);
        time_s = stage.backward_s;
        next = set_graph(next, i, false);
        next = set_gradient(next, i + 1, false);
        if (i > 0) {
          next = set_stored(next, i, false);
          next = set_gradient(next, i, true);
        } else {
          next = set_done(next);
        }
        return true;
      }
      case OpKind::ForwardLossy:
      case OpKind::ForwardFrozen:
        return false;  // the oracle's state has no lossy graphs or frozen stages: it checks exact plans
      case OpKind::Free: {
        if (!stored(s, i) || (i < length_ && graph(s, i))) return false;
        peak = before;
        next = set_stored(next, i, false);
        return true;
      }
    }
    return false;
  }

  // Complete: Backward(0) ran and nothing but a_0 is alive.
  bool complete(uint64_t s) const { return s == set_done(0); }

 private:
  static uint64_t put(uint64_t s, int bit, bool v) {
    return v ? (s | (uint64_t{1} << bit)) : (s & ~(uint64_t{1} << bit));
  }
  const ChainProfile& profile_;
  int length_;
};

}  // namespace

std::vector<Schedule> enumerate_persistent_schedules(int length, const std::vector<Codec>& codecs) {
  return enumerate(0, length, length, codecs);
}

SearchResult best_persistent(const ChainProfile& profile, int64_t budget_bytes,
                             const std::vector<Codec>& codecs) {
  SearchResult best;
  for (Schedule& schedule : enumerate_persistent_schedules(profile.length(), codecs)) {
    const SimulationResult result = simulate(profile, schedule);
    if (result.peak_bytes > budget_bytes) continue;
    if (!best.feasible || result.time_s < best.time_s ||
        (result.time_s == best.time_s && result.peak_bytes < best.peak_bytes)) {
      best.feasible = true;
      best.time_s = result.time_s;
      best.peak_bytes = result.peak_bytes;
      best.schedule = std::move(schedule);
    }
  }
  return best;
}

int64_t min_persistent_peak(const ChainProfile& profile) {
  int64_t best = std::numeric_limits<int64_t>::max();
  for (const Schedule& schedule : enumerate_persistent_schedules(profile.length())) {
    best = std::min(best, simulate(profile, schedule).peak_bytes);
  }
  return best;
}

SearchResult best_unrestricted(const ChainProfile& profile, int64_t budget_bytes) {
  const int length = profile.length();
  if (length > 8) throw std::invalid_argument("best_unrestricted: at most 8 stages");
  SearchResult best;
  if (profile.fixed_bytes > budget_bytes) return best;
  const StateCodec codec(profile);
  std::vector<Op> ops;
  for (int i = 0; i < length; ++i) {
    ops.push_back(Op::forward_no_grad(i));
    ops.push_back(Op::forward_checkpoint(i));
    ops.push_back(Op::forward_with_graph(i));
    ops.push_back(Op::backward(i));
  }
  ops.push_back(Op::loss());
  for (int i = 1; i <= length; ++i) ops.push_back(Op::free(i));

  struct Visit {
    double time_s;
    uint64_t previous;
    Op op;
    int64_t peak_bytes;
  };
  std::unordered_map<uint64_t, Visit> visits;
  using Entry = std::pair<double, uint64_t>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
  visits[0] = {0.0, 0, Op::loss(), profile.fixed_bytes};
  queue.push({0.0, 0});
  std::unordered_map<uint64_t, bool> settled;
  while (!queue.empty()) {
    const auto [time_s, state] = queue.top();
    queue.pop();
    if (settled[state]) continue;
    settled[state] = true;
    if (codec.complete(state)) {
      best.feasible = true;
      best.time_s = time_s;
      // The start state 0 keeps time 0, so it is never re-entered and ends the walk.
      for (uint64_t s = state; s != 0;) {
        best.schedule.push_back(visits[s].op);
        s = visits[s].previous;
      }
      std::reverse(best.schedule.begin(), best.schedule.end());
      best.peak_bytes = simulate(profile, best.schedule).peak_bytes;
      return best;
    }
    for (const Op& op : ops) {
      uint64_t next = 0;
      int64_t peak = 0;
      double op_s = 0;
      if (!codec.apply(state, op, next, peak, op_s) || peak > budget_bytes) continue;
      const double reached_s = time_s + op_s;
      auto found = visits.find(next);
      if (found == visits.end() || reached_s < found->second.time_s) {
        visits[next] = {reached_s, state, op, peak};
        queue.push({reached_s, next});
      }
    }
  }
  return best;
}

}  // namespace testing
}  // namespace memento
