"""Sparse kernels (`trainer.sparse_kernels`, sparse_exp/kernels): every product equals autograd's on the
masked dense layer, training on them equals masked dense training over 200 steps (losses within float
rounding, the same masks, for static and changing masks), auto chooses by the timings it measures,
and the choice is recorded and survives a resume."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from sparse_exp.errors import ConfigError
from sparse_exp.kernels import SparseKernels, native
from sparse_exp.kernels import plan as kernel_plan
from sparse_exp.kernels.update import kept_entry_sgd_
from sparse_exp.sparsity.enforce import MaskEnforcer
from sparse_exp.sparsity.mask import Mask
from test_dst import build_session

LAYERS = {
    "linear": (lambda: nn.Linear(30, 20), (7, 30)),
    "linear_3d_input": (lambda: nn.Linear(30, 20), (3, 5, 30)),
    "conv": (lambda: nn.Conv2d(3, 8, 3, padding=1), (4, 3, 9, 9)),
    "conv_strided": (lambda: nn.Conv2d(3, 8, 3, stride=2, padding=1), (4, 3, 9, 9)),
    "conv_dilated_rect": (lambda: nn.Conv2d(3, 8, (3, 2), dilation=(2, 1)), (2, 3, 9, 10)),
    "conv_no_bias": (lambda: nn.Conv2d(4, 6, 5, bias=False), (2, 4, 8, 8)),
}


def _enforcer(model: nn.Module, mode: str, masks: dict) -> MaskEnforcer:
    params = {n: p for n, p in model.named_parameters() if n in masks}
    return MaskEnforcer(params, Mask(masks), mode, 0.0)


def _install(model: nn.Module, masks: dict, mode: str, kernels: str = "on") -> SparseKernels:
    plan = SparseKernels(kernels)
    plan.install(model, _enforcer(model, mode, masks))
    return plan


def _grads(model, layer, x, gy):
    x = x.clone().requires_grad_()
    y = model(x)
    y.backward(gy)
    out = (y.detach(), x.grad, layer.weight.grad.clone(), None if layer.bias is None else layer.bias.grad.clone())
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("mode", ["prune", "freeze"])
@pytest.mark.parametrize("case", sorted(LAYERS))
def test_products_equal_autograd_of_the_masked_layer(case, mode, kernel_impl):
    torch.manual_seed(0)
    make, shape = LAYERS[case]
    layer = make()
    mask = torch.rand_like(layer.weight) < 0.3
    if mode == "prune":  # pruned entries are zero (the enforcer keeps them so)
        with torch.no_grad():
            layer.weight.mul_(mask)
    model = nn.Sequential(layer)
    x = torch.randn(shape)
    gy = torch.randn_like(model(x))
    y0, gx0, gw0, gb0 = _grads(model, layer, x, gy)  # plain PyTorch
    plan = _install(model, {"0.weight": mask}, mode)
    assert "forward" in layer.__dict__ and plan.layers["0.weight"].use == {
        "forward": mode == "prune", "grad_input": mode == "prune", "grad_weight": True}
    y1, gx1, gw1, gb1 = _grads(model, layer, x, gy)
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx1, gx0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw1, gw0 * mask, rtol=1e-5, atol=1e-5)  # the trained entries' gradient
    assert not gw1[~mask].any() and gw0[~mask].abs().sum() > 0  # the others are not computed at all
    if gb0 is not None:
        torch.testing.assert_close(gb1, gb0, rtol=1e-5, atol=1e-5)
    plan.dense_weight_grad = True  # a step whose full dL/dW a method reads (RigL)
    torch.testing.assert_close(_grads(model, layer, x, gy)[2], gw0, rtol=1e-5, atol=1e-5)
    plan.uninstall()
    assert "forward" not in layer.__dict__


def test_off_dense_and_unmasked_layers_stay_plain():
    model = nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 3))
    masks = {"0.weight": torch.rand(4, 6) < 0.5, "1.weight": torch.ones(3, 4, dtype=torch.bool)}
    assert not _install(model, masks, "prune", "off").active
    assert not _install(model, masks, "dense").active
    plan = _install(model, masks, "prune", "on")
    assert list(plan.layers) == ["0.weight"] and plan.summary()["layers"]["1.weight"] == {"dense": "nothing masked"}
    bf16 = SparseKernels("auto", precision="bf16")
    bf16.install(model, _enforcer(model, "prune", masks))
    assert not bf16.active and "precision bf16" in bf16.dense["0.weight"]


def test_a_copy_of_the_model_runs_the_plain_forward():
    model = nn.Sequential(nn.Linear(6, 4))
    mask = torch.rand(4, 6) < 0.5
    with torch.no_grad():
        model[0].weight.mul_(mask)
    _install(model, {"0.weight": mask}, "prune")
    clone = copy.deepcopy(model)
    x = torch.randn(2, 6)
    torch.testing.assert_close(clone(x), model(x))
    assert clone[0].forward.__self__ is clone[0]  # the class's forward, bound to the copy


def _fake_timer(table):
    calls = []

    def timer(kernel, x):
        calls.append(kernel.name)
        return {p: table[p] for p in kernel.allowed}

    return timer, calls


def test_auto_uses_a_sparse_product_only_where_measured_faster(monkeypatch):
    table = {"forward": (1.0, 0.5), "grad_input": (1.0, 0.95), "grad_weight": (1.0, 2.0)}  # 2x, 1.05x (noise), slower
    timer, calls = _fake_timer(table)
    model = nn.Sequential(nn.Linear(50, 40), nn.Linear(40, 30), nn.Linear(30, 20))
    masks = {"0.weight": torch.rand(40, 50) < 0.05, "1.weight": torch.rand(30, 40) < 0.05,
             "2.weight": torch.rand(20, 30) < 0.9}  # above MAX_DENSITY: dense without measuring
    plan = SparseKernels("auto", timer=timer)
    plan.install(model, _enforcer(model, "prune", masks))
    model.eval()
    with torch.no_grad():
        model(torch.randn(3, 50))  # evaluation before any training step decides nothing
    assert calls == [] and plan.layers["0.weight"].use is None
    model.train()
    model(torch.randn(3, 50)).sum().backward()
    assert calls == ["0.weight", "1.weight"]
    expected = {"forward": True, "grad_input": False, "grad_weight": False}
    assert plan.layers["0.weight"].use == expected and plan.layers["1.weight"].use == expected
    assert plan.layers["2.weight"].use == {"forward": False, "grad_input": False, "grad_weight": False}
    assert plan.summary()["layers"]["2.weight"]["not_measured"] == "density above 0.3"
    record = plan.summary()["layers"]["0.weight"]
    assert record["forward"] == "sparse" and record["grad_weight"] == "dense"
    assert record["measured_ms"]["forward"] == {"dense": 1000.0, "sparse": 500.0}
    # a rebuilt structure (a mask update at the same density) reuses the decision; a resumed run too
    plan.install(model, _enforcer(model, "prune", masks))
    model(torch.randn(3, 50))
    assert calls == ["0.weight", "1.weight"] and plan.layers["0.weight"].use == expected
    resumed = SparseKernels("auto", timer=timer)
    resumed.load_state_dict(json.loads(json.dumps(plan.state_dict())))
    resumed.install(model, _enforcer(model, "prune", masks))
    model(torch.randn(3, 50))
    assert calls == ["0.weight", "1.weight"] and resumed.layers["1.weight"].use == expected
    # frozen layers: only the weight gradient is a candidate
    frozen = SparseKernels("auto", timer=timer)
    frozen.install(model, _enforcer(model, "freeze", masks))
    model(torch.randn(3, 50))
    assert frozen.layers["0.weight"].allowed == ("grad_weight",)
    assert not any(frozen.layers["0.weight"].use.values())  # grad_weight measured slower
    # a sparse dL/dW without a sparse forward must win by 2x (it pays the transposes alone)
    for speedup, expected in ((1.9, False), (2.1, True)):
        timer, _ = _fake_timer({"forward": (1.0, 1.0), "grad_input": (1.0, 1.0), "grad_weight": (speedup, 1.0)})
        alone = SparseKernels("auto", timer=timer)
        alone.install(model, _enforcer(model, "freeze", masks))
        model(torch.randn(3, 50))
        assert alone.layers["0.weight"].use["grad_weight"] is expected


@pytest.mark.parametrize("durations, expected", [
    ({"measured": 3.0, "sparse": 2.0, "dense": 4.0}, "sparse"),
    ({"measured": 3.0, "sparse": 3.5, "dense": 4.0}, "measured"),
    ({"measured": 3.7, "sparse": 3.95, "dense": 4.0}, "dense"),  # within MIN_STEP_SPEEDUP (10%): stay dense
    ({"measured": 3.6, "sparse": 3.95, "dense": 4.0}, "measured"),  # 4.0 / 3.6 = 1.11
])
def test_auto_chooses_its_plan_by_timing_whole_steps(durations, expected):
    """kernels/trial.py: after the products are measured, ROUNDS steps of each distinct plan (rotated
    order); the fastest median wins, a non-dense plan only if 10% faster than dense. RigL's dense-dL/dW
    steps are not timed; the choice is applied, recorded, and a resumed run reuses it untimed."""
    from sparse_exp.kernels import trial

    timer, _ = _fake_timer({"forward": (1.0, 0.5), "grad_input": (1.0, 2.0), "grad_weight": (1.0, 2.0)})
    model = nn.Sequential(nn.Linear(300, 250), nn.Linear(250, 10))  # 75,000 entries: kept-entry SGD at 1%
    masks = {"0.weight": torch.rand(250, 300) < 0.01, "1.weight": torch.rand(10, 250) < 0.5}  # 1: too dense

    def start(state=None):
        kernels = SparseKernels("auto", timer=timer)
        kernels.load_state_dict(state)
        kernels.install(model, _enforcer(model, "prune", masks))
        clock = [0.0]
        kernels._clock = lambda: clock[0]
        return kernels, clock

    def steps(kernels, clock, n, dense_weight_grad=False):
        plans = []
        for _ in range(n):
            kernels.begin_step(dense_weight_grad)
            model(torch.randn(4, 300)).sum().backward()
            plans.append(kernels.plan)
            clock[0] += durations[kernels.plan]
            kernels.end_step()
        return plans

    kernels, clock = start()
    layer = kernels.layers["0.weight"]
    assert steps(kernels, clock, 1) == ["measured"] and layer.measured_use == {  # products measured in step 1
        "forward": True, "grad_input": False, "grad_weight": False}
    assert not kernels.settled and steps(kernels, clock, 2, dense_weight_grad=True) == ["measured", "measured"]
    assert kernels.trial.steps == 0  # RigL's steps with the full dL/dW are not timed
    tried = steps(kernels, clock, 3 * trial.ROUNDS)
    assert tried[:6] == ["measured", "sparse", "dense", "sparse", "dense", "measured"]
    assert sorted(tried) == sorted(trial.PLANS * trial.ROUNDS)
    assert kernels.settled and kernels.plan == expected and steps(kernels, clock, 2) == [expected] * 2
    use = {"measured": {"forward": True, "grad_input": False, "grad_weight": False},
           "sparse": {"forward": True, "grad_input": True, "grad_weight": True},
           "dense": {"forward": False, "grad_input": False, "grad_weight": False}}[expected]
    assert layer.use == use
    assert not any(kernels.layers["1.weight"].use.values())  # above MAX_DENSITY: dense under every plan
    assert (id(layer.module.weight) in kernels.enforcer.kept_index) == (expected != "dense")
    assert ("forward" in layer.module.__dict__) == (expected != "dense")  # dense: the plain forward again
    summary = kernels.summary()
    assert summary["plan"] == expected and summary["step_trial_ms"] == pytest.approx({p: 1e3 * d for p, d in durations.items()})
    resumed, clock = start(json.loads(json.dumps(kernels.state_dict())))
    assert steps(resumed, clock, 2) == ["measured", expected] and resumed.settled and resumed.trial is None


def test_auto_keeps_convolutions_with_huge_columns_dense_unmeasured():
    timer, calls = _fake_timer({"forward": (1.0, 0.1), "grad_input": (1.0, 0.1), "grad_weight": (1.0, 0.1)})
    conv = nn.Conv2d(64, 64, 3, padding=1)
    plan = SparseKernels("auto", timer=timer)
    plan.install(nn.Sequential(conv), _enforcer(nn.Sequential(conv), "prune", {"0.weight": torch.rand(64, 64, 3, 3) < 0.01}))
    kernel = plan.layers["0.weight"]
    plan.decide(kernel, torch.empty(8, 64, 32, 32, device="meta"))  # 8 x 576 x 1024 columns: 18 MB
    assert calls == ["0.weight"] and all(kernel.use.values())
    plan.decide(kernel, torch.empty(128, 64, 32, 32, device="meta"))  # 288 MB of columns
    assert calls == ["0.weight"] and not any(kernel.use.values()) and kernel.unmeasured == "im2col columns of 288 MB"


def test_auto_measures_real_products():
    """The timer itself: a layer at 0.5% density, every product timed dense and sparse."""
    layer = nn.Linear(400, 300)
    plan = _install(nn.Sequential(layer), {"0.weight": torch.rand(300, 400) < 0.005}, "prune", "auto")
    timings = kernel_plan.measure_products(plan.layers["0.weight"], torch.randn(64, 400, requires_grad=True))
    assert set(timings) == {"forward", "grad_input", "grad_weight"}
    assert all(d > 0 and s > 0 for d, s in timings.values())
    # an input without gradient (a first layer): dL/dX is never computed, so it is not timed
    assert set(kernel_plan.measure_products(plan.layers["0.weight"], torch.randn(64, 400))) == {"forward", "grad_weight"}


def test_which_layers_sgd_steps_at_their_kept_entries(kernel_impl):
    """auto: compiled every sparse layer, else layers at <= 5% density of >= 65,536 weights
    (kernel_plan.KEPT_UPDATE_*); on: every sparse layer; never where masked entries change (FreezeNet-WD)
    or without SGD (Adam keeps them dense)."""
    from types import SimpleNamespace

    from sparse_exp.training.optim import build_optimizer

    model = nn.Sequential(nn.Linear(400, 300), nn.Linear(300, 400), nn.Linear(30, 20))  # 120,000 / 120,000 / 600
    masks = {"0.weight": torch.rand(300, 400) < 0.01, "1.weight": torch.rand(400, 300) < 0.1,
             "2.weight": torch.rand(20, 30) < 0.02}
    sgd = SimpleNamespace(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0)
    adam = SimpleNamespace(optimizer="adam", lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    def kept_layers(kernels: str, mode: str, cfg=sgd, decay_frozen: bool = False):
        enforcer = MaskEnforcer({n: p for n, p in model.named_parameters() if n in masks}, Mask(masks), mode, 0.0,
                                decay_frozen)
        plan = SparseKernels(kernels)
        plan.install(model, enforcer)
        build_optimizer(model, enforcer, cfg)
        layers = plan.summary()["layers"]
        return sorted(n for n, r in layers.items() if r.get("update") == "kept entries")

    compiled = kernel_impl == "compiled"  # then also 1.weight (10% dense) and 2.weight (600 weights)
    assert kept_layers("auto", "prune") == (["0.weight", "1.weight", "2.weight"] if compiled else ["0.weight"])
    assert kept_layers("auto", "freeze") == (["0.weight", "1.weight", "2.weight"] if compiled else ["0.weight"])
    assert kept_layers("on", "prune") == ["0.weight", "1.weight", "2.weight"]
    assert kept_layers("on", "freeze", decay_frozen=True) == []  # FreezeNet-WD decays the frozen entries too
    assert kept_layers("on", "prune", adam) == []
    assert kept_layers("off", "prune") == []


def _sgd_steps(kept: bool, mode: str, momentum: float, nesterov: bool, dampening: float, maximize: bool):
    """Three SGD steps of a two-layer model through the enforcer and the optimizer as the trainer runs
    them; with `kept`, layer 0 is in the enforcer's kept_index (the step at its trained entries)."""
    from types import SimpleNamespace

    from sparse_exp.training.optim import build_optimizer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(9, 7), nn.Linear(7, 3), nn.Linear(3, 2))
    masks = {"0.weight": torch.rand(7, 9) < 0.3, "1.weight": torch.rand(3, 7) < 0.5, "2.weight": torch.rand(2, 3) < 0.5}
    enforcer = MaskEnforcer({n: p for n, p in model.named_parameters() if n in masks}, Mask(masks), mode, 0.05)
    cfg = SimpleNamespace(optimizer="sgd", lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=0.05)
    optimizer = build_optimizer(model, enforcer, cfg)
    for group in optimizer.param_groups:
        group.update(dampening=dampening, maximize=maximize)
    enforcer.apply_(optimizer)
    if kept:  # layer 0 with a gradient, layer 2 without one (unused by the forward): both step kept entries only
        for name in ("0.weight", "2.weight"):
            enforcer.kept_index[id(model.get_submodule(name[0]).weight)] = masks[name].reshape(-1).nonzero().squeeze(1)
    history = []
    for step in range(3):
        optimizer.zero_grad(set_to_none=True)
        model[1](torch.relu(model[0](torch.randn(5, 9)))).pow(2).sum().backward()
        enforcer.prepare_gradients()
        optimizer.step()
        history.append([t.detach().clone() for p in model.parameters() for t in
                        [p] + [v for v in optimizer.state[p].values() if isinstance(v, torch.Tensor)]])
    return history


