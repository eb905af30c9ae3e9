#include "optimal_dp.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "memento/core/error.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

namespace memento {
namespace optimal_dp {

namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Widening multiply for the slot rounding: size * slots can exceed 2^63 for very large
// byte counts. __extension__ keeps -Wpedantic quiet about the GCC/Clang builtin type.
__extension__ typedef __int128 Int128;

// Cells (a, b), 0 <= a <= b <= L, packed as a lower triangle.
inline int64_t cell_index(int a, int b) {
  return static_cast<int64_t>(b) * (b + 1) / 2 + a;
}
inline int64_t cell_count(int stages) {
  return static_cast<int64_t>(stages) * (stages + 1) / 2;
}

// The peaks every option must respect, in units above the caller's bytes. Each mirrors
// one op's peak in simulate(): an op's peak is the live bytes before it plus its result
// and temporaries. `d(i)` is the gradient d_i (none for i == 0 or i == L + 1).
class Costs {
 public:
  explicit Costs(const DiscreteChain& chain) : chain_(chain), length_(chain.length) {}

  int length() const { return length_; }
  int64_t x(int i) const { return chain_.activation[i]; }
  int64_t d(int i) const { return i >= 1 && i <= length_ ? chain_.activation[i] : 0; }
  int64_t saved(int i) const { return chain_.saved[i]; }
  double forward_s(int i) const { return i < length_ ? chain_.forward_s[i] : 0.0; }
  double forward_backward_s(int i) const {
    return i < length_ ? chain_.forward_s[i] + chain_.backward_s[i] : 0.0;
  }

  // Graph a during B(a): the last stage's graph has dropped its outputs by then (the Loss
  // ran before any B(L-1)).
  int64_t backward_graph(int a) const { return a == length_ - 1 ? chain_.last_graph_after_loss : saved(a); }
  // Leaf: Fg(a) then B(a) with d_{a+1} alive; for the loss stage, Loss creates d_L.
  int64_t leaf_peak(int a) const {
    if (a == length_) return x(length_) + chain_.loss_temp;
    return d(a + 1) +
           std::max(saved(a) + chain_.forward_temp[a], backward_graph(a) + chain_.backward_extra[a]);
  }
  // Fg(a) while d_{b+1} is alive.
  int64_t graph_forward_peak(int a, int b) const { return d(b + 1) + saved(a) + chain_.forward_temp[a]; }
  // B(a) once the rest is done: graph a, d_{a+1} and the new d_a.
  int64_t graph_backward_peak(int a) const { return backward_graph(a) + d(a + 1) + chain_.backward_extra[a]; }
  // What a checkpoint at j holds while solve(j, b) runs: a_j. Loss on a stored a_L peaks
  // higher by the outputs a graph would have dropped (simulate()), charged here.
  int64_t checkpoint_hold(int j) const { return x(j) + (j == length_ ? chain_.output_droppable : 0); }
  // The forward op that ends the chain of a checkpoint at j (j > a): Fc(a) for j == a + 1,
  // Fn(j - 1) otherwise, each while d_{b+1} is alive. a_a belongs to the caller.
  int64_t checkpoint_step_peak(int a, int j, int b) const {
    if (j == a + 1) return d(b + 1) + x(a + 1) + chain_.no_grad_temp[a];
    return d(b + 1) + x(j - 1) + x(j) + chain_.no_grad_temp[j - 1];
  }

