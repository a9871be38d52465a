"""method=cops (and g_cops / m_cops / u_cops): config, validation, runs, presets."""
from __future__ import annotations

import json

import pytest

from conftest import REPO, TINY, run_cli
from sparse_exp.config.validate import validate
from sparse_exp.errors import ConfigError
from sparse_exp.methods import METHODS
from sparse_exp.methods.cops import Cops, CopsConfig
from sparse_exp.sparsity.scores import SCORES
from sparse_exp.sparsity.scores.config import ScoringConfig
from sparse_exp.tracking.metrics import hparams_of

PRESETS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")
                 if p.stem.startswith(("table4_", "fig4_", "a10_cops")))
COPS_KEYS = {"s0", "s1", "kappa", "kappa_min", "lambda", "steps", "sim_target", "sim_control"}
GRID = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 0.999, 0.9999, 0.99999]


# config -------------------------------------------------------------------------------------------
def test_registered_with_shorthands(make_cfg):
    for name, control in (("cops", "grasp"), ("g_cops", "grasp"), ("m_cops", "magnitude"), ("u_cops", "usnip")):
        assert issubclass(METHODS.get(name), Cops)
        cfg = make_cfg(f"method={name}")
        assert cfg.method.name == name and cfg.method.target == "snip" and cfg.method.control == control
        assert 0 <= cfg.method.alpha < 1 and cfg.method.mode == "cops" and cfg.method.eps == 1e-6
    assert issubclass(CopsConfig, ScoringConfig)


INVALID = [
    ("alpha", 1.0, "method.alpha must lie in [0, 1)"),
    ("alpha", -0.1, "method.alpha must lie in [0, 1)"),
    ("target", "snipp", "method.target: unknown score 'snipp'"),
    ("control", "foo", "method.control: unknown score 'foo'"),
    ("mode", "sum", "method.mode"),
    ("lam", -1.0, "method.lam"),
    ("projection", "both", "method.projection"),
    ("budget", "erk", "method.budget"),
    ("eps", 0.0, "method.eps"),
    ("compression", 1.5, "method.compression"),
]


def test_invalid_settings_are_rejected(make_cfg):
    base = make_cfg("method=cops")
    validate(base)
    for key, value, needle in INVALID:
        cfg = base.copy()
        cfg.method[key] = value
        with pytest.raises(ConfigError) as err:
            validate(cfg)
        assert needle in str(err.value), (key, str(err.value))
        if "unknown score" in needle:
            assert all(name in str(err.value) for name in SCORES.names())


def test_alpha_is_an_hparam(make_cfg):
    hp = hparams_of(make_cfg("method=g_cops", "method.alpha=0.999"), {"experiment": "a10_cops_vgg16_cifar10"})
    assert hp["method.alpha"] == 0.999 and hp["method.control"] == "grasp" and hp["method.lam"] == 1.0
    hp = hparams_of(make_cfg("sharing=out_nc", "sharing.nc=64", "init=random", "sharing.dict_size=5"), {})
    assert hp["sharing"] == "out_nc" and hp["sharing.nc"] == 64 and hp["sharing.dict_size"] == 5  # Figs. 5.10, 5.11b


def test_presets_compose_and_validate():
    """Every preset of this chapter composes (as the CLI would) and passes validation."""
    import sparse_exp.cli as cli
    from hydra import compose, initialize_config_module

    cli._register_schemas()
    assert len(PRESETS) == 21
    with initialize_config_module(config_module="sparse_exp.conf", version_base="1.3"):
        for preset in PRESETS:
            cfg = compose(config_name="config", overrides=[f"experiment={preset}"])
            validate(cfg)
            if cfg.method.name != "dense":  # fig4_1_dense_baseline: the normalising dense run
                assert cfg.method.score_batches == 100, preset  # section 4.4, every COPS experiment
            if cfg.method.name in ("cops", "g_cops", "m_cops", "u_cops"):
                assert cfg.method.target == "snip"


