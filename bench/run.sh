#!/usr/bin/env bash
# Runs every benchmark binary of a build and keeps their JSON next to the console output.
# Usage: bench/run.sh [BUILD_DIR]   (make bench)
set -euo pipefail
build_dir=${1:-build}
out_dir=${BENCH_OUT:-$build_dir/bench-results}
mkdir -p "$out_dir"
found=0
for bench in "$build_dir"/bin/bench_*; do
  [ -x "$bench" ] || continue
  found=1
  name=$(basename "$bench")
  echo "== $name"
  "$bench" --benchmark_out="$out_dir/$name.json" --benchmark_out_format=json \
    --benchmark_counters_tabular=true
done
if [ "$found" = 0 ]; then
  echo "no benchmark binaries in $build_dir/bin (is Google Benchmark installed? run make deps)" >&2
  exit 2
fi
echo "results: $out_dir"