 private:
  const DiscreteChain& chain_;
  int length_;
};

// A one-stage sub-chain: Fg(a) B(a), or the Loss for a == L.
void emit_leaf(int length, int a, Schedule& out) {
  if (a == length) {
    out.push_back(Op::loss());
  } else {
    out.push_back(Op::forward_with_graph(a));
    out.push_back(Op::backward(a));
  }
}

// Turns the option chosen at every visited (a, b, m) into ops. `choose(a, b, m)` returns a
// for "graph first" and j in (a, b] for "checkpoint at j"; leaves need no choice.
template <class Choose>
void emit(const Costs& costs, int a, int b, int64_t m, const Choose& choose, Schedule& out) {
  const int length = costs.length();
  if (a == b) {
    emit_leaf(length, a, out);
    return;
  }
  const int j = choose(a, b, m);
  if (j == a) {
    out.push_back(Op::forward_with_graph(a));
    emit(costs, a + 1, b, m - costs.saved(a), choose, out);
    out.push_back(Op::backward(a));
    return;
  }
  out.push_back(Op::forward_checkpoint(a));
  for (int k = a + 1; k < j; ++k) out.push_back(Op::forward_no_grad(k));
  emit(costs, j, b, m - costs.checkpoint_hold(j), choose, out);
  // Loss leaves a_L stored (Backward(j) would have freed a_j for j < L).
  if (j == length) out.push_back(Op::free(length));
  emit(costs, a, j - 1, m, choose, out);
}

int64_t round_up_units(int64_t bytes, int64_t memory_bytes, int slots) {
  if (bytes <= 0) return 0;
  if (memory_bytes <= 0) return static_cast<int64_t>(slots) + 1;
  const Int128 scaled = static_cast<Int128>(bytes) * slots;
  const Int128 units = (scaled + memory_bytes - 1) / memory_bytes;
  return units > slots ? static_cast<int64_t>(slots) + 1 : static_cast<int64_t>(units);
}

DiscreteChain convert(const ChainProfile& profile, int64_t capacity, int64_t (*units)(int64_t, int64_t, int),
                      int64_t memory_bytes, int slots, const std::vector<Codec>& codecs) {
  DiscreteChain chain;
  const int length = profile.length();
  chain.length = length;
  chain.capacity = capacity;
  chain.activation.resize(length + 1);
  for (int i = 0; i <= length; ++i)
    chain.activation[i] = units(profile.activation_bytes(i), memory_bytes, slots);
  for (const StageProfile& stage : profile.stages) {
    chain.saved.push_back(units(stage.saved_bytes, memory_bytes, slots));
    chain.forward_temp.push_back(units(stage.forward_temp_bytes, memory_bytes, slots));
    chain.no_grad_temp.push_back(units(stage.no_grad_temp_bytes(), memory_bytes, slots));
    const bool has_input_gradient = chain.backward_extra.size() > 0;  // stage 0 produces no d_0
    chain.backward_extra.push_back(
        units(stage.backward_peak_extra_bytes(has_input_gradient), memory_bytes, slots));
    chain.forward_s.push_back(stage.forward_s);
    chain.backward_s.push_back(stage.backward_s);
  }
  chain.loss_temp = units(profile.loss_temp_bytes, memory_bytes, slots);
  chain.last_graph_after_loss = units(profile.last_graph_after_loss_bytes(), memory_bytes, slots);
  chain.output_droppable = units(profile.stages.back().output_droppable_bytes, memory_bytes, slots);
  for (Codec codec : codecs) {
    DiscreteChain::Lossy lossy;
    lossy.codec = codec;
    for (int i = 0; i < length; ++i) {
      const StageProfile& stage = profile.stages[i];
      const StageProfile::LossyCost* cost = stage.lossy_cost(codec);
      if (cost == nullptr) {
        throw InvalidArgument("stage " + std::to_string(i) + " (" + quoted(stage.name) +
                              ") has no costs for codec " + codec_name(codec) + "; profile with codecs " +
                              codec_name(codec) + " (memento profile --codecs)");
      }
      lossy.saved.push_back(units(cost->saved_bytes, memory_bytes, slots));
      lossy.forward_temp.push_back(units(cost->forward_temp_bytes, memory_bytes, slots));
      const int64_t backward_bytes = (i > 0 ? stage.input_bytes : 0) + cost->backward_temp_bytes;
      lossy.backward_extra.push_back(units(std::max<int64_t>(backward_bytes, 0), memory_bytes, slots));
      lossy.forward_s.push_back(stage.forward_s + cost->pack_s);
      lossy.backward_s.push_back(stage.backward_s + cost->unpack_s);
    }
    chain.lossy.push_back(std::move(lossy));
  }
  return chain;
}

void check_chain(const DiscreteChain& chain, const char* solver, bool tabulates_capacity) {
  if (chain.length < 1) {
    throw InvalidArgument(std::string(solver) + ": the chain has no stages; profile at least one stage");
  }
  if (tabulates_capacity && chain.capacity > std::numeric_limits<int32_t>::max() - 2) {
    throw InvalidArgument(std::string(solver) + ": " + std::to_string(chain.capacity) +
                          " memory units is too many for the table; use fewer memory slots");
  }
}

// ---- min-peak DP ---------------------------------------------------------------------

struct MinPeakTable {
  std::vector<int64_t> peak;
  std::vector<double> time_s;
  std::vector<int32_t> choice;
};

// Every thread waits until all `count` threads have arrived; reusable.
class SpinBarrier {
 public:
  explicit SpinBarrier(int count) : count_(count) {}
  void arrive_and_wait() {
    const int generation = generation_.load(std::memory_order_acquire);
    if (waiting_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_) {
      waiting_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    while (generation_.load(std::memory_order_acquire) == generation) std::this_thread::yield();
  }

 private:
  const int count_;
  std::atomic<int> waiting_{0};
  std::atomic<int> generation_{0};
};

// By spans (diagonals): the cells of one span read only shorter spans, so `threads`
// threads share each span (every threads-th cell) and meet at a barrier before the next.
MinPeakTable min_peak_table(const Costs& costs, int threads = 1) {
  const int stages = costs.length() + 1;
  MinPeakTable table;
  table.peak.resize(cell_count(stages));
  table.time_s.resize(cell_count(stages));
  table.choice.resize(cell_count(stages));
  // The same peaks and times by rows (a, a..L): the split points read a cell's left
  // sub-cells (a, j - 1) along its row, which the packed columns scatter.
  std::vector<int64_t> row_peak(static_cast<size_t>(stages) * stages);
  std::vector<double> row_time(static_cast<size_t>(stages) * stages);
  auto record = [&](int a, int b, int64_t cell) {
    row_peak[static_cast<size_t>(a) * stages + b] = table.peak[cell];
    row_time[static_cast<size_t>(a) * stages + b] = table.time_s[cell];
  };
  auto fill_cell = [&](int a, int b) {
    const int64_t cell = cell_index(a, b);
    if (a == b) {
      table.peak[cell] = costs.leaf_peak(a);
      table.time_s[cell] = costs.forward_backward_s(a);
      table.choice[cell] = a;
      record(a, b, cell);
      return;
    }
    const int64_t below = cell_index(a + 1, b);
    int64_t best_peak = std::max(
        {costs.graph_forward_peak(a, b), costs.saved(a) + table.peak[below], costs.graph_backward_peak(a)});
    double best_time = costs.forward_backward_s(a) + table.time_s[below];
    int best_choice = a;
    int64_t chain_peak = 0;
    double forward_s = 0;
    const int64_t* left_peak = row_peak.data() + static_cast<int64_t>(a) * stages;
    const double* left_time = row_time.data() + static_cast<int64_t>(a) * stages;
    for (int j = a + 1; j <= b; ++j) {
      chain_peak = std::max(chain_peak, costs.checkpoint_step_peak(a, j, b));
      forward_s += costs.forward_s(j - 1);
      const int64_t right = cell_index(j, b);
      const int64_t peak =
          std::max({chain_peak, costs.checkpoint_hold(j) + table.peak[right], left_peak[j - 1]});
      const double time_s = forward_s + table.time_s[right] + left_time[j - 1];
      if (peak < best_peak || (peak == best_peak && time_s < best_time)) {
        best_peak = peak;
        best_time = time_s;
        best_choice = j;
      }
    }
    table.peak[cell] = best_peak;
    table.time_s[cell] = best_time;
    table.choice[cell] = best_choice;
    record(a, b, cell);
  };
  // Threads pay off from a few hundred stages (the work grows as stages^3).
  const int workers = stages >= 256 ? std::max(1, threads) : 1;
  if (workers == 1) {
    for (int span = 1; span <= stages; ++span)
      for (int a = 0; a + span <= stages; ++a) fill_cell(a, a + span - 1);
    return table;
  }
  SpinBarrier barrier(workers);
  auto work = [&](int worker) {
    for (int span = 1; span <= stages; ++span) {
      for (int a = worker; a + span <= stages; a += workers) fill_cell(a, a + span - 1);
      barrier.arrive_and_wait();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int worker = 1; worker < workers; ++worker) pool.emplace_back(work, worker);
  work(0);
  for (std::thread& thread : pool) thread.join();
  return table;
}

// ---- fast solver -----------------------------------------------------------------------

// Row storage of the fast solver: cell (a, b) keeps C(a, b, m) only for m in [lo, hi):
// below lo (its min peak) nothing fits; from hi = store-all peak on, graph-first all the
// way reaches the lower bound `tail` (every stage forward once and backward once).
// Slots per pruning block (1 << kBlockShift); blocks are aligned on absolute slots so that
// every row's per-block lower bounds line up.
constexpr int kBlockShift = 4;
inline int64_t block_end(int64_t k) {
  return (k << kBlockShift) + ((int64_t{1} << kBlockShift) - 1);
}

// The solver's tables are left uninitialized: at 1000 stages the rows take 1.7 GB, and
// std::vector's zero fill was a serial pass over all of it (each page's first touch a
// fault) before the fill could start. Every slot is written before it is read; the pages
// are first touched by the threads that fill them.
using DoubleTable = std::unique_ptr<double[]>;
inline DoubleTable allocate_table(int64_t count) {
  return DoubleTable(new double[static_cast<size_t>(std::max<int64_t>(count, 1))]);
}

struct Rows {
  int64_t capacity = 0;
  std::vector<int64_t> lo, hi, store_all_peak, offset;
  std::vector<double> tail;
  DoubleTable values;
  // coarse[cell * coarse_blocks + k] = get(cell, block_end(k)) for every block k of
  // [0, capacity]: a lower bound of get(cell, m) for m <= block_end(k).
  int64_t coarse_blocks = 0;
  DoubleTable coarse;
  // lo, hi, offset and tail again, one cell per 32 bytes: the fill reads them for
  // scattered cells (every split point's two sub-cells), one cache line instead of four.
  // lo is clamped to capacity + 1 (an empty row stays empty) to fit 32 bits.
  // `top_value` is the row at capacity - checkpoint_hold(a) for a cell (a, b): what a
  // full-width row (hi = capacity + 1) that checkpoints at a reads at its last slot. The
  // far phase's bound on a row's last block needs exactly that value, and reading it from
  // the row itself was a cache miss per option.
  struct Meta {
    int32_t lo = 0, hi = 0;
    int64_t offset = 0;
    double tail = 0;
    double top_value = kInfinity;
  };
  std::vector<Meta> meta;

  double get(int64_t cell, int64_t m) const {
    if (m < lo[cell]) return kInfinity;
    if (m >= hi[cell]) return tail[cell];
    return values[offset[cell] + (m - lo[cell])];
  }
  const double* coarse_row(int64_t cell) const { return coarse.get() + cell * coarse_blocks; }
};

// One addend of an option's time as a function of m: a sub-cell's row shifted by the
// units its caller holds, then the sub-cell's constant tail.
struct Term {
  const double* row = nullptr;  // row[m - row_lo] for m in [row_lo, row_hi)
  int64_t row_lo = 0;
  int64_t row_hi = std::numeric_limits<int64_t>::min();
  double tail = 0.0;
};

Term make_term(const Rows& rows, int64_t cell, int64_t shift) {
  const Rows::Meta& meta = rows.meta[cell];
  Term term;
  term.row = rows.values.get() + meta.offset;
  term.row_lo = meta.lo + shift;
  term.row_hi = meta.hi + shift;
  term.tail = meta.tail;
  return term;
}

// best[i] = min(best[i], (base + t1[i]) + t2[i]); the branches are hoisted out so the
// loop vectorizes (minpd). The addition order is the one choose_fast() repeats, so the
// reconstruction finds bit-identical values.
template <bool kRow1, bool kRow2>
void relax_kernel(double* best, int64_t count, double base, const double* row1, double tail1,
                  const double* row2, double tail2) {
  for (int64_t i = 0; i < count; ++i) {
    const double value = (base + (kRow1 ? row1[i] : tail1)) + (kRow2 ? row2[i] : tail2);
    best[i] = value < best[i] ? value : best[i];
  }
}

// The relaxation kernels take most of the solve once the table is tiled; the build
// targets baseline x86-64 (SSE2, 2 doubles per instruction), so AVX2 copies (4 doubles)
// are chosen at run time where the CPU has them. Same additions in the same order, no
// FMA: bit-identical results.
using Kernel = void (*)(double*, int64_t, double, const double*, double, const double*, double);
struct Kernels {
  Kernel row_row, row_tail, tail_row, tail_tail;
};
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
template <bool kRow1, bool kRow2>
__attribute__((target("avx2"))) void relax_kernel_avx2(double* best, int64_t count, double base,
                                                       const double* row1, double tail1, const double* row2,
                                                       double tail2) {
  for (int64_t i = 0; i < count; ++i) {
    const double value = (base + (kRow1 ? row1[i] : tail1)) + (kRow2 ? row2[i] : tail2);
    best[i] = value < best[i] ? value : best[i];
  }
}
Kernels select_kernels() {
  if (__builtin_cpu_supports("avx2")) {
    return {relax_kernel_avx2<true, true>, relax_kernel_avx2<true, false>, relax_kernel_avx2<false, true>,
            relax_kernel_avx2<false, false>};
  }
  return {relax_kernel<true, true>, relax_kernel<true, false>, relax_kernel<false, true>,
          relax_kernel<false, false>};
}
#else
Kernels select_kernels() {
  return {relax_kernel<true, true>, relax_kernel<true, false>, relax_kernel<false, true>,
          relax_kernel<false, false>};
}
#endif
const Kernels kernels = select_kernels();

void relax_range(double* best, int64_t best_lo, int64_t m0, int64_t m1, double base, const Term& t1,
                 const Term& t2) {
  if (m0 >= m1) return;
  if (m1 <= t1.row_hi && m1 <= t2.row_hi) {  // the common case: both sub-rows cover the range
    kernels.row_row(best + (m0 - best_lo), m1 - m0, base, t1.row + (m0 - t1.row_lo), 0,
                    t2.row + (m0 - t2.row_lo), 0);
    return;
  }
  auto run = [&](int64_t from, int64_t to) {
    if (from >= to) return;
    const bool row1 = from < t1.row_hi;
    const bool row2 = from < t2.row_hi;
    double* out = best + (from - best_lo);
    const double* p1 = row1 ? t1.row + (from - t1.row_lo) : nullptr;
    const double* p2 = row2 ? t2.row + (from - t2.row_lo) : nullptr;
    const int64_t count = to - from;
    const Kernel kernel =
        row1 ? (row2 ? kernels.row_row : kernels.row_tail) : (row2 ? kernels.tail_row : kernels.tail_tail);
    kernel(out, count, base, p1, t1.tail, p2, t2.tail);
  };
  const int64_t cut1 = std::clamp(t1.row_hi, m0, m1);
  const int64_t cut2 = std::clamp(t2.row_hi, m0, m1);
  run(m0, std::min(cut1, cut2));
  run(std::min(cut1, cut2), std::max(cut1, cut2));
  run(std::max(cut1, cut2), m1);
}

// A checkpoint option of the cell being filled: its value at m >= start is
// (base + right(m)) + left(m), right(m) = get(right_cell, m - shift).
struct Option {
  int64_t start = 0;
  double base = 0.0;
  int64_t shift = 0;
  int64_t right_cell = 0, left_cell = 0;
  Term right, left;
};

// Per-thread buffers of fill_row, reused from cell to cell.
struct Scratch {
  std::vector<Option> options;
  std::vector<double> bounds;  // bounds[option * blocks + block]
  std::vector<double> leader_bound;
  std::vector<int64_t> leader;
};

// Once a row is final: its coarse samples and its value at the top slot a checkpoint at
// its first stage reads (Rows::Meta::top_value).
void finish_row(const Costs& costs, Rows& rows, int a, int64_t cell) {
  double* coarse = rows.coarse.get() + cell * rows.coarse_blocks;
  for (int64_t block = 0; block < rows.coarse_blocks; ++block)
    coarse[block] = rows.get(cell, block_end(block));
  const int64_t top = rows.capacity - costs.checkpoint_hold(a);
  rows.meta[cell].top_value = top >= 0 ? rows.get(cell, top) : kInfinity;
}

// Block pruning. Every option's value is non-increasing in m, so on a block of slots it
// is at least its value at the block's last slot, and at least the same expression on
// the sub-rows' coarse samples (taken at block ends, further right). The row's running
// best is non-increasing too: an option whose bound is not below the best at its first
// slot in the block cannot lower any slot of it and is skipped. Per block, the option
// with the smallest bound is relaxed first so that the test meets a nearly final best.
//
// Split points j in [skip_begin, skip_end] are left out: the tile's far phase
// (relax_far_splits) has relaxed them already, and the row then holds their minimum
// instead of being reset to infinity (`reset` false).
void fill_row(const Costs& costs, Rows& rows, int a, int b, Scratch& scratch, bool reset = true,
              int skip_begin = 1, int skip_end = 0) {
  const int64_t cell = cell_index(a, b);
  const int64_t lo = rows.lo[cell];
  const int64_t hi = rows.hi[cell];
  if (lo >= hi) {
    finish_row(costs, rows, a, cell);
    return;
  }
  double* best = rows.values.get() + rows.offset[cell];
  if (reset) std::fill(best, best + (hi - lo), kInfinity);

  const int64_t below = cell_index(a + 1, b);
  const int64_t graph_start = std::max(
      {costs.graph_forward_peak(a, b), costs.graph_backward_peak(a), costs.saved(a) + rows.lo[below], lo});
  relax_range(best, lo, std::min(graph_start, hi), hi, costs.forward_backward_s(a),
              make_term(rows, below, costs.saved(a)), Term{});

  std::vector<Option>& options = scratch.options;
  options.clear();
  int64_t chain_peak = 0;
  double forward_s = 0;
  for (int j = a + 1; j <= b; ++j) {
    chain_peak = std::max(chain_peak, costs.checkpoint_step_peak(a, j, b));
    // Longer forward chains only add peaks: no later j fits either.
    if (chain_peak >= hi) break;
    forward_s += costs.forward_s(j - 1);
    if (j >= skip_begin && j <= skip_end) continue;
    Option option;
    option.right_cell = cell_index(j, b);
    option.left_cell = cell_index(a, j - 1);
    option.shift = costs.checkpoint_hold(j);
    option.start =
        std::max({chain_peak, option.shift + rows.lo[option.right_cell], rows.lo[option.left_cell], lo});
    if (option.start >= hi) continue;
    option.base = forward_s;
    option.right = make_term(rows, option.right_cell, option.shift);
    option.left = make_term(rows, option.left_cell, 0);
    options.push_back(option);
  }

  const int64_t first_block = lo >> kBlockShift;
  const int64_t blocks = ((hi - 1) >> kBlockShift) - first_block + 1;
  const size_t count = options.size();
  if (count > 0) {
    std::vector<double>& bounds = scratch.bounds;
    bounds.assign(count * blocks, kInfinity);
    scratch.leader_bound.assign(blocks, kInfinity);
    scratch.leader.assign(blocks, -1);
    for (size_t k = 0; k < count; ++k) {
      const Option& option = options[k];
      double* option_bounds = bounds.data() + k * blocks;
      // Block k's last slot minus the shift lies in the right row's block k + right_step,
      // except in the row's last block, which ends at hi - 1.
      const int64_t right_step = (int64_t{1 << kBlockShift} - 1 - option.shift) >> kBlockShift;
      // right_step is negative by up to the shift's blocks: index from the row's start.
      const double* right = rows.coarse_row(option.right_cell);
      const int64_t right_offset = first_block + right_step;
      const double* left = rows.coarse_row(option.left_cell) + first_block;
      const double base = option.base;
      const int64_t first = (option.start >> kBlockShift) - first_block;
      for (int64_t block = first; block + 1 < blocks; ++block) {
        option_bounds[block] = (base + right[right_offset + block]) + left[block];
      }
      const int64_t last_right = (hi - 1 - option.shift) >> kBlockShift;
      option_bounds[blocks - 1] = (base + rows.coarse_row(option.right_cell)[last_right]) + left[blocks - 1];
      double* leader_bound = scratch.leader_bound.data();
      int64_t* leader = scratch.leader.data();
      for (int64_t block = first; block < blocks; ++block) {
        const bool lower = option_bounds[block] < leader_bound[block];
        leader_bound[block] = lower ? option_bounds[block] : leader_bound[block];
        leader[block] = lower ? static_cast<int64_t>(k) : leader[block];
      }
    }
    auto block_range = [&](int64_t block, const Option& option) {
      const int64_t begin = std::max({(block + first_block) << kBlockShift, option.start});
      const int64_t end = std::min(block_end(block + first_block) + 1, hi);
      return std::make_pair(begin, end);
    };
    for (int64_t block = 0; block < blocks; ++block) {
      if (scratch.leader[block] < 0) continue;
      const Option& option = options[scratch.leader[block]];
      const auto [begin, end] = block_range(block, option);
      relax_range(best, lo, begin, end, option.base, option.right, option.left);
    }
    for (size_t k = 0; k < count; ++k) {
      const Option& option = options[k];
      const double* option_bounds = bounds.data() + k * blocks;
      // Neighbouring blocks that need relaxing are relaxed in one run.
      int64_t run_begin = 0, run_end = 0;
      for (int64_t block = (option.start >> kBlockShift) - first_block; block < blocks; ++block) {
        if (scratch.leader[block] == static_cast<int64_t>(k)) continue;
        const auto [begin, end] = block_range(block, option);
        if (!(option_bounds[block] < best[begin - lo])) continue;
        if (begin != run_end) {
          relax_range(best, lo, run_begin, run_end, option.base, option.right, option.left);
          run_begin = begin;
        }
        run_end = end;
      }
      relax_range(best, lo, run_begin, run_end, option.base, option.right, option.left);
    }
  }

  finish_row(costs, rows, a, cell);
}

// Per-thread buffers of relax_far_splits, reused from tile to tile.
struct TileScratch {
  struct Cell {
    int a = 0, b = 0;
    int64_t cell = 0, lo = 0, hi = 0;
    double* best = nullptr;
    double* block_best = nullptr;  // best at the first slot of each block (absolute index)
    double tail = 0;
    int64_t chain_peak = 0;
    int64_t live_blocks_end = 0;  // blocks from here on cannot be lowered by later options
    bool alive = true;
  };
  std::vector<Cell> cells;
  std::vector<double> forward_s;   // per row a of the tile: f_a + .. + f_{j-1}
  std::vector<double> block_best;  // per cell of the tile, padded blocks
};

// Blocks are tested 4 at a time (one AVX2 vector); arrays the test reads are padded by
// this many doubles so the last vector never reads past them.
constexpr int64_t kMaskPad = 4;

// Bit i of the result is set where block first + i may hold a slot the option lowers:
// (base + right[block]) + left[block] < block_best[block], for count <= 64 blocks. The
// test of every block is independent of the relaxation of the option's other blocks
// (they touch other slots), so the whole mask is computed before relaxing.
using MaskKernel = uint64_t (*)(const double*, const double*, const double*, double, int64_t);
uint64_t pass_mask_scalar(const double* right, const double* left, const double* block_best, double base,
                          int64_t count) {
  uint64_t mask = 0;
  for (int64_t i = 0; i < count; ++i) {
    mask |= static_cast<uint64_t>((base + right[i]) + left[i] < block_best[i]) << i;
  }
  return mask;
}
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) uint64_t pass_mask_avx2(const double* right, const double* left,
                                                        const double* block_best, double base,
                                                        int64_t count) {
  uint64_t mask = 0;
  const __m256d base4 = _mm256_set1_pd(base);
  for (int64_t i = 0; i < count; i += 4) {
    const __m256d bound =
        _mm256_add_pd(_mm256_add_pd(base4, _mm256_loadu_pd(right + i)), _mm256_loadu_pd(left + i));
    const __m256d pass = _mm256_cmp_pd(bound, _mm256_loadu_pd(block_best + i), _CMP_LT_OQ);
    mask |= static_cast<uint64_t>(_mm256_movemask_pd(pass)) << i;
  }
  return count >= 64 ? mask : mask & ((uint64_t{1} << count) - 1);
}
MaskKernel select_mask_kernel() {
  return __builtin_cpu_supports("avx2") ? pass_mask_avx2 : pass_mask_scalar;
}
#else
MaskKernel select_mask_kernel() {
  return pass_mask_scalar;
}
#endif
const MaskKernel pass_mask = select_mask_kernel();

// The far phase of an off-diagonal tile: rows a in [a0, a_top], columns b in
// [first_b, last_b], a_top < first_b, and split points j in [a_top + 1, first_b]. Those
// options read only cells of earlier tiles (right (j, b) lies below the tile in its
// column block, left (a, j - 1) left of it in its row block), so they are relaxed for
// the whole tile split point by split point: each sub-row is loaded once for the 8 cells
// that share it instead of once per cell, which is what made the untiled fill memory
// bound. fill_row then adds the near split points and graph first to the same rows.
//
// Pruning. An option's value is non-increasing in m, so on a block it is at least the
// same expression on the sub-rows' coarse samples (see fill_row). A block is relaxed only
// where that bound beats the best at its first slot (the best is non-increasing); the
// best at every block's first slot is kept per cell, so that the test of all blocks of an
// option is one branch-free vector pass (a mask) instead of a branch per block, and the
// binary search on the option's floor is gone. Sampling the right sub-row exactly at
// (block end - shift) instead was measured: 6% fewer relaxed slots, not faster (it reads
// every right sub-row whole). Measured with the far phase's final rows in hand, the j
// increasing order prunes exactly as much as the best possible order would at 16-slot
// blocks: what the test lets through is the best's own slope inside a block.
void relax_far_splits(const Costs& costs, Rows& rows, int a0, int a_top, int first_b, int last_b,
                      TileScratch& scratch) {
  const int far_begin = a_top + 1;
  const int far_end = first_b;
  const int64_t blocks = rows.coarse_blocks;
  const int64_t stride = blocks + kMaskPad;
  auto& cells = scratch.cells;
  cells.clear();
  scratch.block_best.assign(static_cast<size_t>(stride) * (a_top - a0 + 1) * (last_b - first_b + 1),
                            kInfinity);
  for (int a = a0; a <= a_top; ++a) {
    for (int b = first_b; b <= last_b; ++b) {
      TileScratch::Cell c;
      c.a = a;
      c.b = b;
      c.cell = cell_index(a, b);
      c.lo = rows.lo[c.cell];
      c.hi = rows.hi[c.cell];
      if (c.lo >= c.hi) continue;
      c.best = rows.values.get() + rows.offset[c.cell];
      c.block_best = scratch.block_best.data() + stride * static_cast<int64_t>(cells.size());
      c.tail = rows.tail[c.cell];
      c.live_blocks_end = ((c.hi - 1) >> kBlockShift) + 1;
      std::fill(c.best, c.best + (c.hi - c.lo), kInfinity);
      cells.push_back(c);
    }
  }
  if (cells.empty()) return;
  scratch.forward_s.resize(a_top - a0 + 1);
  // Forward sums and chain peaks are accumulated exactly as fill_row and choose_fast do.
  for (int a = a0; a <= a_top; ++a) {
    double forward_s = 0;
    for (int j = a + 1; j < far_begin; ++j) forward_s += costs.forward_s(j - 1);
    scratch.forward_s[a - a0] = forward_s;
  }
  for (TileScratch::Cell& c : cells) {
    for (int j = c.a + 1; j < far_begin && c.alive; ++j) {
      c.chain_peak = std::max(c.chain_peak, costs.checkpoint_step_peak(c.a, j, c.b));
      c.alive = c.chain_peak < c.hi;
    }
  }
  for (int j = far_begin; j <= far_end; ++j) {
    for (int a = a0; a <= a_top; ++a) scratch.forward_s[a - a0] += costs.forward_s(j - 1);
    const int64_t shift = costs.checkpoint_hold(j);
    for (TileScratch::Cell& c : cells) {
      if (!c.alive) continue;
      c.chain_peak = std::max(c.chain_peak, costs.checkpoint_step_peak(c.a, j, c.b));
      const double forward_s = scratch.forward_s[c.a - a0];
      // Every later option recomputes at least as much: where even the cheapest possible
      // value (the segment's store-all time plus this recomputation, less a margin far
      // above the rounding of the sums) cannot beat a block's best, no later option can
      // lower that block. The best is non-increasing, so those blocks are a suffix of the
      // row, and once it is the whole row the cell is done.
      const double floor_value = forward_s + c.tail * (1 - 1e-9);
      const int64_t lo_block = c.lo >> kBlockShift;
      while (c.live_blocks_end > lo_block && !(floor_value < c.block_best[c.live_blocks_end - 1]))
        --c.live_blocks_end;
      if (c.chain_peak >= c.hi || c.live_blocks_end == lo_block) {
        c.alive = false;
        continue;
      }
      const int64_t right_cell = cell_index(j, c.b);
      const int64_t left_cell = cell_index(c.a, j - 1);
      const Rows::Meta& right_meta = rows.meta[right_cell];
      const Rows::Meta& left_meta = rows.meta[left_cell];
      const int64_t start =
          std::max({c.chain_peak, shift + right_meta.lo, static_cast<int64_t>(left_meta.lo), c.lo});
      if (start >= c.hi) continue;
      const double base = forward_s;
      const int64_t first = start >> kBlockShift;
      const int64_t row_last = (c.hi - 1) >> kBlockShift;
      const int64_t last = std::min(row_last, c.live_blocks_end - 1);
      if (first > last) continue;
      const double* right =
          rows.coarse_row(right_cell) + ((int64_t{1 << kBlockShift} - 1 - shift) >> kBlockShift);
      const double* left = rows.coarse_row(left_cell);
      // Both sub-rows are non-increasing, so their samples at the last block bound every
      // block's test from below, and the best is largest at the first block: where even
      // this least bound does not beat the first block's best, no block can pass.
      if (!((base + right[last]) + left[last] < c.block_best[first])) continue;
      const Term right_term = make_term(rows, right_cell, shift);
      const Term left_term = make_term(rows, left_cell, 0);
      // The first block's test compares with the best at its first slot, not at the
      // option's start: looser, still valid (the best is non-increasing).
      for (int64_t chunk = first; chunk <= last; chunk += 64) {
        const int64_t count = std::min<int64_t>(64, last + 1 - chunk);
        uint64_t mask = pass_mask(right + chunk, left + chunk, c.block_best + chunk, base, count);
        if (chunk + count == row_last + 1) {
          // The row's last block ends at hi - 1: its bound is taken there.
          const double right_last =
              c.hi == rows.capacity + 1 ? right_meta.top_value : rows.get(right_cell, c.hi - 1 - shift);
          const double bound = (base + right_last) + left[last];
          const uint64_t bit = uint64_t{1} << (last - chunk);
          mask = bound < c.block_best[last] ? mask | bit : mask & ~bit;  // last == row_last
        }
        while (mask != 0) {
          const int run_first = __builtin_ctzll(mask);
          const uint64_t from_first = mask >> run_first;
          const int run_length = ~from_first == 0 ? 64 - run_first : __builtin_ctzll(~from_first);
          const int64_t block_begin = chunk + run_first;
          const int64_t block_stop = block_begin + run_length;  // exclusive
          const int64_t begin = std::max(block_begin << kBlockShift, start);
          const int64_t end = std::min(block_stop << kBlockShift, c.hi);
          relax_range(c.best, c.lo, begin, end, base, right_term, left_term);
          for (int64_t block = block_begin; block < block_stop; ++block)
            c.block_best[block] = c.best[std::max(block << kBlockShift, c.lo) - c.lo];
          mask = run_first + run_length >= 64
                     ? 0
                     : (mask >> (run_first + run_length)) << (run_first + run_length);
        }
      }
    }
  }
}

// The option whose value at (a, b, m) is smallest, evaluated exactly as fill_row does.
int choose_fast(const Costs& costs, const Rows& rows, int a, int b, int64_t m) {
  const int64_t cell = cell_index(a, b);
  if (m >= rows.store_all_peak[cell]) return a;
  const int64_t below = cell_index(a + 1, b);
  double best_value = kInfinity;
  int best_choice = -1;
  const int64_t graph_start = std::max(
      {costs.graph_forward_peak(a, b), costs.graph_backward_peak(a), costs.saved(a) + rows.lo[below]});
  if (m >= graph_start) {
    best_value = (costs.forward_backward_s(a) + rows.get(below, m - costs.saved(a))) + 0.0;
    best_choice = a;
  }
  int64_t chain_peak = 0;
  double forward_s = 0;
  for (int j = a + 1; j <= b; ++j) {
    chain_peak = std::max(chain_peak, costs.checkpoint_step_peak(a, j, b));
    if (chain_peak > m) break;
    forward_s += costs.forward_s(j - 1);
    const int64_t right = cell_index(j, b);
    const int64_t left = cell_index(a, j - 1);
    const int64_t start = std::max({chain_peak, costs.checkpoint_hold(j) + rows.lo[right], rows.lo[left]});
    if (m < start) continue;
    const double value = (forward_s + rows.get(right, m - costs.checkpoint_hold(j))) + rows.get(left, m);
    if (value < best_value) {
      best_value = value;
      best_choice = j;
    }
  }
  if (best_choice < 0) {
    throw std::logic_error("optimal planner: no option fits at a cell the table marks feasible (a=" +
                           std::to_string(a) + ", b=" + std::to_string(b) + ", m=" + std::to_string(m) + ")");
  }
  return best_choice;
}

// Columns and rows per tile of the fill order (see solve_fast); the columns must be a
// multiple of the rows. At 1000 stages the table (1.7 GB) is far beyond the caches and
// each split point's sub-rows come from memory; 16 x 16 shares each of them among 16
// cells instead of 8 (the tile's 1 MB of rows then lives partly in L3). Measured at 600
// and 1000 stages: 16 x 16 beat 8 x 8 and 32 x 32 (at 400 stages, in L3, it did not).
constexpr int kTileColumns = 16;
constexpr int kTileRows = 16;

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  const unsigned cores = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(cores, 1u, 8u));
}

}  // namespace