def test_sweep_presets_hold_the_grids():
    import yaml

    def params(name):
        return yaml.safe_load((REPO / "conf" / "experiment" / f"{name}.yaml").read_text())["hydra"]["sweeper"]["params"]

    def values(v):
        return [float(x) for x in str(v).split(",")]

    assert values(params("table4_1_vgg16_cifar10_cops")["method.alpha"]) == GRID
    assert values(params("table4_1_vgg16_cifar10_cops")["method.compression"]) == [0.9, 0.95, 0.99, 0.995]
    assert params("table4_1_vgg16_cifar10_baselines")["method"] == "random,snip,grasp,magnitude"
    for key in ("resnet18_cifar100", "resnet18_tiny_imagenet", "wrn18_2_tiny_imagenet"):
        assert values(params(f"table4_2_{key}_gcops")["method.compression"]) == [0.85, 0.95, 0.99]
        assert values(params(f"table4_2_{key}_gcops")["method.alpha"]) == GRID
    alphas = values(params("table4_3_alpha_random_search")["method.alpha"])
    lams = values(params("table4_3_lambda_random_search")["method.lam"])
    assert len(alphas) == len(set(alphas)) == 14 and all(0 < a < 1 for a in alphas)
    assert len(lams) == len(set(lams)) == 14 and all(0 < x < 90 for x in lams)
    import numpy as np  # the documented generator reproduces the values

    rng = np.random.default_rng(43)
    assert alphas == [float(x) for x in np.round(np.sort(rng.uniform(0.0, 1.0, 14)), 4)]
    assert lams == [float(x) for x in np.round(np.sort(rng.uniform(0.0, 90.0, 14)), 3)]
    assert values(params("fig4_7_resnet18_cifar100")["method.compression"]) == [0.85, 0.99]
    assert values(params("fig4_8_lenet5_mnist")["method.score_classes"]) == list(range(1, 11))
    assert params("fig4_6_similarity")["dry_run"] is True


# runs ----------------------------------------------------------------------------------------------
def test_cops_run_in_process(run_experiment, caplog):
    caplog.set_level("INFO", logger="sparse_exp")
    metrics, out = run_experiment("method=g_cops", "method.compression=0.9", "method.alpha=0.9", "dry_run=true",
                                  "method.score_batches=2")
    c = metrics["cops"]
    assert COPS_KEYS <= set(c) and metrics["status"] == "dry_run"
    assert c["s1"] <= c["kappa"] < 0 and c["kappa"] == pytest.approx(0.9 * c["kappa_min"])
    assert c["lambda"] > 0 and c["steps"] > 0 and c["kept"] == c["d"]
    assert 0 < c["sim_target"] < 1 and 0 < c["sim_control"] < 1
    assert metrics["compression"]["q"] == pytest.approx(0.9, abs=1e-5)
    assert "cops (snip | grasp, alpha=0.9)" in caplog.text


def test_alpha_zero_and_near_one_reproduce_the_single_score_masks(run_experiment):
    """Both scores come from the same model state and scoring batches as method=<score> itself:
    alpha = 0 gives exactly SNIP's mask, alpha -> 1 approaches GraSP's: the masks the runs of
    method=snip and method=grasp save, compared entry by entry (not COPS's own m(0)/m(1))."""
    from sparse_exp.sparsity.mask import Mask

    common = ("method.compression=0.9", "method.score_batches=2", "dry_run=true")
    snip, snip_dir = run_experiment("method=snip", *common, name="snip")
    grasp, grasp_dir = run_experiment("method=grasp", *common, name="grasp")
    zero, _ = run_experiment("method=g_cops", "method.alpha=0", *common, name="zero")
    assert zero["mask_sha256"] == snip["mask_sha256"]
    assert zero["cops"]["sim_target"] == 1.0 and zero["cops"]["lambda"] == 0.0
    tight, tight_dir = run_experiment("method=g_cops", "method.alpha=0.99999", *common, name="tight")

    def shared(a, b):  # eq. 4.29: the fraction of a's kept weights that b keeps too (both keep d)
        fa, fb = Mask.load(a / "mask.npz").flat(), Mask.load(b / "mask.npz").flat()
        assert int(fa.sum()) == int(fb.sum()) > 0
        return int((fa & fb).sum()) / int(fa.sum())

    assert shared(tight_dir, grasp_dir) > 0.99 and shared(tight_dir, snip_dir) < 0.9
    assert shared(grasp_dir, snip_dir) < 0.9  # the two single-score masks differ, so the test can tell them apart


