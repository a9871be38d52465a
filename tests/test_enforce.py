"""Pruned weights stay exactly zero and frozen weights bit-identical under SGD with momentum and
weight decay; FreezeNet-WD does shrink frozen weights; regrown weights start at zero."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparse_exp.config.schema import TrainerConfig
from sparse_exp.models import MODELS
from sparse_exp.models.base import prunable_parameters
from sparse_exp.models.init import initialise
from sparse_exp.sparsity.enforce import MaskEnforcer
from sparse_exp.sparsity.mask import Mask
from sparse_exp.training.optim import build_optimizer


def _setup(mode, decay_frozen=False, wd=5e-4):
    model = MODELS.get("lenet5").build(10, (1, 28, 28))
    initialise(model, "xavier_normal", 0)
    params = prunable_parameters(model)
    g = torch.Generator().manual_seed(1)
    mask = Mask({n: torch.rand(p.shape, generator=g) < 0.3 for n, p in params.items()})
    enforcer = MaskEnforcer(params, mask, mode, wd, decay_frozen)
    opt = build_optimizer(model, enforcer, TrainerConfig(weight_decay=wd, momentum=0.9, lr=0.05))
    enforcer.apply_(opt)
    return model, params, mask, enforcer, opt


def _train(model, enforcer, opt, steps=60):
    g = torch.Generator().manual_seed(2)
    for _ in range(steps):
        x = torch.randn(16, 1, 28, 28, generator=g)
        y = torch.randint(10, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        enforcer.prepare_gradients()
        opt.step()


def test_pruned_weights_stay_exactly_zero():
    model, params, mask, enforcer, opt = _setup("prune")
    before = {n: p.detach().clone() for n, p in params.items()}
    _train(model, enforcer, opt)
    for n, p in params.items():
        off = ~mask.masks[n]
        assert torch.count_nonzero(p.detach()[off]) == 0, n
        assert torch.count_nonzero(opt.state[p]["momentum_buffer"][off]) == 0, n
        assert not torch.equal(p.detach()[mask.masks[n]], before[n][mask.masks[n]]), n  # kept ones train


def test_frozen_weights_keep_their_initial_bits():
    model, params, mask, enforcer, opt = _setup("freeze")
    before = {n: p.detach().clone() for n, p in params.items()}
    bias_before = model.fc1.bias.detach().clone()
    _train(model, enforcer, opt)
    for n, p in params.items():
        off = ~mask.masks[n]
        assert torch.equal(p.detach()[off], before[n][off]), n  # bit for bit
        assert torch.count_nonzero(opt.state[p]["momentum_buffer"][off]) == 0
    assert not torch.equal(model.fc1.bias, bias_before)  # biases train


def test_freezenet_wd_shrinks_frozen_weights():
    model, params, mask, enforcer, opt = _setup("freeze", decay_frozen=True, wd=5e-2)
    before = {n: p.detach().clone() for n, p in params.items()}
    _train(model, enforcer, opt, steps=30)
    for n, p in params.items():
        off = ~mask.masks[n]
        assert p.detach()[off].abs().sum() < before[n][off].abs().sum(), n
        # the decay alone acts on frozen entries: p_t = p_0 * (shrink factor), the same for all
        ratio = p.detach()[off] / before[n][off]
        nz = before[n][off] != 0
        assert torch.allclose(ratio[nz], ratio[nz][0].expand_as(ratio[nz]), rtol=1e-4)


def test_mask_update_zeroes_and_regrows_with_zero_state():
    model, params, mask, enforcer, opt = _setup("prune")
    _train(model, enforcer, opt, steps=5)
    name = "fc1.weight"
    new = mask.clone()
    kept = new.masks[name].nonzero()[:10]
    dropped = (~new.masks[name]).nonzero()[:10]
    new.masks[name][tuple(kept.T)] = False
    new.masks[name][tuple(dropped.T)] = True
    enforcer.set_mask(new, opt)
    p = params[name]
    assert torch.count_nonzero(p.detach()[tuple(kept.T)]) == 0  # newly pruned -> 0
    assert torch.count_nonzero(p.detach()[tuple(dropped.T)]) == 0  # regrown start at 0
    assert torch.count_nonzero(opt.state[p]["momentum_buffer"][tuple(dropped.T)]) == 0
    _train(model, enforcer, opt, steps=3)
    assert torch.count_nonzero(p.detach()[tuple(dropped.T)]) > 0  # and then train


def test_dense_mode_is_plain_sgd():
    torch.manual_seed(0)
    model, params, mask, enforcer, opt = _setup("dense")
    assert not enforcer.active and enforcer.decay_in_optimizer()
    decay_groups = [g for g in opt.param_groups if g["weight_decay"] > 0]
    assert sum(len(g["params"]) for g in decay_groups) == len(list(model.parameters()))


def test_optimizer_state_moves_between_mask_modes():
    """An optimizer state saved while dense loads into a pruned training (LTH rewinding)."""
    from sparse_exp.training.optim import configure_decay

    model, params, mask, dense_enf, opt = _setup("dense")
    _train(model, dense_enf, opt, steps=3)
    state = opt.state_dict()
    pruned = MaskEnforcer(params, mask, "prune", 5e-4)
    opt2 = build_optimizer(model, pruned, TrainerConfig(weight_decay=5e-4, momentum=0.9, lr=0.05))
    opt2.load_state_dict(state)
    configure_decay(opt2, pruned, 5e-4)
    pruned.apply_(opt2)
    roles = {g["role"]: g["weight_decay"] for g in opt2.param_groups}
    assert roles == {"decay": 5e-4, "prunable": 0.0, "no_decay": 0.0}
    for n, p in params.items():
        assert torch.count_nonzero(opt2.state[p]["momentum_buffer"][~mask.masks[n]]) == 0


@pytest.mark.parametrize("mode,decay_frozen", [("dense", False), ("prune", False), ("freeze", False), ("freeze", True)])
def test_gradient_flow_counts_the_loss_gradient_of_trained_weights_only(mode, decay_frozen):
    """Figs. 3.1/3.5b: sum |dL/dθ| over trained entries; weight decay (folded into .grad later by
    prepare_gradients) and masked entries do not count."""
    _, params, mask, enforcer, _ = _setup(mode, decay_frozen, wd=0.1)
    for p in params.values():
        p.grad = torch.ones_like(p)
    kept = sum(p.numel() for p in params.values()) if mode == "dense" else mask.kept()
    assert enforcer.trained_grad_l1() == pytest.approx(kept)
    if mode != "dense":  # (dense: SGD applies the decay itself, .grad stays the loss gradient)
        enforcer.prepare_gradients()  # decay now in .grad: the flow read after this would be biased
        assert enforcer.trained_grad_l1() != pytest.approx(kept)


def _small(mode, wd=0.5, decay_frozen=False):
    a = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0, 4.0]))
    b = torch.nn.Parameter(torch.tensor([[0.5, -1.5], [2.5, 1.0]]))
    mask = Mask({"a": torch.tensor([True, False, True, False]), "b": torch.tensor([[False, True], [True, True]])})
    return a, b, MaskEnforcer({"a": a, "b": b}, mask, mode, wd, decay_frozen)


def test_prepare_gradients_by_hand_and_without_a_gradient():
    """g <- (g + wd p) m; a parameter the loss did not reach (grad None) gets a zero gradient first, so its
    kept entries still decay and its masked ones stay put."""
    a, b, enforcer = _small("prune")
    a.grad = torch.tensor([1.0, 1.0, 1.0, 1.0])
    b.grad = None
    enforcer.prepare_gradients()
    assert a.grad.tolist() == [1.5, 0.0, 2.5, 0.0]
    assert b.grad is not None and b.grad.tolist() == [[0.0, -0.75], [1.25, 0.5]]
    a, b, enforcer = _small("prune")
    enforcer.prepare_gradients()  # no gradient at all: decay alone
    assert a.grad.tolist() == [0.5, 0.0, 1.5, 0.0] and b.grad.tolist() == [[0.0, -0.75], [1.25, 0.5]]
    a, b, enforcer = _small("freeze", decay_frozen=True)  # FreezeNet-WD: g m + wd p
    a.grad, b.grad = torch.ones(4), torch.ones(2, 2)
    enforcer.prepare_gradients()
    assert a.grad.tolist() == [1.5, -1.0, 2.5, 2.0] and b.grad.tolist() == [[0.25, 0.25], [2.25, 1.5]]
    a, b, enforcer = _small("dense")
    a.grad = torch.ones(4)
    enforcer.prepare_gradients()  # dense: untouched (the optimizer decays)
    assert a.grad.tolist() == [1.0] * 4 and b.grad is None


def test_layers_stepped_at_their_kept_entries_are_left_to_that_step():
    """Once SGD steps a parameter at its kept entries (kernels/update.py; training/optim.py sets
    kept_entry_step), prepare_gradients leaves it alone - that step folds its decay - and folds the
    others as before. Without the SGD hook the kept_index is ignored."""
    a, b, enforcer = _small("prune")
    enforcer.kept_index[id(a)] = torch.tensor([0, 2])
    a.grad, b.grad = torch.ones(4), torch.ones(2, 2)
    enforcer.prepare_gradients()  # no SGD hook (e.g. Adam): everything folded
    assert a.grad.tolist() == [1.5, 0.0, 2.5, 0.0] and b.grad.tolist() == [[0.0, 0.25], [2.25, 1.5]]
    enforcer.kept_entry_step = True
    a.grad, b.grad = torch.ones(4), torch.ones(2, 2)
    enforcer.prepare_gradients()
    assert a.grad.tolist() == [1.0] * 4 and b.grad.tolist() == [[0.0, 0.25], [2.25, 1.5]]
    enforcer.kept_index[id(b)] = torch.tensor([1, 2, 3])
    a.grad, b.grad = torch.ones(4), None
    enforcer.prepare_gradients()  # every parameter stepped at its kept entries: nothing to do here
    assert a.grad.tolist() == [1.0] * 4 and b.grad is None


def test_gradient_flow_reads_a_sparse_gradient_of_the_trained_entries():
    """Sparse kernels hand over dL/dW as a COO tensor of the trained entries (kernels/csr.py)."""
    a, b, enforcer = _small("prune")
    a.grad = torch.sparse_coo_tensor(torch.tensor([[0, 2]]), torch.tensor([3.0, -4.0]), (4,), check_invariants=True)
    b.grad = torch.full((2, 2), -1.0)
    assert enforcer.trained_grad_l1() == pytest.approx(7.0 + 3.0)  # b: the 3 trained entries
    b.grad = None
    assert enforcer.trained_grad_l1() == pytest.approx(7.0)


def test_decoupled_decay_only_when_everything_asks_for_it():
    """AdamW's p <- p (1 - lr wd) on the trained entries: only with decoupled decay, wd > 0, lr > 0 and a mask."""
    for mode, decoupled, wd, lr in [("prune", True, 0.5, 0.0), ("prune", True, 0.0, 0.1), ("prune", False, 0.5, 0.1),
                                    ("dense", True, 0.5, 0.1)]:
        a, b, enforcer = _small(mode, wd=wd)
        enforcer.decoupled = decoupled
        enforcer.decoupled_decay_(lr)
        assert a.tolist() == [1.0, -2.0, 3.0, 4.0] and b.tolist() == [[0.5, -1.5], [2.5, 1.0]], (mode, decoupled, wd, lr)
    a, b, enforcer = _small("freeze", wd=0.5)
    enforcer.decoupled = True
    enforcer.decoupled_decay_(0.2)  # factor 1 - 0.1 on the trained entries only
    assert a.tolist() == pytest.approx([0.9, -2.0, 2.7, 4.0]) and b.flatten().tolist() == pytest.approx([0.5, -1.35, 2.25, 0.9])


