"""The figure of a report: a metric against compression, as the thesis' Figs. 3.3, 4.x and 5.5 draw it.

The x axis is the remaining fraction 1 - q on a log scale (or the compression factor 1/(1-q)), so
q = 0.99, 0.995 and 0.999 are apart; any other swept key can be the x axis instead. One panel per
facet (dataset/model), one line per series (method, sharing, a swept value: every grouping key that is
neither x nor facet), mean ± std over seeds as a shaded band with n in the legend, and the dense runs
as a horizontal band. Written as PNG and PDF.
"""
from __future__ import annotations

import math
from pathlib import Path

from sparse_exp.report.runs import group_runs, lookup
from sparse_exp.report.tables import fmt, is_fraction, mean_std, metric_values

X_MODES = ("remaining", "factor")  # of method.compression; any other value is a config key plotted as is


def _x(run: dict, x: str):
    if x in X_MODES:
        q = lookup(run, "method.compression")
        if not isinstance(q, (int, float)) or q >= 1.0:
            return None  # q = 1 has no place on a log axis of 1 - q (the table lists it)
        return (1.0 - q) if x == "remaining" else 1.0 / (1.0 - q)
    value = lookup(run, x)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _label(keys: list[str], values: tuple) -> str:
    if not keys:
        return "all runs"
    if len(keys) == 1:
        return fmt(values[0], keys[0])
    return ", ".join(f"{k.split('.')[-1] if k.endswith('.name') else k}={fmt(v, k)}" for k, v in zip(keys, values))


def plot(runs: list[dict], stem: Path, x: str = "remaining", series: list[str] = (), facets: list[str] = (),
         metric: str = "test_acc", title: str = "", dense_key: str = "method.name") -> list[Path]:
    """Draw `metric` against `x`; returns the files written (none if nothing is plottable)."""
    done = [r for r in runs if r.get("status") in ("completed", "dry_run")]  # metric_values picks per metric
    if not done:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = 100.0 if is_fraction(metric) else 1.0
    panels = group_runs(done, list(facets))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False)
    drawn = False
    for ax, (facet, members) in zip(axes[0], panels.items()):
        dense = [r for r in members if lookup(r, dense_key) == "dense"]
        sparse = [r for r in members if r not in dense]
        for key, line_runs in group_runs(sparse, list(series)).items():
            points = []
            by_x: dict[float, list[dict]] = {}
            for r in line_runs:
                xv = _x(r, x)
                if xv is not None:
                    by_x.setdefault(xv, []).append(r)
            for xv in sorted(by_x):
                values = metric_values(by_x[xv], metric)
                if values:
                    m, s = mean_std(values)
                    points.append((xv, scale * m, 0.0 if math.isnan(s) else scale * s, len(values)))
            if not points:
                continue
            xs, ys, ss, ns = zip(*points)
            n_text = f"n={ns[0]}" if min(ns) == max(ns) else f"n={min(ns)}-{max(ns)}"
            line = ax.plot(xs, ys, marker="o", label=f"{_label(list(series), key)} ({n_text})")[0]
            ax.fill_between(xs, [y - s for y, s in zip(ys, ss)], [y + s for y, s in zip(ys, ss)],
                            color=line.get_color(), alpha=0.2)
            drawn = True
        dense_values = metric_values(dense, metric)
        if dense_values:
            m, s = mean_std(dense_values)
            s = 0.0 if math.isnan(s) else s
            ax.axhline(scale * m, color="black", linestyle="--", linewidth=1, label=f"dense ({'n=' + str(len(dense_values))})")
            ax.axhspan(scale * (m - s), scale * (m + s), color="black", alpha=0.08)
            drawn = True
        if x in X_MODES:
            ax.set_xscale("log")
            if x == "remaining":
                ax.invert_xaxis()  # compression grows to the right, as in the papers
                ax.set_xlabel("remaining fraction 1 - q (log scale; q = compression rate)")
            else:
                ax.set_xlabel("compression factor 1 / (1 - q) (log scale)")
        else:
            ax.set_xlabel(x)
        ax.set_ylabel(f"{metric} (%)" if scale == 100.0 else metric)
        if facets:
            ax.set_title(_label(list(facets), facet))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    if not drawn:
        plt.close(fig)
        return []
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    written = []
    for suffix in (".png", ".pdf"):
        path = Path(str(stem) + suffix)
        fig.savefig(path, dpi=130)
        written.append(path)
    plt.close(fig)
    return written
