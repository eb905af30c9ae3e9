#!/usr/bin/env python3
"""Tables of bench/gac/evaluate.sh's JSON files (docs/gac.md): bench rows at equal budgets,
training runs side by side, the ablations, and the documents' claims tested against them."""
import json
import os
import statistics
import sys

out = sys.argv[1]


def load(name):
    path = os.path.join(out, name + ".json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def pct(x):
    return "—" if x is None else f"{100 * x:.1f}%"


def mib(b):
    return f"{b / 2**20:.1f}"


def label(row):
    if row.get("lossy"):
        return row["planner"] + f" (lossy: {row.get('codecs_used')})"
    allowed = row.get("codecs", "none")
    return row["planner"] + ("" if allowed == "none" else f" ({allowed} allowed, none used)")


def bench_table(name):
    doc = load(name)
    if not doc:
        return f"({name}: missing)\n"
    lines = [f"{doc['model']} batch {doc['batch']}, {name.split('-')[1]} granularity; store-all "
             f"{mib(doc['store_all']['measured_peak_bytes'])} MiB, {1000 * doc['store_all']['step_s']:.0f} ms",
             "",
             "| planner | budget | measured peak MiB | step ms | overhead | recompute ratio | grad cosine | status |",
             "|---|---|---|---|---|---|---|---|"]
    for row in doc["rows"]:
        if row.get("status") not in ("ok", "over_budget"):
            lines.append(f"| {label(row)} | {row['budget']} | — | — | — | — | — | {row.get('status')} |")
            continue
        lines.append(f"| {label(row)} | {row['budget']} | {mib(row['measured_peak_bytes'])} | "
                     f"{1000 * row['step_s']:.0f} | {100 * row['overhead']:+.1f}% | {pct(row['recompute_ratio'])} | "
                     f"{row['grad_cosine']:.6f} | {row['status']} |")
    return "\n".join(lines) + "\n"


def late_recompute_share(doc):
    """Share of stage decisions that are recompute (or compress) in the last half of the history."""
    history = doc["gac"]["history"]
    if not history:
        return None, None
    last = max(r["step"] for r in history)
    late = [r for r in history if r["step"] > last / 2]
    below = [r for r in late if r["reason"] == "below threshold" or r["decision"] != "store"]
    given_up = [r for r in late if r["decision"] in ("recompute", "compress", "freeze")]
    return len(given_up) / len(late), len(below) / len(late)


def flip_rate(doc):
    """How often a stage's decision changes from one measured step to the next."""
    by_stage = {}
    for r in doc["gac"]["history"]:
        by_stage.setdefault(r["stage"], []).append(r["decision"] + str(r.get("codec", "")))
    changes = sum(sum(a != b for a, b in zip(v, v[1:])) for v in by_stage.values())
    pairs = sum(max(len(v) - 1, 0) for v in by_stage.values())
    return changes / pairs if pairs else None


def critical_stages(doc):
    """Stages stored as above-threshold in more than half of the late records."""
    history = doc["gac"]["history"]
    last = max(r["step"] for r in history)
    counts = {}
    for r in history:
        if r["step"] > last / 2:
            counts.setdefault(r["stage"], []).append(r["reason"] == "above threshold")
    return [s for s, v in sorted(counts.items()) if sum(v) > len(v) / 2]


def train_table(names):
    lines = ["| run | planner | budget | measured peak | median step ms | final val loss | final val accuracy | "
             "late stages given up | proxy share |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        d = load(name)
        if not d:
            lines.append(f"| {name} | (missing: see {name}.err) |||||||| ")
            continue
        gac = d.get("gac")
        late = late_recompute_share(d)[0] if gac else None
        acc = d.get("final_val_accuracy")
        lines.append(
            f"| {name} | {d['planner']}{' (lossy: ' + d['codecs'] + ')' if d['lossy'] else ''} | "
            f"{pct(d['budget_bytes'] / d['store_all_peak_bytes'])} | {pct(d['peak_bytes'] / d['store_all_peak_bytes'])} | "
            f"{1000 * d['median_train_compute_s']:.0f} | {d['final_val_loss']:.4f} | "
            f"{'—' if acc is None else f'{100 * acc:.2f}%'} | {pct(late)} | "
            f"{pct(gac['proxy_share_of_compute']) if gac else '—'} |")
    return "\n".join(lines) + "\n"


def ablation_table():
    names = sorted(n[:-5] for n in os.listdir(out) if n.startswith("ablation-") and n.endswith(".json"))
    lines = ["| ablation | mode | last step's measured peak | late stages given up | late below threshold | "
             "critical stages (late) | decision flips | final val loss | proxy share |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        d = load(name)
        if not d:
            continue
        given_up, below = late_recompute_share(d)
        lines.append(f"| {name[9:]} | {d['gac']['mode']} | {pct(d['last_step_peak_bytes'] / d['store_all_peak_bytes'])} | "
                     f"{pct(given_up)} | {pct(below)} | "
                     f"{critical_stages(d)} | {pct(flip_rate(d))} | {d['final_val_loss']:.4f} | "
                     f"{pct(d['gac']['proxy_share_of_compute'])} |")
    return "\n".join(lines) + "\n"


print("## Equal budgets (memento bench)\n")
print(bench_table("bench-block"))
print(bench_table("bench-fine"))
print("## Training side by side (same seed, same steps)\n")
print(train_table(["train-text-storeall", "train-text-optimal", "train-text-optimal-lossy", "train-text-gac",
                   "train-text-gac-lossy", "train-text-gac-freeze", "train-text-gac-freeze-param"]))
print(train_table(["train-fashion-storeall", "train-fashion-optimal-lossy", "train-fashion-gac-lossy",
                   "train-fashion-gac-freeze-param"]))
print("## Ablations (gpt-mini on fortunes, 60 steps, 80% budget, --gac-spare none unless named)\n")
print(ablation_table())
print(train_table(["train-mlm-storeall", "train-mlm-uniform", "train-mlm-dtr", "train-mlm-optimal",
                   "train-mlm-optimal-lossy", "train-mlm-gac", "train-mlm-gac-lossy"]))
print(train_table(["train-vit-storeall", "train-vit-dtr", "train-vit-optimal", "train-vit-optimal-lossy",
                   "train-vit-gac", "train-vit-gac-lossy"]))
print(train_table(["train-text-gac-lossy", "train-text-gac-lossy-sensitivity"]))


def seeds_table():
    lines = ["| runs (seeds 1, 2, 3) | final val loss per seed | mean | final val accuracy per seed | mean |",
             "|---|---|---|---|---|"]
    for name in ["train-text-storeall", "train-text-optimal-lossy", "train-text-gac-lossy",
                 "train-fashion-storeall", "train-fashion-gac-lossy"]:
        docs = [load(name if seed == 1 else f"{name}-seed{seed}") for seed in (1, 2, 3)]
        docs = [d for d in docs if d]
        if not docs:
            continue
        losses = [d["final_val_loss"] for d in docs]
        accuracies = [d["final_val_accuracy"] for d in docs]
        lines.append(f"| {name} | {', '.join(f'{x:.4f}' for x in losses)} | {statistics.mean(losses):.4f} | "
                     f"{', '.join(f'{100 * x:.2f}%' for x in accuracies)} | "
                     f"{100 * statistics.mean(accuracies):.2f}% |")
    return "\n".join(lines) + "\n"


print("## Seeds\n")
print(seeds_table())
