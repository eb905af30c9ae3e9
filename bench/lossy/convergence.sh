#!/usr/bin/env bash
# Convergence of lossy storage: `memento train` exact and lossy side by side, same seed, same
# steps, on gpt-mini (the generated corpus and real English text: Debian's fortunes) and on
# resnet18 with Fashion-MNIST (Debian's dataset-fashion-mnist). Writes one train JSON per run
# and a summary table (final validation loss, lossy against exact) to OUT_DIR.
# Usage: bench/lossy/convergence.sh BUILD_DIR OUT_DIR [STEPS]
set -euo pipefail
build_dir=${1:?build directory}
out_dir=${2:?output directory}
steps=${3:-300}
memento="$build_dir/bin/memento"
fortunes=/usr/share/games/fortunes
fashion=/usr/share/datasets/fashion-mnist
for needed in "$fortunes/literature" "$fashion/train-images-idx3-ubyte.gz"; do
  [ -e "$needed" ] || { echo "missing $needed: apt-get install fortunes dataset-fashion-mnist" >&2; exit 2; }
done
mkdir -p "$out_dir"
# The English fortune files, one text (the .dat indexes and .u8 links left out).
text="$out_dir/fortunes.txt"
find "$fortunes" -maxdepth 1 -type f ! -name '*.dat' | sort | xargs cat > "$text"

run() {  # name, then memento train arguments
  local name=$1; shift
  echo "convergence: $name" >&2
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$memento" train --format json --seed 1 --steps "$steps" "$@" \
    > "$out_dir/$name.json"
}
gpt=(--model gpt-mini --planner optimal --budget 45%)  # 40% is under the exact minimum at seq 64
run gpt-generated-exact "${gpt[@]}"
run gpt-generated-lossy "${gpt[@]}" --codecs bf16,int8
run gpt-fortunes-exact "${gpt[@]}" --data "$text"
run gpt-fortunes-lossy "${gpt[@]}" --data "$text" --codecs bf16,int8
# resnet18 on 32x32 images: the parameters and AdamW state dominate the peak, so the budget
# sits where exact storage no longer fits and store-all packs every stage (GACT/ActNN-style).
vision=(--model resnet18 --data "$fashion" --batch 64 --eval-batches 16 --lr 0.001)
run fashion-exact "${vision[@]}" --planner store-all --budget 100%
run fashion-lossy "${vision[@]}" --planner store-all --budget 95% --codecs int8

/usr/bin/python3 - "$out_dir" <<'PY'
import json, sys, os
out = sys.argv[1]
rows = []
for pair in ("gpt-generated", "gpt-fortunes", "fashion"):
    exact = json.load(open(os.path.join(out, pair + "-exact.json")))
    lossy = json.load(open(os.path.join(out, pair + "-lossy.json")))
    e, l = exact["final_val_loss"], lossy["final_val_loss"]
    label = lambda d: d["planner"] + (" (lossy: " + d["codecs"] + ")" if d["lossy"] else "")
    rows.append((pair, label(exact), label(lossy), e, l, l / e - 1))
with open(os.path.join(out, "summary.txt"), "w") as f:
    line = f"{'run':15} {'exact':28} {'lossy':34} {'exact val':>10} {'lossy val':>10} {'change':>8}"
    print(line); f.write(line + "\n")
    for r in rows:
        line = f"{r[0]:15} {r[1]:28} {r[2]:34} {r[3]:10.4f} {r[4]:10.4f} {r[5]*100:+7.2f}%"
        print(line); f.write(line + "\n")
PY