DiscreteChain exact_chain(const ChainProfile& profile, int64_t capacity_bytes,
                          const std::vector<Codec>& codecs) {
  return convert(
      profile, capacity_bytes, [](int64_t bytes, int64_t, int) { return bytes; }, 0, 0, codecs);
}

DiscreteChain discretize(const ChainProfile& profile, int64_t memory_bytes, int slots,
                         const std::vector<Codec>& codecs) {
  if (slots < 1) {
    throw InvalidArgument("memory_slots must be at least 1 (got " + std::to_string(slots) +
                          "); use the default 500 or more for a finer plan");
  }
  return convert(profile, memory_bytes < 0 ? -1 : slots, round_up_units, memory_bytes, slots, codecs);
}

MinPeak min_peak(const DiscreteChain& chain, int threads) {
  check_chain(chain, "min-peak solver", false);
  const Costs costs(chain);
  const MinPeakTable table = min_peak_table(costs, resolve_threads(threads));
  const int top = chain.length;
  MinPeak result;
  result.peak_units = table.peak[cell_index(0, top)];
  result.time_s = table.time_s[cell_index(0, top)];
  auto choose = [&](int a, int b, int64_t) { return static_cast<int>(table.choice[cell_index(a, b)]); };
  emit(costs, 0, top, 0, choose, result.schedule);
  return result;
}

