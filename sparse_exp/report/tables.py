"""Tables of a report: mean ± std over seeds per group, the tuning protocol of section 4.4.2, the spread
of Table 4.3, and the methods x compression layout of Tables 3.2, 3.4, 4.1 and 5.1.

Every cell says how many runs it averages (n); a single run shows no spread. Failed, diverged and
incomplete runs are never averaged in: failed and diverged are counted in their own columns (diverged
runs may be counted at chance accuracy instead, and the table then says so).
"""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any

from sparse_exp.report.runs import group_runs, lookup

DEFAULT_METRICS = ("test_acc", "best_val_acc", "final_train_acc")
CHANCE = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100, "tiny_imagenet": 200, "imagenet": 1000}


def chance_accuracy(run: dict) -> float:
    dataset = run.get("config", {}).get("dataset", {})
    classes = CHANCE.get(dataset.get("name"), dataset.get("num_classes", 10))
    return 1.0 / classes


def metric_values(members: list[dict], metric: str, diverged_as_chance: bool = False) -> list[float]:
    values = []
    for run in members:
        status = run.get("status")
        if status == "completed" or (status == "dry_run" and not metric.endswith("_acc")):  # masks only: mask metrics
            value = lookup(run, metric)
        elif status == "diverged" and diverged_as_chance and metric.endswith("_acc"):
            value = chance_accuracy(run)
        else:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            values.append(float(value))
    return values


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def summarise(runs: list[dict], by: list[str], metrics=DEFAULT_METRICS, diverged_as_chance: bool = False) -> list[dict]:
    """One row per group of `by`: n (completed runs), diverged, failed, and mean/std/n of each metric."""
    rows = []
    for key, members in group_runs(runs, by).items():
        row: dict[str, Any] = dict(zip(by, key))
        row["n"] = sum(r.get("status") in ("completed", "dry_run") for r in members)
        row["diverged"] = sum(r.get("status") == "diverged" for r in members)
        row["failed"] = sum(r.get("status") == "failed" for r in members)
        for metric in metrics:
            values = metric_values(members, metric, diverged_as_chance)
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(values)
            row[f"{metric}_n"] = len(values)
        rows.append(row)
    return rows


def tune(runs: list[dict], by: list[str], over: str, metrics=DEFAULT_METRICS) -> list[dict]:
    """Section 4.4.2: per group, the value of `over` with the best mean validation accuracy, and the
    metrics (mean ± std over seeds) at that value."""
    rows = []
    rest = [k for k in by if k != over]
    for key, members in group_runs(runs, rest).items():
        candidates = [c for c in summarise(members, [over], tuple(dict.fromkeys(("best_val_acc", *metrics))))
                      if c["n"] and not math.isnan(c["best_val_acc_mean"])]
        if not candidates:
            continue
        best = max(candidates, key=lambda c: c["best_val_acc_mean"])
        row: dict[str, Any] = dict(zip(rest, key))
        row[f"best {over}"] = best[over]
        row["grid"] = len(candidates)
        row["n"] = best["n"]
        row.update({k: best[k] for k in best if k.startswith(tuple(metrics)) and k.endswith(("_mean", "_std", "_n"))})
        rows.append(row)
    return rows


def spread(runs: list[dict], by: list[str], over: str) -> list[dict]:
    """Table 4.3: per group, best/worst/mean of the per-value mean test accuracies over the values of `over`,
    the std of those per-value means, and the std over all runs of the group (which is what a random search
    over `over` with one run per draw sees)."""
    rows = []
    rest = [k for k in by if k != over]
    for key, members in group_runs(runs, rest).items():
        means = [c["test_acc_mean"] for c in summarise(members, [over], ("test_acc",)) if c["test_acc_n"]]
        every = metric_values(members, "test_acc")
        if not means:
            continue
        row: dict[str, Any] = dict(zip(rest, key))
        row.update({
            "values": len(means), "runs": len(every),
            "best mean test acc": max(means), "worst mean test acc": min(means),
            "mean test acc": statistics.fmean(means),
            "std of the per-value means": statistics.stdev(means) if len(means) > 1 else math.nan,
            "std over all runs": statistics.stdev(every) if len(every) > 1 else math.nan,
        })
        rows.append(row)
    return rows


def pivot(rows: list[dict], row_key: str, col_key: str, metric: str, by: list[str]) -> list[dict]:
    """Rows of `summarise` laid out with `row_key` (and any other grouping key) down and `col_key` across."""
    others = [k for k in by if k not in (row_key, col_key)]
    cols = sorted({r[col_key] for r in rows}, key=_sort_key)
    table: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        label = tuple(r[k] for k in [row_key, *others])
        entry = table.setdefault(label, dict(zip([row_key, *others], label)))
        entry[f"{col_key}={fmt(r[col_key], col_key)}"] = cell(r, metric)
    for entry in table.values():
        for c in cols:
            entry.setdefault(f"{col_key}={fmt(c, col_key)}", "-")
    return sorted(table.values(), key=lambda e: tuple(_sort_key(e[k]) for k in [row_key, *others]))


def _sort_key(v: Any):
    return (v is None, 0 if isinstance(v, (int, float)) else 1, v if isinstance(v, (int, float)) else str(v))


# formatting --------------------------------------------------------------------------------------
def is_fraction(metric: str) -> bool:
    """Accuracies are stored as fractions and shown in percent."""
    return metric.endswith("_acc") or metric.endswith(" acc") or metric.startswith("std")


def fmt(value: Any, key: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if is_fraction(key):
            return f"{100 * value:.2f}"
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def cell(row: dict, metric: str) -> str:
    """`mean ± std (n=k)`; one run: `value (n=1)`; none: `n/a`."""
    mean, std, n = row.get(f"{metric}_mean"), row.get(f"{metric}_std"), row.get(f"{metric}_n", 0)
    if not n or mean is None or math.isnan(mean):
        return "n/a"
    value = (lambda v: fmt(v, metric)) if is_fraction(metric) else (lambda v: f"{v:.4g}")  # 4 digits for other metrics
    text = value(mean)
    if n > 1 and std is not None and not math.isnan(std):
        text += f" ± {value(std)}"
    return f"{text} (n={n})"


def markdown(rows: list[dict], footnotes: list[str] = ()) -> str:
    if not rows:
        return "(no runs)\n"
    keys, headers = [], []
    for k in rows[0]:
        if k.endswith(("_std", "_n")) and k.rsplit("_", 1)[0] + "_mean" in rows[0]:
            continue
        keys.append(k)
        if k.endswith("_mean"):
            metric = k[: -len("_mean")]
            headers.append(f"{metric} (%)" if is_fraction(metric) else metric)
        else:
            headers.append(f"{k} (%)" if is_fraction(k) else k)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [cell(row, k[: -len("_mean")]) if k.endswith("_mean") else fmt(row[k], k) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if footnotes:
        text += "\n" + "\n".join(f"- {f}" for f in footnotes) + "\n"
    return text


def write_csv(rows: list[dict], path: Path) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (fmt(v) if isinstance(v, tuple) else v) for k, v in row.items()})
