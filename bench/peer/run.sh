#!/usr/bin/env bash
# memento against PyTorch's checkpoint_sequential, side by side (make bench-peer).
# Usage: bench/peer/run.sh [BUILD_DIR] [bench/peer/compare.py options]
# Needs Debian's python3-torch (the same PyTorch build as libtorch-dev) at /usr/bin/python3
# (or PEER_PYTHON), and BUILD_DIR/bin/memento + BUILD_DIR/lib/libmemento_peer_alloc.so.
set -euo pipefail
build_dir=${1:-build}
shift || true
python=${PEER_PYTHON:-/usr/bin/python3}
if ! "$python" -c "import torch" 2>/dev/null; then
  echo "bench-peer: $python cannot import torch; install Debian's python3-torch (apt-get install python3-torch)" \
    "or set PEER_PYTHON to a Python whose torch shares libc10.so with libtorch-dev" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=1
exec "$python" "$here/compare.py" --build "$build_dir" --python "$python" "$@"
