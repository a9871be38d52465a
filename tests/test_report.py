"""The aggregation of metrics.json files: grouping, mean ± std, tuning and spread, plot."""
from __future__ import annotations

import json
import math

import pytest

from sparse_exp import report


def _write(root, i, method, q, seed, test, val, status="completed", alpha=None):
    d = root / f"{i}_run"
    d.mkdir(parents=True)
    cfg = {"dataset": {"name": "cifar10"}, "model": {"name": "vgg16"}, "sharing": {"name": "none"},
           "method": {"name": method, "compression": q, **({"alpha": alpha} if alpha is not None else {})}, "seed": seed}
    m = {"status": status, "config": cfg}
    if status == "completed":
        m.update(test_acc=test, best_val_acc=val, final_train_acc=1.0)
    (d / "metrics.json").write_text(json.dumps(m))


@pytest.fixture
def sweep(tmp_path):
    i = 0
    for method, accs in (("snip", [0.90, 0.92]), ("freezenet", [0.80, 0.84])):
        for seed, a in enumerate(accs):
            _write(tmp_path, i, method, 0.99, seed, a, a + 0.01)
            i += 1
    _write(tmp_path, i, "snip", 0.99, 2, None, None, status="failed")
    for j, (alpha, accs) in enumerate(((0.1, [0.5, 0.7]), (0.9, [0.8, 0.8]), (0.5, [0.9, 0.7]))):
        for seed, a in enumerate(accs):
            i += 1
            _write(tmp_path, i, "cops", 0.99, seed, a, a - (0.3 if alpha == 0.5 else 0.0), alpha=alpha)
    return tmp_path


def test_mean_std_and_failed_counts(sweep):
    rows = {r["method.name"]: r for r in report.summarise(report.find_runs([sweep]), ["method.name"])}
    assert rows["snip"]["runs"] == 2 and rows["snip"]["failed"] == 1
    assert rows["snip"]["test_acc_mean"] == pytest.approx(0.91)
    assert rows["snip"]["test_acc_std"] == pytest.approx(math.sqrt(2) * 0.01)


def test_tune_picks_best_validation_not_best_test(sweep):
    runs = [r for r in report.find_runs([sweep]) if r["config"]["method"]["name"] == "cops"]
    (row,) = report.tune(runs, ["method.name", "method.alpha"], "method.alpha")
    assert row["best method.alpha"] == 0.9 and row["test_acc_mean"] == pytest.approx(0.8)  # alpha 0.5 has the best test
    (sp,) = report.spread(runs, ["method.name", "method.alpha"], "method.alpha")
    assert (sp["best test acc"], sp["worst test acc"]) == (pytest.approx(0.8), pytest.approx(0.6))
    assert sp["values"] == 3 and sp["mean test acc"] == pytest.approx(0.7333333)


def test_cli_writes_tables_and_plot(sweep, capsys):
    assert report.main([str(sweep), "--by", "method.name,method.compression"]) == 0
    out = capsys.readouterr().out
    assert "| snip | 0.99 | 2 | 1 | 91.00 ± 1.41 |" in out
    for name in ("table.md", "table.csv", "accuracy_vs_compression.png"):
        assert (sweep / name).exists()
