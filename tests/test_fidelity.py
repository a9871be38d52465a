"""Fidelity to the papers at the edges: no validation split on ImageNet, scoring batches of the
presets, q with the bases counted, shared SP/IP starts, LTH per round, silent no-ops (issue 13)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sparse_exp.data.split import split_indices

CONF = Path(__file__).resolve().parent.parent / "conf"
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


# ------------------------------------------------------- 1. dataset.val_fraction = 0


def test_split_with_no_validation_keeps_every_training_sample():
    train, val = split_indices(50, 0.0, seed=3)
    assert train.tolist() == list(range(50)) and val.numel() == 0


def test_no_validation_set_reports_the_final_epoch(run_experiment):
    metrics, _ = run_experiment("dataset.val_fraction=0", "dataset.size=300")
    history = metrics["history"]
    assert metrics["status"] == "completed"
    assert metrics["test_acc_selection"] == "final_epoch"
    assert metrics["best_epoch"] == 2 and metrics["test_acc"] == history[-1]["test_acc"]
    # the whole training set trains: 300 samples per epoch at batch 50 -> 6 steps
    assert [h["step"] for h in history] == [6, 12]


def preset_text(name: str) -> str:
    return (CONF / "experiment" / f"{name}.yaml").read_text()


def test_imagenet_presets_train_on_the_whole_training_set(make_cfg):
    # composing is ~0.3 s a preset: compose one of each kind, read the others' overrides as text
    assert make_cfg("experiment=a11_rigl_resnet50_imagenet").dataset.val_fraction == 0.0
    assert make_cfg("experiment=a9_resnet34_tiny_imagenet").dataset.val_fraction == 0.0
    assert make_cfg("experiment=a10_cops_resnet18_tiny_imagenet").dataset.val_fraction == 0.1
    assert make_cfg("experiment=a9_vgg16_cifar10").dataset.val_fraction == 0.1
    for preset in PRESETS:
        text = preset_text(preset)
        if "override /dataset: tiny_imagenet" in text:  # thesis A.3 splits MNIST/CIFAR only; COPS tunes alpha on val
            assert ("val_fraction: 0.1" in text) == preset.startswith(("a10_cops_", "table4_2_")), preset
        elif "override /dataset: imagenet" in text:
            assert "val_fraction" not in text, preset


# ------------------------------------------------------- 2. scoring batches (appendix G.4, section 4.4)

SCORED = {"snip", "usnip", "grasp", "freezenet", "freezenet_wd", "cops", "g_cops", "m_cops", "u_cops", "ip"}


def preset_methods(text: str) -> set[str]:
    methods = set()
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("- override /method:"):
            methods.add(line.split(":")[1].strip())
        elif line.startswith("method:") and line != "method:":  # a sweep over methods
            methods.update(m.strip() for m in line.split(":", 1)[1].split(","))
    return methods


@pytest.mark.parametrize("method", ["cops", "g_cops", "m_cops", "u_cops"])
def test_cops_scores_on_100_batches(make_cfg, method):
    assert make_cfg(f"method={method}").method.score_batches == 100  # section 4.4, every COPS experiment


def test_every_scoring_preset_uses_the_papers_batch_count():
    checked = 0
    for preset in PRESETS:
        text = preset_text(preset)
        if not preset_methods(text) & SCORED or preset.startswith("repro_"):  # CPU-scale reproductions: their own counts
            continue
        checked += 1
        if preset.startswith(("fig3_", "table3_")):  # FreezeNet, Algorithm 3.1: one batch
            assert "score_batches" not in text, preset
        elif "override /dataset: imagenet" in text:  # IP appendix G.4: 15 on ImageNet
            assert "score_batches: 15" in text, preset
        else:  # 100 on CIFAR (G.4) and for every COPS experiment (section 4.4)
            assert "score_batches: 100" in text, preset
    assert checked > 40


# ------------------------------------------------------- 3. q with the filter bases counted (Fig. 5.10)


@pytest.mark.parametrize("q,prunable,bases", [(0.9, 1000, 20), (0.99, 14_710_464, 300_915), (0.5, 7, 1), (0.0, 100, 9)])
def test_bases_in_budget_keep_floor_of_total_minus_bases(q, prunable, bases):
    from sparse_exp.measure.storage import coefficient_q, kept_with_bases, q_with_bases
    from sparse_exp.sparsity.select import kept_count

    if q == 0.99:  # in_1-sized bases: 1% of D + B is less than B
        from sparse_exp.errors import ConfigError

        with pytest.raises(ConfigError, match="method.compression"):
            kept_with_bases(q, prunable, bases)
        q = 0.975
    kept = kept_with_bases(q, prunable, bases)
    assert kept + bases == int((1 - q) * (prunable + bases) + 1e-9)  # the budget pays for the bases
    assert kept_count(coefficient_q(kept, prunable), prunable) == kept
    assert q_with_bases(kept, prunable, bases, bases) == pytest.approx(q, abs=1 / (prunable + bases))


def test_lth_rounds_with_bases_sit_on_the_sp_levels():
    from sparse_exp.sparsity.schedules import lth_kept_counts

    # D = 1000 coefficients + B = 20 basis parameters, final q = 0.5 with the bases counted: 510 in all
    counts = lth_kept_counts(1000, 1 - 490.25 / 1000, 0.2, bases=20)
    assert counts == [816 - 20, 652 - 20, 522 - 20, 490]  # floor(0.8^r 1020) - 20, clipped to 510 - 20
    assert lth_kept_counts(1000, 0.5, 0.2) == [800, 640, 512, 500]  # SP unchanged


def test_a_run_reaches_q_with_the_bases_counted(run_experiment):
    metrics, _ = run_experiment("sharing=fine", "init=standard", "method=snip", "method.compression=0.99",
                                "method.count_bases=true", "dry_run=true")
    params = metrics["params"]
    budget = int(0.01 * (params["total_weights"] + params["basis"]))
    assert params["basis"] == 2 * 25 * 25  # LeNet-5: two 5x5 convolutions, fine sharing
    assert params["trainable_weights"] + params["basis"] == budget
    assert metrics["compression"]["q_with_bases"] == pytest.approx(0.99, abs=1e-5)
    assert metrics["compression"]["q"] > 0.99


@pytest.mark.parametrize("preset", ["fig5_10a_in_nc_lth", "fig5_10b_out_nc_lth"])
def test_fig5_10_presets_reach_the_collapse_with_bases_counted(make_cfg, preset):
    from sparse_exp.experiment import build_model, method_config
    from sparse_exp.measure.storage import basis_parameters, q_with_bases
    from sparse_exp.models.base import prunable_parameters
    from sparse_exp.sparsity.select import kept_count

    cfg = make_cfg(f"experiment={preset}", "sharing.nc=1")
    model = build_model(cfg, 10, (3, 32, 32), 0)
    bases, prunable = basis_parameters(model), sum(p.numel() for p in prunable_parameters(model).values())
    kept = kept_count(method_config(cfg, model).compression, prunable)
    assert cfg.method.compression > 0.972 and q_with_bases(kept, prunable, bases, bases) == pytest.approx(
        cfg.method.compression, abs=1e-7)


# ------------------------------------------------------- 4. SP and IP runs of one seed start alike


def _sp_and_ip(make_cfg, init: str, sharing: str = "fine"):
    from sparse_exp.experiment import build_model

    sp = build_model(make_cfg("model=lenet5", "init=kaiming_normal"), 10, (1, 28, 28), 1234)
    ip = build_model(make_cfg("model=lenet5", f"sharing={sharing}", f"init={init}"), 10, (1, 28, 28), 1234)
    return sp, ip


@pytest.mark.parametrize("init", ["standard", "onb", "random"])
def test_ip_draws_the_spatial_numbers_of_the_sp_run(make_cfg, init):
    sp, ip = _sp_and_ip(make_cfg, init)
    for name in ("conv1", "conv2"):  # LeNet-5's two 5x5 convolutions
        spatial, layer = getattr(sp, name).weight, getattr(ip, name)
        o, i, k, _ = spatial.shape
        if init == "random":  # Alg. A3: W = sum beta_n g(n) differs, the beta are the SP draws
            assert torch.equal(layer.coeff, spatial.reshape(o, i, k * k))
        else:  # standard and onb (Algs. A1, A2): the very same spatial filters
            assert torch.allclose(layer.spatial_weight(), spatial, atol=1e-6)
    for name in ("fc1", "fc2"):  # later layers see the same generator state as in SP
        assert torch.equal(getattr(sp, name).weight, getattr(ip, name).weight)


def test_sp_and_ip_start_from_the_same_random_erk_mask(make_cfg):
    from sparse_exp.models.base import prunable_parameters
    from sparse_exp.sparsity.dst import erk_random_mask

    sp, ip = _sp_and_ip(make_cfg, "standard")
    sp_mask, _ = erk_random_mask(prunable_parameters(sp), 0.9, 7, "method", "dst_mask")
    ip_mask, _ = erk_random_mask(prunable_parameters(ip), 0.9, 7, "method", "dst_mask")
    assert len(sp_mask.masks) == len(ip_mask.masks) == 4
    for (sp_name, a), (ip_name, b) in zip(sp_mask.masks.items(), ip_mask.masks.items()):
        assert torch.equal(a.reshape(-1), b.reshape(-1)), (sp_name, ip_name)


# ------------------------------------------------------- 5. the speed-up script times the IP model's plan


def test_speedup_geometry_follows_the_sharing_plan():
    from sparse_exp.layers.interspace import to_interspace
    from sparse_exp.measure.speedup import basis_first_shape, layer_geometry
    from sparse_exp.models import MODELS

    resnet = to_interspace(MODELS.get("resnet18_imagenet").build(10, (3, 224, 224)), "coarse")
    rows = layer_geometry(resnet, (3, 224, 224))
    assert rows[0]["kernel"] == 7 and basis_first_shape(rows[0]) is None  # the stem stays spatial
    assert basis_first_shape(rows[1]) == (9, 9)
    assert all(basis_first_shape(r) is None for r in rows if r["kernel"] == 1 or r["kind"] == "linear")
    vgg = MODELS.get("vgg16").build(10, (3, 32, 32))
    to_interspace(vgg, type("S", (), dict(name="out_nc", nc=64, dict_size=None, basis_weight_decay=False))())
    shapes = [basis_first_shape(r) for r in layer_geometry(vgg, (3, 32, 32))]
    assert shapes[:4] == [(9, 9), (9, 9), (18, 9), (18, 9)]  # ceil(c_out / 64) bases: 64, 64, 128, 128 outputs


def test_speedup_timing_keeps_spatial_layers_spatial(monkeypatch):
    import numpy as np

    from sparse_exp.measure import speedup

    calls = []
    monkeypatch.setattr(speedup, "mean_seconds", lambda fns, runs: calls.append(len(fns)) or [1.0] * len(fns))
    conv = dict(kind="conv", c_in=2, c_out=4, positions=4, bases=1)
    geometry = [dict(conv, name="stem", kernel=7), dict(conv, name="c", kernel=3),
                dict(kind="linear", name="fc", c_in=4, c_out=3, kernel=1, positions=1)]
    ip = [dict(geometry[0], dict_size=0), dict(geometry[1], dict_size=9), dict(geometry[2], dict_size=0)]
    sp_s, ip_s = speedup.time_sparse(geometry, [0.5, 0.5, 0.5], 1, np.random.default_rng(0), ip)
    assert calls == [1, 2, 1] and sp_s == ip_s == 3.0  # only the FB conv times SP and IP apart


# ------------------------------------------------------- 6. FreezeNet-WD's storage report is self-consistent


def test_freezenet_wd_sparse_formats_store_the_moved_frozen_weights(run_experiment):
    metrics, _ = run_experiment("method=freezenet_wd", "method.compression=0.99", "trainer.epochs=1")
    s, params = metrics["storage"], metrics["params"]
    assert s["trained_values_kb"] == pytest.approx(4 * params["total"] / 1024)  # every value is stored
    # CSR, mask + values and entropy coding each hold every (non-zero) value too, and no seed
    for key in ("csr_kb", "mask_values_kb", "entropy_kb"):
        assert s[key] >= s["trained_values_kb"] * 0.999, key
    assert s["mask_values_kb"] == pytest.approx((params["total_weights"] / 8 + 4 * params["total"]) / 1024)


def test_freeze_mode_csr_counts_the_seed():
    from sparse_exp.export.storage import storage_report

    masks = {"w": torch.tensor([[True, False], [False, False]])}
    freeze, prune = storage_report(10, 7, masks, "freeze"), storage_report(10, 7, masks, "prune")
    assert (freeze["csr_kb"] - prune["csr_kb"]) * 1024 == pytest.approx(4.0)  # the 32-bit seed
    assert (freeze["mask_values_kb"] - prune["mask_values_kb"]) * 1024 == pytest.approx(4.0)


# ------------------------------------------------------- 7. Fig. 4.1 presets


def test_fig4_1_presets_share_the_table_a10_setup_with_their_dense_normaliser(make_cfg):
    runs = {p: make_cfg(f"experiment={p}") for p in
            ("fig4_1_vgg16_cifar10", "fig4_1_gcops_vgg16_cifar10", "fig4_1_dense_baseline_vgg16_cifar10")}
    reference = make_cfg("experiment=a10_vgg16_cifar10")
    for name, cfg in runs.items():
        for group in ("dataset", "model", "trainer", "init"):
            if group == "trainer":  # the flow is logged more often, the schedule is Table A.10's
                assert {**cfg.trainer, "log_every": 0} == {**reference.trainer, "log_every": 0}, name
            else:
                assert cfg[group] == reference[group], (name, group)
        assert cfg.trainer.log_every == 10
    assert runs["fig4_1_dense_baseline_vgg16_cifar10"].method.name == "dense"
    assert runs["fig4_1_gcops_vgg16_cifar10"].method.name == "g_cops"
    text = preset_text("fig4_1_vgg16_cifar10")
    assert preset_methods(text) == {"snip", "random", "grasp"} and "score_batches: 100" in text


# ------------------------------------------------------- 8. LTH keeps every round


def test_lth_keeps_each_rounds_mask_densities_and_flops(run_experiment):
    from sparse_exp.sparsity.mask import Mask

    metrics, out = run_experiment("method=lth", "method.compression=0.36", "method.rewind_step=3", "trainer.epochs=1")
    rounds = metrics["lth"]["rounds"]
    numel = {layer["name"]: layer["numel"] for layer in metrics["layers"]}
    assert [r["round"] for r in rounds] == [0, 1, 2]
    speedups = []
    for r in rounds:
        mask = Mask.load(out / r["mask_file"])
        assert mask.kept() == r["kept"]
        assert sum(r["layers"][n] * numel[n] for n in numel) == pytest.approx(r["kept"])
        speedups.append(r["flops"]["speedup"])
    assert speedups[0] == pytest.approx(1.0) and speedups[0] < speedups[1] < speedups[2]
    assert rounds[-1]["flops"]["speedup"] == pytest.approx(metrics["flops"]["speedup"])
    assert Mask.load(out / rounds[-1]["mask_file"]).sha256() == metrics["mask_sha256"]


# ------------------------------------------------------- 9. silent no-ops are errors or warnings


def test_sharing_on_a_model_without_kxk_convolutions_is_an_error(run_experiment):
    from sparse_exp.errors import ConfigError

    with pytest.raises(ConfigError, match="sharing=medium: the model has no KxK convolution"):
        run_experiment("model=lenet300", "sharing=medium", "init=standard", "dry_run=true")


@pytest.mark.parametrize("init", ["standard", "onb", "random"])
def test_interspace_init_without_sharing_warns(make_cfg, init):
    from sparse_exp.config.validate import config_warnings

    (warning,) = config_warnings(make_cfg(f"init={init}"))
    assert f"init={init}" in warning and "sharing=none" in warning
    assert config_warnings(make_cfg(f"init={init}", "sharing=fine")) == []
    assert config_warnings(make_cfg("init=kaiming_normal")) == []


def test_an_explicit_root_without_the_files_is_an_error_even_with_a_system_copy(tmp_path, monkeypatch):
    from sparse_exp.data import mnist as mnist_module
    from sparse_exp.errors import ConfigError

    system = tmp_path / "system"
    system.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (system / name).write_bytes(b"")  # present: the search would pick this folder
    monkeypatch.setattr(mnist_module, "DEBIAN_FASHION_MNIST", system)
    monkeypatch.chdir(tmp_path)
    assert mnist_module.candidate_dirs("fashion_mnist", tmp_path / "data")[-1] == system  # default root: searched
    with pytest.raises(ConfigError, match="searched only when dataset.root is left at its default"):
        mnist_module.load_idx_dataset("fashion_mnist", tmp_path / "wrong")


# ------------------------------------------------------- choice: weight decay on BatchNorm and biases


@pytest.mark.parametrize("bn,bias", [(True, True), (False, True), (False, False), (True, False)])
def test_batchnorm_and_bias_weight_decay_options(make_cfg, bn, bias):
    from torch import nn

    from sparse_exp.sparsity.enforce import MaskEnforcer
    from sparse_exp.sparsity.mask import Mask
    from sparse_exp.training.optim import build_optimizer

    cfg = make_cfg(f"trainer.batchnorm_weight_decay={bn}", f"trainer.bias_weight_decay={bias}")
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    params = {"0.weight": model[0].weight, "3.weight": model[3].weight}
    optimizer = build_optimizer(model, MaskEnforcer(params, Mask.ones(params), "dense", 5e-4), cfg.trainer)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay[id(model[1].weight)] == decay[id(model[1].bias)] == (5e-4 if bn else 0.0)
    assert decay[id(model[0].bias)] == decay[id(model[3].bias)] == (5e-4 if bias else 0.0)
    assert decay[id(model[0].weight)] == decay[id(model[3].weight)] == 5e-4  # weights always decay


def test_imagenet_rigl_and_gmp_setups_do_not_decay_batchnorm(make_cfg):
    for trainer in ("itop_imagenet", "gale_imagenet", "grasp_imagenet", "snip_cifar10", "lth_cifar10"):
        t = make_cfg(f"trainer={trainer}").trainer
        assert t.batchnorm_weight_decay == (trainer not in ("itop_imagenet", "gale_imagenet")), trainer
        assert t.bias_weight_decay


# ------------------------------------------------------- choice: iterative SynFlow's per-round count


def _reference_synflow(model, shape, q: float, rounds: int) -> dict:
    """Tanaka et al.'s prune loop, written independently: density (1 - q)^((e + 1) / rounds), prune the
    int((1 - density) N) smallest |theta * dR/dtheta| (everything <= the k-th value) of the masked net."""
    import copy

    from sparse_exp.models.base import prunable_parameters

    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    params = prunable_parameters(net)
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}
    for e in range(rounds):
        with torch.no_grad():
            for n, p in params.items():
                p.mul_(masks[n])
        R = net(torch.ones((1, *shape), dtype=torch.float64)).sum()
        scores = torch.cat([(g * p).abs().reshape(-1) for g, p in
                            zip(torch.autograd.grad(R, list(params.values())), params.values())])
        k = int((1.0 - (1.0 - q) ** ((e + 1) / rounds)) * scores.numel())
        threshold = torch.kthvalue(scores, k).values
        keep, offset = scores > threshold, 0
        for n, p in params.items():
            masks[n] = keep[offset: offset + p.numel()].reshape(p.shape)
            offset += p.numel()
    return masks


def test_iterative_synflow_matches_the_reference_prune_loop(make_cfg):
    from types import SimpleNamespace

    from sparse_exp.experiment import build_model
    from sparse_exp.models.base import prunable_parameters
    from sparse_exp.sparsity.scores.context import ScoreContext
    from sparse_exp.sparsity.scores.synflow import round_keep, synflow_iterative
    from sparse_exp.sparsity.select import kept_count

    # 1000 - int(1000 (1 - d_k)) in floating point, as the reference: (1 - 0.99)^0.5 is a hair above 0.1
    assert [round_keep(1000, 10, k, 4, 0.99) for k in (1, 2, 3, 4)] == [317, 101, 32, 10]
    model = build_model(make_cfg("model=lenet5", "init=kaiming_uniform"), 10, (1, 28, 28), 1234)
    params = prunable_parameters(model)
    q, D = 0.99, sum(p.numel() for p in params.values())
    cfg = SimpleNamespace(synflow_rounds=100, synflow_dtype="float64")
    ctx = ScoreContext(model=model, params=params, batches=lambda: [], num_classes=10, input_shape=(1, 28, 28),
                       cfg=cfg, generator=torch.Generator())
    ours, info = synflow_iterative(ctx, kept_count(q, D), q)
    reference = _reference_synflow(model, (1, 28, 28), q, 100)
    assert info["kept_per_round"][-1] == ours.kept() == sum(int(m.sum()) for m in reference.values()) == 4305
    assert all(torch.equal(ours.masks[n], reference[n]) for n in params)  # flooring d_k D instead: 97% agree


# ------------------------------------------------------- choice: DST updates may stop before the end


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_dst_updates_stop_at_the_given_fraction_of_training(run_experiment, method):
    common = (f"method={method}", "method.update_every=2", "trainer.max_steps_per_epoch=8")  # T = 16 steps
    early, _ = run_experiment(*common, "method.stop_fraction=0.5", name="early")
    # steps 2, 4, 6 < 0.5 T (with stop_fraction=1 every update step up to T, tests/test_dst_end_to_end.py)
    assert (early["dst"]["updates"], early["dst"]["last_step"]) == (3, 6)
    # eq. A.77's T is the stop step: at step 6 of T = 8 the cosine is at 3/4 of its way
    p = 0.005 + 0.5 * (0.5 - 0.005) * (1 + math.cos(math.pi * 6 / 8))
    assert early["dst"]["last_drop_fraction"] == pytest.approx(p)


# ------------------------------------------------------- figure tools: backward FLOPs (IP appendix D.2)


def test_backward_flops_by_hand_for_lenet5():
    from sparse_exp.layers.interspace import to_interspace
    from sparse_exp.measure.flops import backward_flops_summary
    from sparse_exp.models import MODELS

    shape = (1, 28, 28)
    sp = MODELS.get("lenet5").build(10, shape)
    ip = to_interspace(MODELS.get("lenet5").build(10, shape), "fine")
    dense = 4 * (20 * 1 * 25 * 576 + 50 * 20 * 25 * 64 + 800 * 500 + 500 * 10)  # 2x the forward pass
    assert backward_flops_summary(sp, shape) == {"dense": dense, "sparse": dense, "speedup": 1.0, "overhead": 0}
    # IP adds G_in 2 c_out n K^2 d (dL/dX, eq. A.10) and 2 c_out c_in K^2 (d + n) (dL/dF, eq. A.14) per FB conv
    overhead = (2 * 20 * 625 * 576 + 2 * 20 * 1 * 25 * (576 + 25)) + (2 * 50 * 625 * 64 + 2 * 50 * 20 * 25 * (64 + 25))
    got = backward_flops_summary(ip, shape)
    assert got["overhead"] == overhead and got["sparse"] == dense + overhead
    names = ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    pruned = backward_flops_summary(sp, shape, dict.fromkeys(names, 0.1))  # dL/dX and dL/dW both shrink
    frozen = backward_flops_summary(sp, shape, dict.fromkeys(names, 1.0), dict.fromkeys(names, 0.1))
    assert pruned["sparse"] == pytest.approx(0.1 * dense) and frozen["sparse"] == pytest.approx(0.55 * dense)


def test_metrics_hold_backward_flops(run_experiment):
    metrics, _ = run_experiment("method=snip", "method.compression=0.9", "dry_run=true")
    backward, forward = metrics["flops"]["backward"], metrics["flops"]
    assert backward["dense"] == 2 * forward["dense"] and backward["speedup"] == pytest.approx(forward["speedup"], rel=1e-6)


# ------------------------------------------------------- figure tools: Fig. 5.4 and Theorem 5.3.1


def test_fig5_4_speedups_by_hand(tmp_path):
    import runpy

    from sparse_exp.measure.theory import speedups

    sp, ip = speedups(3, 64, 0.9)
    assert sp == pytest.approx(10.0) and ip == pytest.approx(64 / (64 * 0.1 + 9))  # eq. 5.15
    assert speedups(3, 512, 0.0)[1] == pytest.approx(512 / 521)  # IP slows a dense layer down
    main = runpy.run_path(str(CONF.parent / "scripts" / "fig5_4_speedup_theory.py"))["main"]
    out = main(["--c-out", "64", "512", "--q", "0.5", "0.99", "--out", str(tmp_path / "fig")])
    assert [(r["c_out"], r["q"]) for r in out["rows"]] == [(64, 0.5), (64, 0.99), (512, 0.5), (512, 0.99)]
    assert (tmp_path / "fig.csv").is_file() and (tmp_path / "fig.png").is_file()


def test_theorem_5_3_1_epsilon_by_hand_and_for_a_mask(tmp_path):
    import math
    import runpy

    from sparse_exp.measure.theory import log10_epsilon, mask_bounds
    from sparse_exp.sparsity.mask import Mask

    assert 10 ** log10_epsilon(2, 2, 2) == pytest.approx(2 / 6)  # C(2, 1) / C(4, 2)
    assert log10_epsilon(2, 2, 1) == -math.inf  # D1 does not divide d: eps = 0
    # IP appendix footnote A.4: 10 filters of 3x3, every non-trivial rate: eps <= 1e-10
    worst = max(log10_epsilon(9, 10, d) for d in range(1, 90))
    assert worst == pytest.approx(math.log10(10 / math.comb(90, 9))) and worst <= -10
    masks = {"conv.weight": torch.zeros(4, 2, 3, 3, dtype=torch.bool), "coeff": torch.ones(4, 2, 9, dtype=torch.bool),
             "fc.weight": torch.ones(3, 4, dtype=torch.bool)}
    masks["conv.weight"][0, 0] = True  # one whole filter: 9 of 72 kept
    rows = mask_bounds(masks)
    assert [(r["name"], r["D1"], r["D2"], r["kept"]) for r in rows] == [("conv.weight", 9, 8, 9), ("coeff", 9, 8, 72)]
    assert 10 ** rows[0]["log10_eps"] == pytest.approx(8 / math.comb(72, 9)) and rows[1]["log10_eps"] is None
    Mask(masks).save(tmp_path / "mask.npz")
    main = runpy.run_path(str(CONF.parent / "scripts" / "theorem_5_3_1_bound.py"))["main"]
    out = main([str(tmp_path), "--grid", "--filters", "10", "--p", "0.5"])
    assert out[str(tmp_path)][0]["kept"] == 9 and out["grid"][0]["kept"] == 45


# ------------------------------------------------------- figure tools: IP model -> spatial model


@pytest.mark.parametrize("sharing", ["fine", "in_nc", "out_nc"])
def test_interspace_model_converts_to_the_spatial_architecture(make_cfg, sharing):
    from sparse_exp.experiment import build_model
    from sparse_exp.export.spatial import to_spatial

    ip = build_model(make_cfg("model=lenet5", f"sharing={sharing}", "sharing.nc=4", "init=onb"), 10, (1, 28, 28), 7)
    with torch.no_grad():  # trained-looking values: sparse coefficients, bases moved away from the start
        ip.conv2.coeff.mul_(torch.rand(ip.conv2.coeff.shape, generator=torch.Generator().manual_seed(1)) < 0.3)
        for basis in ip.fb_bases.values():
            basis.add_(0.1 * torch.randn(basis.shape, generator=torch.Generator().manual_seed(2)))
    sp_reference = build_model(make_cfg("model=lenet5"), 10, (1, 28, 28), 7)
    spatial = to_spatial(ip)
    sp_reference.load_state_dict(spatial.state_dict())  # strict: exactly the SP architecture's keys
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(sp_reference(x), ip(x), rtol=1e-4, atol=1e-5)
    assert hasattr(ip, "fb_bases") and not hasattr(spatial, "fb_bases")  # the input is left as it was


def test_to_spatial_agrees_with_the_state_dict_export(make_cfg):
    from sparse_exp.experiment import build_model
    from sparse_exp.export.spatial import to_spatial
    from sparse_exp.export.state_dict import spatial_state_dict

    ip = build_model(make_cfg("model=lenet5", "sharing=fine", "init=random"), 10, (1, 28, 28), 3)
    exported, converted = spatial_state_dict(ip), to_spatial(ip).state_dict()
    assert list(exported) == list(converted)
    assert all(torch.equal(exported[k], converted[k]) for k in exported)