@pytest.mark.parametrize("mode", ["prune", "freeze"])
@pytest.mark.parametrize("momentum, nesterov, dampening, maximize",
                         [(0.9, False, 0.0, False), (0.9, True, 0.0, False), (0.5, False, 0.2, True), (0.0, False, 0.0, False)])
def test_sgd_at_the_kept_entries_equals_the_dense_step(mode, momentum, nesterov, dampening, maximize, kernel_impl):
    """kernels/update.py against the enforcer's fold + torch.optim.SGD over every entry: the same
    parameters and momentum buffers (the first step creates the buffer) after each of three steps
    (compiled, the hook steps the other parameters too: their grads are gone before SGD's own loop)."""
    dense = _sgd_steps(False, mode, momentum, nesterov, dampening, maximize)
    kept = _sgd_steps(True, mode, momentum, nesterov, dampening, maximize)
    for a, b in zip(dense, kept):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            torch.testing.assert_close(y, x, rtol=1e-6, atol=1e-7)
    assert not torch.equal(dense[0][0], dense[2][0])  # the steps did move layer 0


@pytest.mark.parametrize("case", ["linear", "conv_strided"])
def test_a_layer_stepped_at_its_kept_entries_gets_a_sparse_gradient(case, kernel_impl):
    """Where SGD steps a layer at its kept entries, backward hands over dL/dW as a sparse COO tensor
    of those entries (kernels/csr.py), equal to the dense masked gradient; elsewhere it stays dense."""
    torch.manual_seed(0)
    make, shape = LAYERS[case]
    layer = make()
    mask = torch.rand_like(layer.weight) < 0.2
    with torch.no_grad():
        layer.weight.mul_(mask)
    model = nn.Sequential(layer)
    enforcer = _enforcer(model, "prune", {"0.weight": mask})
    plan = SparseKernels("on")
    plan.install(model, enforcer)
    x = torch.randn(shape)
    model(x).square().sum().backward()  # no SGD optimizer has hooked the enforcer yet: dense
    dense, l1 = layer.weight.grad.clone(), enforcer.trained_grad_l1()
    assert not dense.is_sparse and plan.summary()["layers"]["0.weight"]["update"] == "dense"
    enforcer.kept_entry_step = True  # what training/optim.py does for SGD
    layer.weight.grad = None
    model(x).square().sum().backward()
    grad = layer.weight.grad
    assert grad.is_sparse and grad._nnz() == int(mask.sum())
    torch.testing.assert_close(grad.to_dense(), dense, rtol=1e-5, atol=1e-6)
    assert enforcer.trained_grad_l1() == pytest.approx(l1, rel=1e-5)  # Figs. 3.1/3.5b read it at log steps
    assert plan.summary()["layers"]["0.weight"]["update"] == "kept entries"
    model(x).square().sum().backward()  # a second backward before the step: the sum keeps the kept entries' order
    stepped = layer.weight.detach().clone()
    kept_entry_sgd_(torch.optim.SGD([layer.weight], lr=0.5), enforcer)
    torch.testing.assert_close(layer.weight.detach(), stepped - 0.5 * 2 * dense, rtol=1e-5, atol=1e-6)
    layer.weight.grad = None
    plan.dense_weight_grad = True  # a step whose full dL/dW a method reads (RigL): dense
    model(x).square().sum().backward()
    assert not layer.weight.grad.is_sparse and layer.weight.grad[~mask].abs().sum() > 0