Solution solve_reference(const DiscreteChain& chain) {
  check_chain(chain, "reference solver", true);
  Solution solution;
  if (chain.capacity < 0) return solution;
  const Costs costs(chain);
  const int stages = chain.length + 1;
  const int64_t width = chain.capacity + 1;
  std::vector<double> value(cell_count(stages) * width, kInfinity);
  std::vector<int32_t> choice(cell_count(stages) * width, -1);
  auto at = [&](int a, int b, int64_t m) { return cell_index(a, b) * width + m; };
  auto lookup = [&](int a, int b, int64_t m) { return m < 0 ? kInfinity : value[at(a, b, m)]; };

  for (int span = 1; span <= stages; ++span) {
    for (int a = 0; a + span <= stages; ++a) {
      const int b = a + span - 1;
      for (int64_t m = 0; m < width; ++m) {
        double best = kInfinity;
        int best_choice = -1;
        if (a == b) {
          if (costs.leaf_peak(a) <= m) {
            best = costs.forward_s(a) + (a < chain.length ? chain.backward_s[a] : 0.0);
            best_choice = a;
          }
        } else {
          // Graph first: Fg(a), solve(a + 1, b) next to graph a, B(a).
          if (costs.graph_forward_peak(a, b) <= m && costs.graph_backward_peak(a) <= m) {
            const double rest = lookup(a + 1, b, m - costs.saved(a));
            if (rest < kInfinity) {
              best = costs.forward_s(a) + chain.backward_s[a] + rest;
              best_choice = a;
            }
          }
          // Checkpoint at j: Fc(a), Fn(a+1..j-1), solve(j, b) next to a_j, solve(a, j - 1).
          // chain_peak and forward_s cover the forward chain Fc(a), Fn(a+1..j-1).
          int64_t chain_peak = 0;
          double forward_s = 0;
          for (int j = a + 1; j <= b; ++j) {
            chain_peak = std::max(chain_peak, costs.checkpoint_step_peak(a, j, b));
            forward_s += costs.forward_s(j - 1);
            if (chain_peak > m) continue;
            const double right = lookup(j, b, m - costs.checkpoint_hold(j));
            const double left = lookup(a, j - 1, m);
            if (right < kInfinity && left < kInfinity && forward_s + right + left < best) {
              best = forward_s + right + left;
              best_choice = j;
            }
          }
        }
        value[at(a, b, m)] = best;
        choice[at(a, b, m)] = best_choice;
      }
    }
  }
  const double optimum = value[at(0, chain.length, chain.capacity)];
  if (!(optimum < kInfinity)) return solution;
  solution.feasible = true;
  solution.time_s = optimum;
  auto choose = [&](int a, int b, int64_t m) { return static_cast<int>(choice[at(a, b, m)]); };
  emit(costs, 0, chain.length, chain.capacity, choose, solution.schedule);
  return solution;
}

