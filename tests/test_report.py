"""The aggregation of metrics.json files: grouping by what varies, mean ± std with n, tuning and spread,
the paper layouts and the figure. Runs are written by hand, so every expected number is computed here."""
from __future__ import annotations

import json
import math
import statistics

import pytest

from sparse_exp import report
from sparse_exp.report.runs import varying_keys


def _write(root, name, *, method="snip", q=0.99, seed=0, test=0.9, val=None, status="completed", lr=0.1,
           model="vgg16", alpha=None, tags=("t",), milestones=(30, 60), extra=None):
    d = root / name
    d.mkdir(parents=True)
    method_cfg = {"name": method, "compression": q, **({"alpha": alpha} if alpha is not None else {})}
    cfg = {"dataset": {"name": "cifar10", "root": f"/data/{name}"}, "model": {"name": model}, "sharing": {"name": "none"},
           "trainer": {"lr": lr, "lr_milestones": list(milestones), "threads": 1}, "method": method_cfg, "seed": seed,
           "tags": list(tags)}
    m = {"status": status, "config": cfg}
    if status == "completed":
        m.update(test_acc=test, best_val_acc=test + 0.01 if val is None else val, final_train_acc=1.0,
                 storage={"compression_factor": 1 / (1 - q)}, **(extra or {}))
    (d / "metrics.json").write_text(json.dumps(m))
    return d


def test_default_grouping_splits_a_swept_lr_instead_of_averaging_it(tmp_path):
    # a sweep over lr with two seeds each: the old fixed grouping averaged 0.05 and 0.1 into one row
    for i, (lr, seed, acc) in enumerate([(0.05, 0, 0.80), (0.05, 1, 0.82), (0.1, 0, 0.60), (0.1, 1, 0.64)]):
        _write(tmp_path, f"{i}", lr=lr, seed=seed, test=acc)
    runs = report.find_runs([tmp_path])
    assert varying_keys(runs) == ["trainer.lr"]  # dataset.root, trainer.threads and seed never split groups
    text, rows, by, _ = report.build(runs, None, ["test_acc"])
    assert by == ["trainer.lr"]
    assert [(r["trainer.lr"], r["n"]) for r in rows] == [(0.05, 2), (0.1, 2)]
    assert rows[0]["test_acc_mean"] == pytest.approx(0.81)
    assert rows[1]["test_acc_std"] == pytest.approx(statistics.stdev([0.60, 0.64]))
    assert "| 0.05 | 2 | 0 | 0 | 81.00 ± 1.41 (n=2) |" in text


def test_explicit_by_that_mixes_configurations_warns_in_the_footnote(tmp_path, capsys):
    _write(tmp_path, "a", lr=0.05, test=0.8)
    _write(tmp_path, "b", lr=0.1, test=0.6)
    assert report.main([str(tmp_path), "--by", "method.name", "--no-plot"]) == 0
    out, err = capsys.readouterr()
    assert "WARNING: trainer.lr vary inside these groups" in out and "trainer.lr" in err


def test_single_run_has_no_spread_and_n_is_shown(tmp_path):
    _write(tmp_path, "a", test=0.9)
    text, rows, _, _ = report.build(report.find_runs([tmp_path]), ["method.name"], ["test_acc"])
    assert "90.00 (n=1)" in text and "±" not in text.split("\n- ")[0]


def test_diverged_and_incomplete_runs_are_never_averaged_in(tmp_path):
    _write(tmp_path, "ok", test=0.9)
    _write(tmp_path, "div", status="diverged", seed=1)
    _write(tmp_path, "fail", status="failed", seed=2)
    _write(tmp_path, "run", status="running", seed=3, q=0.995)
    runs = report.find_runs([tmp_path])
    text, rows, _, notes = report.build(runs, ["method.name"], ["test_acc"])
    (row,) = rows
    assert (row["n"], row["diverged"], row["failed"], row["test_acc_mean"]) == (1, 1, 1, pytest.approx(0.9))
    assert any("running:" in n and "method.name=snip" in n and "seed=3" in n for n in notes)  # named with its config
    # counted at chance accuracy only when asked, and the table says so
    text, rows, _, notes = report.build(runs, ["method.name"], ["test_acc"], diverged_as_chance=True)
    assert rows[0]["test_acc_mean"] == pytest.approx((0.9 + 0.1) / 2) and rows[0]["test_acc_n"] == 2
    assert "chance accuracy" in text


def test_list_valued_keys_group_and_unknown_keys_suggest(tmp_path, capsys):
    _write(tmp_path, "a", tags=("x",), milestones=(30, 60), test=0.9)
    _write(tmp_path, "b", tags=("y", "z"), milestones=(30, 60, 80), test=0.7)
    runs = report.find_runs([tmp_path])
    text, rows, by, _ = report.build(runs, ["tags", "trainer.lr_milestones"], ["test_acc"])
    assert len(rows) == 2 and "[30, 60, 80]" in text
    assert report.main([str(tmp_path), "--by", "method.compresion"]) == 2
    assert "did you mean method.compression" in capsys.readouterr().err