def _losses(make_cfg, tmp_path, kernels: str, *overrides):
    """Per-step training losses of a run through the real trainer (running means, logged every step)."""
    session = build_session(make_cfg, tmp_path / kernels, *overrides, f"trainer.sparse_kernels={kernels}",
                            "trainer.log_every=1", "trainer.batch_size=10", "trainer.epochs=6",
                            "trainer.max_steps_per_epoch=34", "trainer.lr=0.01")
    running = []
    session.scalars = lambda values, step: running.append(values["train/loss_running"]) if "train/loss_running" in values else None
    session.method.run(session)
    sums = torch.tensor(running, dtype=torch.float64)
    steps_in_epoch = torch.arange(len(running)) % 34 + 1
    cumulative = sums * steps_in_epoch  # running mean -> the epoch's cumulative sum -> per-step losses
    previous = torch.cat([torch.zeros(1, dtype=torch.float64), cumulative[:-1]]) * (steps_in_epoch > 1)
    return cumulative - previous, session


# The LeNet-5 cases (8 s each) are slow-marked: their convolution products are checked against autograd above
CASES = {
    "snip_lenet300": ("model=lenet300", "method=snip", "method.compression=0.99"),
    "snip_lenet5": ("method=snip", "method.compression=0.98"),
    "freezenet_lenet300": ("model=lenet300", "method=freezenet", "method.compression=0.99"),
    "set_lenet5": ("method=set", "method.compression=0.98", "method.update_every=40"),
    "rigl_lenet300": ("model=lenet300", "method=rigl", "method.compression=0.98", "method.update_every=40"),
    "gmp_lenet300": ("model=lenet300", "method=gmp", "method.compression=0.98", "method.begin_step=20",
                     "method.end_step=160", "method.update_every=20", "method.reference_batch_size=null"),
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.endswith("lenet5") else c for c in sorted(CASES)])
def test_training_on_sparse_kernels_equals_masked_dense_training(make_cfg, tmp_path, case):
    dense, ref = _losses(make_cfg, tmp_path, "off", *CASES[case])
    sparse, run = _losses(make_cfg, tmp_path, "on", *CASES[case])
    assert len(dense) == 204 and not ref.kernels.active
    assert run.kernels.active and run.kernels.installs >= 1
    assert any(any(k.use.values()) for k in run.kernels.layers.values())
    torch.testing.assert_close(sparse, dense, rtol=2e-4, atol=2e-5)
    assert run.mask.sha256() == ref.mask.sha256()  # the same masks, updates (SET/RigL/GMP) included
    if case.startswith(("set", "rigl", "gmp")):
        assert run.kernels.installs > 1  # the structure was rebuilt at the mask updates