Solution solve_fast(const DiscreteChain& chain, int threads) {
  check_chain(chain, "fast solver", true);
  Solution solution;
  if (chain.capacity < 0) return solution;
  const Costs costs(chain);
  const int stages = chain.length + 1;
  const int64_t cells = cell_count(stages);
  const int workers = resolve_threads(threads);
  const MinPeakTable min_peaks = min_peak_table(costs, workers);
  if (min_peaks.peak[cell_index(0, chain.length)] > chain.capacity) return solution;

  Rows rows;
  rows.capacity = chain.capacity;
  rows.lo = min_peaks.peak;
  rows.hi.resize(cells);
  rows.store_all_peak.resize(cells);
  rows.tail.resize(cells);
  rows.offset.resize(cells);
  // Store-all peaks and times by the graph-first recursion, so `tail` is bit-identical to
  // the value graph-first-all gets inside the rows.
  for (int b = 0; b < stages; ++b) {
    for (int a = b; a >= 0; --a) {
      const int64_t cell = cell_index(a, b);
      if (a == b) {
        rows.store_all_peak[cell] = costs.leaf_peak(a);
        rows.tail[cell] = costs.forward_backward_s(a);
      } else {
        const int64_t below = cell_index(a + 1, b);
        rows.store_all_peak[cell] =
            std::max({costs.graph_forward_peak(a, b), costs.saved(a) + rows.store_all_peak[below],
                      costs.graph_backward_peak(a)});
        rows.tail[cell] = (costs.forward_backward_s(a) + rows.tail[below]) + 0.0;
      }
      rows.hi[cell] = std::min(rows.store_all_peak[cell], chain.capacity + 1);
    }
  }
  int64_t total = 0;
  for (int64_t cell = 0; cell < cells; ++cell) {
    rows.offset[cell] = total;
    total += std::max<int64_t>(0, rows.hi[cell] - rows.lo[cell]);
  }
  rows.meta.resize(cells);
  for (int64_t cell = 0; cell < cells; ++cell)
    rows.meta[cell] = {static_cast<int32_t>(std::min(rows.lo[cell], chain.capacity + 1)),
                       static_cast<int32_t>(rows.hi[cell]), rows.offset[cell], rows.tail[cell], kInfinity};
  rows.values = allocate_table(total);
  rows.coarse_blocks = (chain.capacity >> kBlockShift) + 1;
  // Every cell writes its coarse row; the padding behind the last one is read by
  // pass_mask's last vector (its bits are masked off) and must hold numbers.
  rows.coarse = allocate_table(cells * rows.coarse_blocks + kMaskPad);
  std::fill(rows.coarse.get() + cells * rows.coarse_blocks,
            rows.coarse.get() + cells * rows.coarse_blocks + kMaskPad, kInfinity);

  // Cells are filled by tiles of kTile x kTile: column blocks of kTile columns b, each by
  // row blocks of decreasing a. (a, b) needs (a + 1..b, b), below it in its column, and
  // (a, a..b - 1), left of it in its row. The diagonal tile is filled cell by cell (a
  // decreasing, b increasing). An off-diagonal tile first relaxes the split points that
  // lie between its rows and its columns for all its cells together (relax_far_splits),
  // then each cell in the same order adds its near split points and graph first. Threads
  // take column blocks in turn; a tile waits until the previous column block has
  // finished its row block (a pipeline).
  const int column_blocks = (stages + kTileColumns - 1) / kTileColumns;
  std::vector<std::atomic<int>> rows_done(column_blocks);  // smallest a finished
  for (auto& done : rows_done) done.store(std::numeric_limits<int>::max());
  std::atomic<int> next_block{0};
  auto work = [&]() {
    Scratch scratch;
    TileScratch tile_scratch;
    for (int block = next_block++; block < column_blocks; block = next_block++) {
      const int first_b = block * kTileColumns;
      const int last_b = std::min(stages, first_b + kTileColumns) - 1;
      for (int a = last_b; a >= first_b; --a) {
        for (int b = a; b <= last_b; ++b) fill_row(costs, rows, a, b, scratch);
      }
      rows_done[block].store(first_b, std::memory_order_release);
      for (int row_block = first_b / kTileRows - 1; row_block >= 0; --row_block) {
        const int a0 = row_block * kTileRows;
        const int a_top = a0 + kTileRows - 1;
        while (rows_done[block - 1].load(std::memory_order_acquire) > a0) std::this_thread::yield();
        relax_far_splits(costs, rows, a0, a_top, first_b, last_b, tile_scratch);
        for (int a = a_top; a >= a0; --a) {
          for (int b = first_b; b <= last_b; ++b)
            fill_row(costs, rows, a, b, scratch, false, a_top + 1, first_b);
        }
        rows_done[block].store(a0, std::memory_order_release);
      }
    }
  };
  // Threads pay off only when the table holds enough work (cells x split points x slots).
  const int64_t table_work =
      static_cast<int64_t>(stages) * stages * stages / 6 * std::max<int64_t>(1, chain.capacity);
  const int helpers = table_work > 2000000 ? std::min(workers, column_blocks) - 1 : 0;
  std::vector<std::thread> pool;
  pool.reserve(helpers);
  for (int t = 0; t < helpers; ++t) pool.emplace_back(work);
  work();
  for (std::thread& thread : pool) thread.join();

  const int64_t top = cell_index(0, chain.length);
  solution.feasible = true;
  solution.time_s = rows.get(top, chain.capacity);
  auto choose = [&](int a, int b, int64_t m) { return choose_fast(costs, rows, a, b, m); };
  emit(costs, 0, chain.length, chain.capacity, choose, solution.schedule);
  return solution;
}

