#!/usr/bin/env bash
# Gradient-aware checkpointing against the baselines (docs/gac.md): `memento bench` at equal
# budgets (step time, measured peak, recomputation, gradient error) and `memento train` on
# real data with the same seed and steps (final validation loss and accuracy, the decision
# history), then the ablations (proxies, threshold families, alpha and beta, --gac-spare).
# Every run writes one JSON into OUT_DIR (kept when complete: rerun to resume) and the
# summary tables go to OUT_DIR/summary.md.
# Usage: bench/gac/evaluate.sh BUILD_DIR OUT_DIR [STEPS]
set -euo pipefail
build_dir=${1:?build directory}
out_dir=${2:?output directory}
steps=${3:-200}
memento="$build_dir/bin/memento"
source "$(dirname "$0")/../real_data.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Freed pages stay with the process, so step times do not carry the kernel's fresh-page cost.
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=17179869184}

run() {  # name, then memento arguments (a subcommand first); a complete JSON is kept
  local name=$1; shift
  if /usr/bin/python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$out_dir/$name.json" 2>/dev/null; then
    echo "gac: $name (kept)" >&2
    return
  fi
  echo "gac: $name" >&2
  if "$memento" "$@" --format json > "$out_dir/$name.json.tmp" 2> "$out_dir/$name.err"; then
    mv "$out_dir/$name.json.tmp" "$out_dir/$name.json"
  else
    echo "gac: $name failed: $(tail -1 "$out_dir/$name.err")" >&2
    rm -f "$out_dir/$name.json.tmp"
  fi
}

# 1. Equal budgets, every baseline, block and fine granularity (selective needs fine).
run bench-block bench --model gpt-mini --planners store-all,uniform,dtr,optimal,gac --budgets 60%,min \
  --codecs int8 --steps 5 --quiet
run bench-fine bench --model gpt-mini --granularity fine --planners store-all,selective,uniform,dtr,optimal,gac \
  --budgets 63%,75% --codecs int8 --steps 5 --quiet

# 2. Training on real text and images, same seed and steps.
gpt_any_seed=(train --model gpt-mini --data "$text" --steps "$steps" --eval-every 50)
gpt=("${gpt_any_seed[@]}" --seed 1)
run train-text-storeall "${gpt[@]}" --planner store-all --budget 100%
run train-text-optimal "${gpt[@]}" --planner optimal --budget 60%
run train-text-optimal-lossy "${gpt[@]}" --planner optimal --budget 60% --codecs bf16,int8
run train-text-gac "${gpt[@]}" --planner gac --budget 60%
run train-text-gac-lossy "${gpt[@]}" --planner gac --budget 60% --gac-mode lossy --codecs bf16,int8,int4 \
  --gac-threshold norm-median --gac-spare none
run train-text-gac-lossy-sensitivity "${gpt[@]}" --planner gac --budget 60% --gac-mode lossy \
  --codecs bf16,int8,int4 --gac-threshold norm-median --gac-spare none --gac-proxy sensitivity --gac-every 5
run train-text-gac-freeze "${gpt[@]}" --planner gac --budget 60% --gac-mode freeze
run train-text-gac-freeze-param "${gpt[@]}" --planner gac --budget 60% --gac-mode freeze --gac-proxy param-mag
vision_any_seed=(train --model resnet18 --data "$fashion" --batch 64 --eval-batches 16 --lr 0.001 \
  --steps "$steps" --eval-every 50)
vision=("${vision_any_seed[@]}" --seed 1)
run train-fashion-storeall "${vision[@]}" --planner store-all --budget 100%
run train-fashion-gac-lossy "${vision[@]}" --planner gac --budget 97% --gac-mode lossy --codecs bf16,int8 \
  --gac-threshold norm-median --gac-spare none
run train-fashion-optimal-lossy "${vision[@]}" --planner optimal --budget 97% --codecs bf16,int8
run train-fashion-gac-freeze-param "${vision[@]}" --planner gac --budget 100% --gac-mode freeze --gac-proxy param-mag