def test_training_on_pytorchs_csr_operations_equals_masked_dense_training(make_cfg, tmp_path, monkeypatch):
    """The same 200 steps without the compiled kernels (no C compiler, SPARSE_EXP_NATIVE=0)."""
    monkeypatch.setitem(native._state, "lib", None)
    dense, _ = _losses(make_cfg, tmp_path, "off", *CASES["snip_lenet300"])
    sparse, run = _losses(make_cfg, tmp_path, "on", *CASES["snip_lenet300"])
    assert not run.kernels.summary()["compiled"] and any(any(k.use.values()) for k in run.kernels.layers.values())
    torch.testing.assert_close(sparse, dense, rtol=2e-4, atol=2e-5)


def test_run_records_kernels_in_metrics(run_experiment):
    metrics, _ = run_experiment("model=lenet300", "method=snip", "method.compression=0.99", "trainer.sparse_kernels=auto")
    record = metrics["sparse_kernels"]
    assert record["mode"] == "auto" and set(record["layers"]) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    fc1 = record["layers"]["fc1.weight"]
    assert fc1["density"] < 0.05 and "measured_ms" in fc1
    assert {fc1[p] for p in ("forward", "grad_input", "grad_weight")} <= {"sparse", "dense"}
    # SGD steps fc1 (235,200 entries, about 1% trained) at its kept entries; fc3 (over 5% trained) too where
    # compiled (one call at any density), else densely
    compiled = native.lib() is not None
    fc3 = record["layers"]["fc3.weight"]
    assert fc1["update"] == "kept entries" and fc3["density"] > 0.05
    assert record["compiled"] is compiled and fc3["update"] == ("kept entries" if compiled else "dense")


@pytest.mark.parametrize("override, message", [
    (["trainer.sparse_kernels=fast"], "trainer.sparse_kernels must be one of auto, on, off; got 'fast'"),
    (["trainer.sparse_kernels=on", "trainer.precision=bf16"], "trainer.sparse_kernels=on needs trainer.precision=fp32"),
])
def test_bad_values_stop_before_training(make_cfg, override, message):
    from sparse_exp.config.validate import validate

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate(make_cfg(*override))


@pytest.mark.slow  # `make bench` runs it too
def test_benchmark_reports_every_case_and_checks_the_losses():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_sparse.py"
    proc = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {(c["model"], c["q"], c["mode"]) for c in summary["cases"]} == {
        ("lenet300", 0.99, "prune"), ("lenet5", 0.99, "prune"), ("lenet300", 0.99, "freeze")}
    assert summary["lenet300_q99_speedup"] > 0 and summary["min_auto_speedup"] > 0
    assert summary["compiled"] is (native.lib() is not None)