namespace {

// Choices of the lossy tables: j >= a as in solve_reference (a: graph first, j > a:
// checkpoint at j), kLossy - k for a lossy forward with codec k, kKeep for Q's "keep a_a
// to the end" (the cell is then C(a, b, m - hold(a))).
constexpr int32_t kNoChoice = -1;
constexpr int32_t kKeep = -2;
constexpr int32_t kLossy = -3;

class LossyTables {
 public:
  explicit LossyTables(const DiscreteChain& chain)
      : chain_(chain),
        costs_(chain),
        width_(chain.capacity + 1),
        c_value_(cell_count(chain.length + 1) * width_, kInfinity),
        q_value_(c_value_.size(), kInfinity),
        c_choice_(c_value_.size(), kNoChoice),
        q_choice_(c_value_.size(), kNoChoice) {}

  void fill() {
    const int stages = chain_.length + 1;
    for (int span = 1; span <= stages; ++span) {
      for (int a = 0; a + span <= stages; ++a) {
        const int b = a + span - 1;
        for (int64_t m = 0; m < width_; ++m) fill_c(a, b, m);
        if (a == 0) continue;  // a_0 is never dropped: no Q cell
        for (int64_t m = 0; m < width_; ++m) fill_q(a, b, m);
      }
    }
  }