def test_counts_and_gradient_flow_without_gradients():
    a, b, enforcer = _small("prune")
    assert enforcer.trainable_counts() == (5, 8)
    assert enforcer.trained_grad_l1() == 0.0  # no gradient yet
    assert _small("dense")[2].trainable_counts() == (8, 8)


def test_set_mask_zeroes_the_momentum_of_newly_pruned_entries():
    a, b, enforcer = _small("prune")
    opt = torch.optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = torch.ones(4), torch.ones(2, 2)
    enforcer.prepare_gradients()
    opt.step()
    before = opt.state[a]["momentum_buffer"].clone()
    assert before[0] != 0 and before[2] != 0
    new = Mask({"a": torch.tensor([True, False, False, True]), "b": torch.ones(2, 2, dtype=torch.bool)})
    enforcer.set_mask(new, opt)
    buf = opt.state[a]["momentum_buffer"]
    assert buf[2] == 0 and buf[3] == 0 and buf[0] == before[0]  # entry 2 pruned now, 3 regrown
    assert a[2] == 0 and a[3] == 0 and a[0] != 0


def test_freeze_masks_the_decay_unless_freezenet_wd_is_asked_for():
    """decay_frozen defaults to False: a plain freeze enforcer folds the decay in before masking,
    g <- (g + wd p) m, so frozen entries get a zero gradient (FreezeNet-WD, g m + wd p, is opt-in)."""
    a = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    enforcer = MaskEnforcer({"a": a}, Mask({"a": torch.tensor([True, False])}), "freeze", 0.5)
    a.grad = torch.ones(2)
    enforcer.prepare_gradients()
    assert a.grad.tolist() == [1.5, 0.0]  # FreezeNet-WD would give [1.5, -1.0]