def test_linear_mode_and_projection_minus(run_experiment):
    lin, _ = run_experiment("method=cops", "method.mode=linear", "method.lam=3.0", "dry_run=true", "method.score_batches=2",
                            name="lin")
    assert lin["cops"]["lambda"] == 3.0 and lin["cops"]["steps"] == 0 and lin["cops"]["mode"] == "linear"
    assert lin["cops"]["kappa"] == lin["cops"]["s1"]
    minus, _ = run_experiment("method=cops", "method.projection=minus", "dry_run=true", "method.score_batches=2",
                              name="minus")
    assert minus["cops"]["s1"] >= minus["cops"]["kappa"]


@pytest.mark.parametrize("target", sorted(SCORES.names()))
def test_partial_classes_work_for_every_score(run_experiment, target):
    """Fig. 4.8: scoring with #T classes only, for any score as target and USNIP as control."""
    m, _ = run_experiment("method=cops", "method.score_batches=2", f"method.target={target}", "method.control=usnip",
                          "method.score_classes=2", "method.compression=0.9", "dry_run=true", name=target)
    assert COPS_KEYS <= set(m["cops"]) and m["cops"]["kept"] == m["cops"]["d"]


def test_summary_survives_resume():
    method = Cops(CopsConfig())
    method.stats = {"s0": -0.5, "s1": -0.4, "kappa": -0.4, "kappa_min": -0.5, "lambda": 1.5, "steps": 20,
                    "sim_target": 0.6, "sim_control": 0.7, "kept": 10, "d": 10}
    other = Cops(CopsConfig())
    other.load_state_dict(method.state_dict())
    assert other.summary() == method.summary() and other.summary()["cops"]["steps"] == 20


def test_cli_multirun_cops_and_shorthand(tmp_path):
    """End to end through the CLI (one process, a two-job multirun): method=cops with a custom
    target/control pair and the G-COPS shorthand, each with its `cops` block and TensorBoard events.
    (Method keys are given plainly: the sweeper applies them per job, sparse_exp/sweep.py.)"""
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *TINY, "method=cops,g_cops", "method.compression=0.9", "method.control=magnitude",
                    "method.score_batches=2", "method.alpha=0.5", "trainer.epochs=1", "trainer.max_steps_per_epoch=2",
                    f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(sweep.glob("*/metrics.json"))
    assert len(runs) == 2
    for path in runs:
        m = json.loads(path.read_text())
        assert m["status"] == "completed" and COPS_KEYS <= set(m["cops"])
        assert m["cops"]["control"] == "magnitude" and m["cops"]["alpha"] == 0.5 and m["cops"]["s1"] <= m["cops"]["kappa"]
        assert any(p.name.startswith("events") for p in (path.parent / "tb").rglob("*"))
    assert {json.loads(p.read_text())["config"]["method"]["name"] for p in runs} == {"cops", "g_cops"}


def test_fig4_7_heatmap_script(tmp_path):
    """scripts/fig4_7_heatmap.py: |A(alpha1) - A(alpha2)| per q from a sweep's metrics.json files."""
    import importlib.util
    import csv

    acc = {(0.85, 0.05): (0.70, 0.71), (0.85, 0.5): (0.69, 0.72), (0.85, 0.99): (0.66, 0.65),
           (0.99, 0.05): (0.50, 0.52), (0.99, 0.5): (0.55, 0.54), (0.99, 0.99): (0.59, 0.58)}
    for i, ((q, alpha), (test, val)) in enumerate(acc.items()):
        for seed in (0, 1):
            run = tmp_path / "sweep" / f"{i}_{seed}"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({
                "status": "completed", "test_acc": test + 0.01 * seed, "best_val_acc": val, "final_train_acc": 1.0,
                "config": {"method": {"name": "g_cops", "compression": q, "alpha": alpha}, "seed": seed}}))
    spec = importlib.util.spec_from_file_location("fig4_7_heatmap", REPO / "scripts" / "fig4_7_heatmap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    rows = list(csv.reader(open(tmp_path / "out" / "fig4_7_q0.85.csv")))
    assert rows[0] == ["alpha", "0.05", "0.5", "0.99"]
    assert float(rows[1][1]) == pytest.approx(70.5) and float(rows[1][3]) == pytest.approx(4.0)  # diag A, |A1 - A3|
    assert float(rows[3][1]) == pytest.approx(4.0)
    assert (tmp_path / "out" / "fig4_7_q0.99.png").stat().st_size > 1000