  double optimum() const { return c(0, chain_.length, chain_.capacity); }

  void emit_c(int a, int b, int64_t m, Schedule& out) const {
    const int length = chain_.length;
    const int32_t choice = c_choice_[at(a, b, m)];
    if (choice <= kLossy) {
      emit_lossy(a, b, m, kLossy - choice, out);
      return;
    }
    if (a == b) {
      emit_leaf(length, a, out);
      return;
    }
    const int j = choice;
    if (j == a) {
      out.push_back(Op::forward_with_graph(a));
      emit_c(a + 1, b, m - costs_.saved(a), out);
      out.push_back(Op::backward(a));
      return;
    }
    out.push_back(Op::forward_checkpoint(a));
    for (int k = a + 1; k < j; ++k) out.push_back(Op::forward_no_grad(k));
    emit_q(j, b, m, out);
    emit_c(a, j - 1, m, out);
  }

  // Fq(a) with codec k, then the rest from a_{a+1}, which it stored and owns.
  void emit_lossy(int a, int b, int64_t m, int k, Schedule& out) const {
    out.push_back(Op::forward_lossy(a, chain_.lossy[k].codec));
    if (a == b) {
      out.push_back(Op::free(a + 1));
    } else {
      emit_q(a + 1, b, m - chain_.lossy[k].saved[a], out);
    }
    out.push_back(Op::backward(a));
  }

