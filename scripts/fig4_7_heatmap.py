"""Fig. 4.7: stability of COPS w.r.t. the balance factor alpha, as a heat map per compression rate.

    sparse-exp -m experiment=fig4_7_resnet18_cifar100
    python scripts/fig4_7_heatmap.py multirun/<date>/<time> [--out DIR]

For every compression rate q in the sweep, A(alpha) is the test accuracy (at the best validation
epoch, mean over seeds) of the runs with balance factor alpha. Cell (i, j) holds |A(alpha_i) - A(alpha_j)|
in percentage points, the diagonal A(alpha_i) itself, as in the thesis. The best test accuracy is
drawn in red, the alpha with the best mean validation accuracy (the one the protocol of section 4.4.2
picks) is framed. Writes fig4_7_q<q>.csv (the matrix, first row and column the alphas) and
fig4_7_q<q>.png into --out (default: the sweep dir), and prints a summary.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sparse_exp.report import find_runs, summarise  # noqa: E402
from sparse_exp.report.runs import group_runs  # noqa: E402


def matrices(runs: list[dict], by: str = "method.compression", key: str = "method.alpha") -> dict:
    """{q: (alphas, A in %, best-validation index, matrix)} from the runs of a sweep."""
    out = {}
    for (q,), members in group_runs(runs, [by]).items():
        rows = [r for r in summarise(members, [key]) if r["n"] and r[key] is not None
                and not math.isnan(r["test_acc_mean"])]
        if not rows:
            continue
        rows.sort(key=lambda r: float(r[key]))
        alphas = [float(r[key]) for r in rows]
        acc = [100 * r["test_acc_mean"] for r in rows]
        val = [r["best_val_acc_mean"] for r in rows]
        best_val = max(range(len(rows)), key=lambda i: val[i])
        mat = [[acc[i] if i == j else abs(acc[i] - acc[j]) for j in range(len(rows))] for i in range(len(rows))]
        out[q] = (alphas, acc, best_val, mat)
    return out


def write_csv(path: Path, alphas: list[float], mat: list[list[float]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["alpha"] + [f"{a:g}" for a in alphas])
        for a, row in zip(alphas, mat):
            w.writerow([f"{a:g}"] + [f"{v:.4f}" for v in row])


def plot(path: Path, q, alphas: list[float], acc: list[float], best_val: int, mat: list[list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    n = len(alphas)
    data = np.array(mat, dtype=float)
    off = data.copy()
    np.fill_diagonal(off, np.nan)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * n, 0.8 + 0.55 * n))
    im = ax.imshow(off, cmap="viridis", vmin=0.0)
    best_test = int(np.argmax(acc))
    for i in range(n):
        for j in range(n):
            if i == j:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color="white"))
                ax.text(j, i, f"{acc[i]:.2f}", ha="center", va="center", fontsize=7, fontweight="bold",
                        color="red" if i == best_test else "black")
                if i == best_val:
                    ax.add_patch(Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, edgecolor="black", lw=1.5))
            else:
                ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if data[i, j] < 0.6 * np.nanmax(off) else "black")
    labels = [f"{a:g}" for a in alphas]
    ax.set_xticks(range(n), labels, rotation=60, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("alpha_2")
    ax.set_ylabel("alpha_1")
    ax.set_title(f"q = {q}: |A(alpha_1) - A(alpha_2)| (%), diagonal A(alpha)\nred: best test accuracy, framed: best validation")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="the sweep dir (or any dir/metrics.json files) of fig4_7_resnet18_cifar100")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--by", default="method.compression", help="one heat map per value of this key")
    parser.add_argument("--key", default="method.alpha", help="the hyperparameter on the axes")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    runs = [r for r in find_runs([args.sweep]) if r.get("status") == "completed"]
    if not runs:
        print(f"no completed runs under {args.sweep}", file=sys.stderr)
        return 1
    out = args.out or (args.sweep if args.sweep.is_dir() else args.sweep.parent)
    out.mkdir(parents=True, exist_ok=True)
    for q, (alphas, acc, best_val, mat) in matrices(runs, args.by, args.key).items():
        stem = out / f"fig4_7_q{q}"  # (not with_suffix: q = 0.85 has a dot)
        write_csv(Path(f"{stem}.csv"), alphas, mat)
        best_test = max(range(len(acc)), key=lambda i: acc[i])
        print(f"q = {q}: {len(alphas)} values of {args.key}; best test accuracy {acc[best_test]:.2f}% at {alphas[best_test]:g}; "
              f"best validation at {alphas[best_val]:g} (test {acc[best_val]:.2f}%); wrote {stem}.csv")
        if not args.no_plot:
            plot(Path(f"{stem}.png"), q, alphas, acc, best_val, mat)
            print(f"  {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
