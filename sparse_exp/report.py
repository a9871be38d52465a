"""`sparse-exp-report`: collect the metrics.json of runs and sweeps into tables and a plot.

    sparse-exp-report multirun/2026-11-21/10-00-00-000000 --by method.name,method.compression
    sparse-exp-report multirun/... --tune method.alpha   # per group: the alpha with the best mean
                                                        # validation accuracy and its test accuracy
    sparse-exp-report multirun/... --spread method.alpha # best/worst/mean/std over the alphas (Table 4.3)

Writes table.md, table.csv and accuracy_vs_compression.png into --out (default: the first input).
Runs that failed are counted per group, never averaged in.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

DEFAULT_BY = ("dataset.name", "model.name", "method.name", "sharing.name", "method.compression")
METRICS = ("test_acc", "best_val_acc", "final_train_acc")


def find_runs(paths: Iterable[Path]) -> list[dict]:
    runs = []
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(root.rglob("metrics.json"))
        for f in files:
            try:
                data = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            data["_dir"] = str(f.parent)
            runs.append(data)
    return runs


def lookup(run: dict, key: str) -> Any:
    """A dotted key from the run's resolved config (e.g. method.alpha), or a metrics entry."""
    for base in (run.get("config", {}), run):
        node: Any = base
        for part in key.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                node = None
                break
        if node is not None:
            return node
    return None


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def group_runs(runs: list[dict], by: list[str]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        groups[tuple(lookup(run, k) for k in by)].append(run)
    return dict(sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])))


def summarise(runs: list[dict], by: list[str]) -> list[dict]:
    rows = []
    for key, members in group_runs(runs, by).items():
        ok = [r for r in members if r.get("status") == "completed"]
        row = dict(zip(by, key))
        row["runs"] = len(ok)
        row["failed"] = sum(r.get("status") in ("failed", "diverged") for r in members)
        for metric in METRICS:
            vals = [r[metric] for r in ok if isinstance(r.get(metric), (int, float))]
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(vals)
        rows.append(row)
    return rows


def tune(runs: list[dict], by: list[str], over: str) -> list[dict]:
    """The protocol of section 4.4.2: per group, the value of `over` with the best mean validation
    accuracy, and the test accuracy (mean +- std over seeds) at that value."""
    rows = []
    for key, members in group_runs(runs, [k for k in by if k != over]).items():
        candidates = summarise(members, [over])
        candidates = [c for c in candidates if c["runs"] and not math.isnan(c["best_val_acc_mean"])]
        if not candidates:
            continue
        best = max(candidates, key=lambda c: c["best_val_acc_mean"])
        row = dict(zip([k for k in by if k != over], key))
        row[f"best {over}"] = best[over]
        row.update({k: best[k] for k in best if k.endswith(("_mean", "_std")) or k == "runs"})
        row["grid"] = len(candidates)
        rows.append(row)
    return rows


def spread(runs: list[dict], by: list[str], over: str) -> list[dict]:
    """Per group, how the mean test accuracy varies over the values of `over`: best, worst, mean and
    std of the per-value means (Table 4.3: a random search over alpha vs over lambda)."""
    rows = []
    for key, members in group_runs(runs, [k for k in by if k != over]).items():
        means = [c["test_acc_mean"] for c in summarise(members, [over]) if c["runs"] and not math.isnan(c["test_acc_mean"])]
        if not means:
            continue
        row = dict(zip([k for k in by if k != over], key))
        row.update({"values": len(means), "best test acc": max(means), "worst test acc": min(means),
                    "mean test acc": statistics.fmean(means),
                    "std test acc": statistics.stdev(means) if len(means) > 1 else 0.0})
        rows.append(row)
    return rows


def fmt(value: Any, key: str) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if "acc" in key:
            return f"{100 * value:.2f}"
        return f"{value:g}"
    return "-" if value is None else str(value)


def markdown(rows: list[dict]) -> str:
    if not rows:
        return "(no runs)\n"
    keys = list(rows[0])
    merged, out_keys = [], []
    for k in keys:  # show accuracies as "mean ± std" in percent
        if k.endswith("_std"):
            continue
        out_keys.append(k[:-5] + " (%)" if k.endswith("_acc_mean") else k)
    for row in rows:
        cells = []
        for k in keys:
            if k.endswith("_std"):
                continue
            if k.endswith("_acc_mean"):
                std = row[k[:-5] + "_std"]
                cells.append(f"{fmt(row[k], k)} ± {fmt(std, k[:-5] + '_std')}" if not math.isnan(row[k]) else "n/a")
            else:
                cells.append(fmt(row[k], k))
        merged.append(cells)
    lines = ["| " + " | ".join(out_keys) + " |", "|" + "---|" * len(out_keys)]
    lines += ["| " + " | ".join(c) + " |" for c in merged]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        if not rows:
            return
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(runs: list[dict], path: Path, series_key: str = "method.name", x_key: str = "method.compression") -> bool:
    """Test accuracy (mean ± std over seeds) against the compression rate q, one line per method."""
    ok = [r for r in runs if r.get("status") == "completed" and isinstance(r.get("test_acc"), (int, float))]
    if not ok:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for series, members in group_runs(ok, [series_key]).items():
        points = sorted(summarise(members, [x_key]), key=lambda r: (r[x_key] is None, r[x_key] or 0))
        xs = [r[x_key] if r[x_key] is not None else 0.0 for r in points]
        ys = [100 * r["test_acc_mean"] for r in points]
        es = [100 * r["test_acc_std"] for r in points]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=str(series[0]))
    ax.set_xlabel("compression rate q")
    ax.set_ylabel("test accuracy at best validation epoch (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparse-exp-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run dirs, sweep dirs or metrics.json files")
    parser.add_argument("--by", default=",".join(DEFAULT_BY), help="comma-separated config keys to group by")
    parser.add_argument("--tune", default=None, help="config key to select by best mean validation accuracy (e.g. method.alpha)")
    parser.add_argument("--spread", default=None, help="config key searched over: best/worst/mean/std of the mean test accuracy across its values (Table 4.3)")
    parser.add_argument("--out", type=Path, default=None, help="output dir for table.md/table.csv/plot (default: first path)")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)

    runs = find_runs(args.paths)
    if not runs:
        print(f"no metrics.json under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 1
    by = [k for k in args.by.split(",") if k]
    if args.tune:
        rows = tune(runs, by, args.tune)
    elif args.spread:
        rows = spread(runs, by, args.spread)
    else:
        rows = summarise(runs, by)
    out = args.out or (args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows)
    (out / "table.md").write_text(text)
    write_csv(rows, out / "table.csv")
    print(text, end="")
    n_failed = sum(r.get("status") in ("failed", "diverged") for r in runs)
    print(f"\n{len(runs)} runs ({n_failed} failed or diverged); wrote {out / 'table.md'} and {out / 'table.csv'}")
    if not args.no_plot and plot(runs, out / "accuracy_vs_compression.png"):
        print(f"plot: {out / 'accuracy_vs_compression.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