  // Q cells end with a_a freed: Backward(a) frees it for a < L, an explicit Free for a_L.
  void emit_q(int a, int b, int64_t m, Schedule& out) const {
    const int32_t choice = q_choice_[at(a, b, m)];
    if (choice == kKeep) {
      emit_c(a, b, m - costs_.checkpoint_hold(a), out);
      if (a == chain_.length) out.push_back(Op::free(a));
      return;
    }
    if (choice <= kLossy) {
      emit_lossy(a, b, m, kLossy - choice, out);
      return;
    }
    const int j = choice;
    out.push_back(Op::forward_checkpoint(a));
    for (int k = a + 1; k < j; ++k) out.push_back(Op::forward_no_grad(k));
    emit_q(j, b, m - costs_.x(a), out);
    emit_q(a, j - 1, m, out);
  }

 private:
  int64_t at(int a, int b, int64_t m) const { return cell_index(a, b) * width_ + m; }
  double c(int a, int b, int64_t m) const { return m < 0 ? kInfinity : c_value_[at(a, b, m)]; }
  double q(int a, int b, int64_t m) const {
    if (m < 0) return kInfinity;
    return q_value_[at(a, b, m)];
  }

  static void consider(double value, int32_t choice, double& best, int32_t& best_choice) {
    if (value < best) {
      best = value;
      best_choice = choice;
    }
  }

  // Fq(a) with codec k, then the rest (the stored a_{a+1} owned by it), then B(a);
  // `held` is what the cell holds beside: a_a when Q drops it only after the forward.
  void consider_lossy(int a, int b, int64_t m, int64_t held, double& best, int32_t& best_choice) const {
    if (a >= chain_.length) return;
    for (size_t k = 0; k < chain_.lossy.size(); ++k) {
      const DiscreteChain::Lossy& lossy = chain_.lossy[k];
      const int64_t forward_peak =
          held + costs_.d(b + 1) + costs_.x(a + 1) + lossy.saved[a] + lossy.forward_temp[a];
      const int64_t backward_peak = lossy.saved[a] + costs_.d(a + 1) + lossy.backward_extra[a];
      if (forward_peak > m || backward_peak > m) continue;
      const double rest = a == b ? 0.0 : q(a + 1, b, m - lossy.saved[a]);
      if (!(rest < kInfinity)) continue;
      consider(lossy.forward_s[a] + lossy.backward_s[a] + rest, kLossy - static_cast<int32_t>(k), best,
               best_choice);
    }
  }

  void fill_c(int a, int b, int64_t m) {
    double best = kInfinity;
    int32_t best_choice = kNoChoice;
    if (a == b) {
      if (costs_.leaf_peak(a) <= m) {
        consider(costs_.forward_s(a) + (a < chain_.length ? chain_.backward_s[a] : 0.0), a, best,
                 best_choice);
      }
    } else {
      if (costs_.graph_forward_peak(a, b) <= m && costs_.graph_backward_peak(a) <= m) {
        const double rest = c(a + 1, b, m - costs_.saved(a));
        if (rest < kInfinity)
          consider(costs_.forward_s(a) + chain_.backward_s[a] + rest, a, best, best_choice);
      }
      int64_t chain_peak = 0;
      double forward_s = 0;
      for (int j = a + 1; j <= b; ++j) {
        chain_peak = std::max(chain_peak, costs_.checkpoint_step_peak(a, j, b));
        forward_s += costs_.forward_s(j - 1);
        if (chain_peak > m) continue;
        const double right = q(j, b, m);
        const double left = c(a, j - 1, m);
        if (right < kInfinity && left < kInfinity) consider(forward_s + right + left, j, best, best_choice);
      }
    }
    consider_lossy(a, b, m, 0, best, best_choice);
    c_value_[at(a, b, m)] = best;
    c_choice_[at(a, b, m)] = best_choice;
  }

  void fill_q(int a, int b, int64_t m) {
    double best = kInfinity;
    int32_t best_choice = kNoChoice;
    consider(c(a, b, m - costs_.checkpoint_hold(a)), kKeep, best, best_choice);
    if (a < chain_.length) {
      consider_lossy(a, b, m, costs_.x(a), best, best_choice);
      int64_t chain_peak = 0;
      double forward_s = 0;
      for (int j = a + 1; j <= b; ++j) {
        chain_peak = std::max(chain_peak, costs_.x(a) + costs_.checkpoint_step_peak(a, j, b));
        forward_s += costs_.forward_s(j - 1);
        if (chain_peak > m) continue;
        const double right = q(j, b, m - costs_.x(a));
        const double left = q(a, j - 1, m);
        if (right < kInfinity && left < kInfinity) consider(forward_s + right + left, j, best, best_choice);
      }
    }
    q_value_[at(a, b, m)] = best;
    q_choice_[at(a, b, m)] = best_choice;
  }

  const DiscreteChain& chain_;
  const Costs costs_;
  int64_t width_;
  std::vector<double> c_value_;
  std::vector<double> q_value_;
  std::vector<int32_t> c_choice_;
  std::vector<int32_t> q_choice_;
};

}  // namespace

Solution solve_with_codecs(const DiscreteChain& chain) {
  check_chain(chain, "lossy solver", true);
  Solution solution;
  if (chain.capacity < 0) return solution;
  LossyTables tables(chain);
  tables.fill();
  const double optimum = tables.optimum();
  if (!(optimum < kInfinity)) return solution;
  solution.feasible = true;
  solution.time_s = optimum;
  tables.emit_c(0, chain.length, chain.capacity, solution.schedule);
  return solution;
}

}  // namespace optimal_dp
}  // namespace memento