@pytest.mark.parametrize("mode,decay_frozen", [("dense", False), ("dense", True), ("prune", False), ("prune", True),
                                               ("freeze", False), ("freeze", True)])
def test_steps_may_skip_the_masked_entries_exactly_where_they_never_move(mode, decay_frozen):
    """updates_only_trained_entries (kernels/plan.py then steps SGD at the trained entries alone) must be
    true exactly where SGD steps with momentum and decay leave every masked entry as it was: pruned (0)
    and plain frozen entries; not FreezeNet-WD's frozen entries (decayed), not a dense run (no mask)."""
    a, b, enforcer = _small(mode, decay_frozen=decay_frozen)
    enforcer.apply_()
    before = {"a": a.detach().clone(), "b": b.detach().clone()}
    opt = torch.optim.SGD([a, b], lr=0.1, momentum=0.9)
    for _ in range(2):
        a.grad, b.grad = torch.ones(4), torch.ones(2, 2)
        enforcer.prepare_gradients()
        opt.step()
    still = all(torch.equal(p.detach()[~enforcer.mask.masks[n]], before[n][~enforcer.mask.masks[n]]) for n, p in (("a", a), ("b", b)))
    assert still == (mode in ("prune", "freeze") and not (mode == "freeze" and decay_frozen))  # the expectation itself
    assert enforcer.updates_only_trained_entries() == still


def test_decoupled_decay_of_a_float64_parameter_uses_the_float64_factor():
    """AdamW's p <- p (1 - lr wd) in the parameter's precision: for float64 entries the factor is the
    float64 1 - lr wd (a factor built in float32 from a bool mask would be off by ~1e-8)."""
    a = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    enforcer = MaskEnforcer({"a": a}, Mask({"a": torch.tensor([True, False, True])}), "prune", 0.5)
    enforcer.decoupled = True
    enforcer.decoupled_decay_(0.2)  # lr wd = 0.1
    assert a.dtype == torch.float64 and a.tolist() == [1.0 * (1 - 0.1), -2.0, 3.0 * (1 - 0.1)]