# A BERT-style encoder (BERT-mini's shape: 4 layers, 256 wide, 4 heads) on masked bytes of
# the same text, and ViT-tiny with 4-pixel patches on Fashion-MNIST (28 pixels: 49 patches).
bert=(train --model bert-base --layers 4 --hidden 256 --heads 4 --data "$text" --steps "$steps" \
  --eval-every 50 --seed 1)
run train-mlm-storeall "${bert[@]}" --planner store-all --budget 100%
for planner in uniform dtr optimal gac; do run "train-mlm-$planner" "${bert[@]}" --planner "$planner" --budget 65%; done
run train-mlm-optimal-lossy "${bert[@]}" --planner optimal --budget 65% --codecs bf16,int8
run train-mlm-gac-lossy "${bert[@]}" --planner gac --budget 65% --gac-mode lossy --codecs bf16,int8,int4 \
  --gac-threshold norm-median --gac-spare none
vit=(train --model vit-tiny --patch-size 4 --image-size 28 --data "$fashion" --batch 32 --lr 0.001 \
  --steps "$steps" --eval-every 50 --seed 1)
run train-vit-storeall "${vit[@]}" --planner store-all --budget 100%
for planner in dtr optimal gac; do run "train-vit-$planner" "${vit[@]}" --planner "$planner" --budget 60%; done
run train-vit-optimal-lossy "${vit[@]}" --planner optimal --budget 60% --codecs bf16,int8
run train-vit-gac-lossy "${vit[@]}" --planner gac --budget 60% --gac-mode lossy --codecs bf16,int8,int4 \
  --gac-threshold norm-median --gac-spare none

# More seeds for the lossy runs (exact plans equal store-all bit for bit at every seed).
for seed in 2 3; do
  run "train-text-storeall-seed$seed" "${gpt_any_seed[@]}" --seed "$seed" --planner store-all --budget 100%
  run "train-text-optimal-lossy-seed$seed" "${gpt_any_seed[@]}" --seed "$seed" --planner optimal --budget 60% \
    --codecs bf16,int8
  run "train-text-gac-lossy-seed$seed" "${gpt_any_seed[@]}" --seed "$seed" --planner gac --budget 60% --gac-mode lossy \
    --codecs bf16,int8,int4 --gac-threshold norm-median --gac-spare none
  run "train-fashion-storeall-seed$seed" "${vision_any_seed[@]}" --seed "$seed" --planner store-all --budget 100%
  run "train-fashion-gac-lossy-seed$seed" "${vision_any_seed[@]}" --seed "$seed" --planner gac --budget 97% \
    --gac-mode lossy --codecs bf16,int8 --gac-threshold norm-median --gac-spare none
done

# 3. Ablations on the text: what the threshold alone decides (--gac-spare none).
base=(train --model gpt-mini --data "$text" --steps 60 --eval-every 20 --seed 1 --planner gac --budget 80%)
short=("${base[@]}" --gac-spare none)
for proxy in mag frobenius trace param-mag; do
  for threshold in ema norm-median kind; do
    run "ablation-$proxy-$threshold" "${short[@]}" --gac-proxy "$proxy" --gac-threshold "$threshold"
  done
done
for alpha in 0.5 1.0; do run "ablation-ema-alpha$alpha" "${short[@]}" --gac-threshold ema --gac-alpha "$alpha"; done
for alpha in 0.5 2.0; do
  run "ablation-median-alpha$alpha" "${short[@]}" --gac-threshold norm-median --gac-alpha "$alpha"
done
for beta in 0.9 0.99; do run "ablation-median-beta$beta" "${short[@]}" --gac-threshold norm-median --gac-beta "$beta"; done
run ablation-every10 "${short[@]}" --gac-every 10
run ablation-lossy-none "${short[@]}" --gac-mode lossy --codecs bf16,int8,int4 --gac-threshold norm-median
run ablation-lossy-spare "${base[@]}" --gac-mode lossy --codecs bf16,int8,int4 \
  --gac-threshold norm-median

/usr/bin/python3 "$(dirname "$0")/summarize.py" "$out_dir" > "$out_dir/summary.md"
cat "$out_dir/summary.md"