def test_tune_picks_best_validation_not_best_test_and_writes_its_own_file(tmp_path):
    # alpha 0.5 has the best test accuracy but the worst validation accuracy
    for i, (alpha, accs, dval) in enumerate([(0.1, [0.5, 0.7], 0.0), (0.9, [0.8, 0.8], 0.0), (0.5, [0.9, 0.7], -0.3)]):
        for seed, a in enumerate(accs):
            _write(tmp_path, f"{i}{seed}", method="cops", alpha=alpha, seed=seed, test=a, val=a + dval)
    runs = report.find_runs([tmp_path])
    (row,) = report.tune(runs, ["method.name", "method.alpha"], "method.alpha")
    assert row["best method.alpha"] == 0.9 and row["test_acc_mean"] == pytest.approx(0.8) and row["grid"] == 3
    assert report.main([str(tmp_path), "--tune", "method.alpha"]) == 0
    assert (tmp_path / "table_tune.md").exists() and not (tmp_path / "table.md").exists()


def test_spread_reports_both_standard_deviations_and_says_which_is_which(tmp_path):
    accs = {0.1: [0.5, 0.7], 0.9: [0.8, 0.8], 0.5: [0.9, 0.7]}
    for alpha, values in accs.items():
        for seed, a in enumerate(values):
            _write(tmp_path, f"{alpha}-{seed}", method="cops", alpha=alpha, seed=seed, test=a)
    (row,) = report.spread(report.find_runs([tmp_path]), ["method.name", "method.alpha"], "method.alpha")
    means = [0.6, 0.8, 0.8]
    assert row["values"] == 3 and row["runs"] == 6
    assert (row["best mean test acc"], row["worst mean test acc"]) == (pytest.approx(0.8), pytest.approx(0.6))
    assert row["std of the per-value means"] == pytest.approx(statistics.stdev(means))
    assert row["std over all runs"] == pytest.approx(statistics.stdev([a for v in accs.values() for a in v]))
    assert report.main([str(tmp_path), "--spread", "method.alpha"]) == 0
    text = (tmp_path / "table_spread.md").read_text()
    assert "std of the per-value means" in text and "std over all runs" in text


def test_any_metric_is_a_column_and_the_pivot_has_the_papers_shape(tmp_path, capsys):
    for i, (method, q, acc) in enumerate([("snip", 0.9, 0.9), ("snip", 0.99, 0.8), ("freezenet", 0.9, 0.91),
                                          ("freezenet", 0.99, 0.85), ("freezenet", 0.99, 0.87)]):
        _write(tmp_path, f"{i}", method=method, q=q, seed=i, test=acc)
    runs = report.find_runs([tmp_path])
    text, rows, _, _ = report.build(runs, ["method.name", "method.compression"], ["test_acc", "storage.compression_factor"])
    assert "| snip | 0.99 | 1 | 0 | 0 | 80.00 (n=1) | 100 (n=1) |" in text
    assert report.main([str(tmp_path), "--pivot", "method.name,method.compression", "--metrics", "test_acc"]) == 0
    pivot = (tmp_path / "table_pivot.md").read_text()
    assert "| method.name | method.compression=0.9 | method.compression=0.99 |" in pivot
    assert "| freezenet | 91.00 (n=1) | 86.00 ± 1.41 (n=2) |" in pivot


def test_figure_has_a_panel_per_model_a_log_axis_and_a_dense_band(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    for i, (model, method, q, acc) in enumerate([("lenet300", "snip", 0.9, 0.9), ("lenet300", "snip", 0.999, 0.1),
                                                 ("lenet5", "snip", 0.9, 0.95), ("lenet5", "snip", 0.99, 0.9),
                                                 ("lenet5", "dense", 0.0, 0.99)]):
        _write(tmp_path, f"{i}", model=model, method=method, q=q, test=acc)
    created = []
    real_subplots = plt.subplots

    def spy(*a, **k):
        fig, axes = real_subplots(*a, **k)
        created.append(axes)
        return fig, axes

    plt.subplots = spy
    try:
        files = report.plot(report.find_runs([tmp_path]), tmp_path / "fig", series=["method.name"], facets=["model.name"])
    finally:
        plt.subplots = real_subplots
    assert sorted(f.suffix for f in files) == [".pdf", ".png"] and all(f.stat().st_size > 0 for f in files)
    (axes,) = created
    left, right = axes[0]
    assert (left.get_title(), right.get_title()) == ("lenet300", "lenet5")
    assert left.get_xscale() == "log"
    xs = sorted(left.get_lines()[0].get_xdata())
    assert xs == pytest.approx([0.001, 0.1])  # 1 - q: 0.999 and 0.9 are two decades apart
    assert any("dense" in t.get_text() for t in right.get_legend().get_texts())
    assert not any("dense" in t.get_text() for t in left.get_legend().get_texts())
    assert any("(n=1)" in t.get_text() for t in left.get_legend().get_texts())
    assert math.isclose(right.get_lines()[-1].get_ydata()[0], 99.0)
