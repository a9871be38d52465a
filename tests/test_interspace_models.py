"""Every registry model converts to the interspace under every sharing scheme, trains a step with
momentum and weight decay, and keeps its mask; basis parameter counts of Tables A.3-A.7 / Table A2."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparse_exp.layers.interspace import FilterBasisConv2d, fb_layers, to_interspace
from sparse_exp.layers.sharing import SHARING_SCHEMES
from sparse_exp.errors import ConfigError
from sparse_exp.measure.storage import basis_counts, basis_parameters
from sparse_exp.models import MODELS, initialise, prunable_parameters
from sparse_exp.sparsity.enforce import MaskEnforcer
from sparse_exp.sparsity.mask import Mask
from sparse_exp.training.optim import build_optimizer

SCHEMES = [s for s in SHARING_SCHEMES.names() if s != "none"]
# One scheme per model stays in the fast suite (the thesis' choice where it made one, section 5.5).
FAST = {"lenet300": "coarse", "lenet5": "in_nc", "vgg16": "medium", "vgg16_lth": "out_nc", "resnet18": "fine",
        "resnet34": "coarse", "wrn18_2": "medium", "resnet18_imagenet": "coarse", "resnet50": "fine"}
HEAVY = {"wrn18_2", "resnet50"}  # one optimizer step (with momentum and weight decay) instead of two


def sharing(name, nc=16, dict_size=None):
    return SimpleNamespace(name=name, nc=nc, dict_size=dict_size, basis_weight_decay=False)


def smallest_shape(spec) -> tuple[int, int, int]:
    return min(spec.input_shapes, key=lambda s: s[1] * s[2])


def cases():
    for model in (m for m in MODELS.names() if MODELS.get(m).input_shapes):  # the tables' (custom: test_custom.py)
        for scheme in SCHEMES:
            marks = () if FAST[model] == scheme else (pytest.mark.slow,)
            yield pytest.param(model, scheme, marks=marks, id=f"{model}-{scheme}")


@pytest.mark.parametrize("model_name,scheme", list(cases()))
def test_model_converts_trains_and_keeps_its_mask(model_name, scheme):
    spec = MODELS.get(model_name)
    shape = smallest_shape(spec)
    model = spec.build(10, shape)
    exempt, groups = set(model.fb_exempt), dict(model.medium_groups)
    if not groups:  # LeNet-300-100 has no KxK convolution: an interspace run of it is refused, not a no-op
        with pytest.raises(ConfigError, match=f"sharing={scheme}: the model has no KxK convolution"):
            to_interspace(model, sharing(scheme), "standard")
        return
    to_interspace(model, sharing(scheme), "standard")
    initialise(model, "kaiming_normal", 0)
    modules = dict(model.named_modules())
    assert sorted(n for n, _ in fb_layers(model)) == sorted(groups)  # exactly the KxK convs minus fb_exempt
    for name in exempt:
        assert type(modules[name]) is nn.Conv2d  # ResNet18/ImageNet: the 7x7 stem keeps the standard basis
    for name, m in modules.items():
        if isinstance(m, nn.Conv2d):
            assert max(m.kernel_size) == 1 or name in exempt  # 1x1 convolutions stay standard
    params = prunable_parameters(model)
    gen = torch.Generator().manual_seed(1)
    mask = Mask({n: torch.rand(p.shape, generator=gen) < 0.3 for n, p in params.items()})
    enforcer = MaskEnforcer(params, mask, "prune", 5e-4)
    opt = build_optimizer(model, enforcer, SimpleNamespace(weight_decay=5e-4, lr=0.01, momentum=0.9, nesterov=False))
    enforcer.apply_(opt)
    bases_before = {k: p.detach().clone() for k, p in model.fb_bases.items()}
    x = torch.randn(2, *shape, generator=gen)
    y = torch.randint(0, 10, (2,), generator=gen)
    model.train()
    for _ in range(1 if model_name in HEAVY else 2):  # the second step uses the momentum buffer
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        enforcer.prepare_gradients()
        opt.step()
    assert math.isfinite(loss.item())
    for name, p in params.items():
        assert torch.count_nonzero(p.detach()[~mask.masks[name]]) == 0, name
    if bases_before:
        assert any(not torch.equal(bases_before[k], p.detach()) for k, p in model.fb_bases.items())  # bases train


def test_freezing_coefficients_keeps_them_bit_identical_while_bases_train():
    """IP-FreezeNet (section 5.5.6): frozen beta keep their initial values, the basis adapts."""
    model = MODELS.get("lenet5").build(10, (1, 28, 28))
    to_interspace(model, sharing("fine"), "standard")
    initialise(model, "kaiming_normal", 0)
    params = prunable_parameters(model)
    mask = Mask({n: torch.rand(p.shape, generator=torch.Generator().manual_seed(2)) < 0.1 for n, p in params.items()})
    initial = {n: p.detach().clone() for n, p in params.items()}
    enforcer = MaskEnforcer(params, mask, "freeze", 5e-4)
    opt = build_optimizer(model, enforcer, SimpleNamespace(weight_decay=5e-4, lr=0.05, momentum=0.9, nesterov=False))
    basis = model.fb_bases["conv2"].detach().clone()
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.randint(0, 10, (4,))).backward()
        enforcer.prepare_gradients()
        opt.step()
    for n, p in params.items():
        frozen = ~mask.masks[n]
        assert torch.equal(p.detach()[frozen], initial[n][frozen])
    assert not torch.equal(model.fb_bases["conv2"].detach(), basis)


# --- basis parameter counts --------------------------------------------------------------------
def converted(name, scheme, nc=16, dict_size=None):
    spec = MODELS.get(name)
    return to_interspace(spec.build(10, smallest_shape(spec)), sharing(scheme, nc=nc, dict_size=dict_size), "random")


VGG_IN = (3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512)
VGG_OUT = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


@pytest.mark.parametrize("scheme,nc,expected", [
    ("coarse", 1, 81), ("medium", 1, 5 * 81), ("fine", 1, 13 * 81),
    ("in_nc", 64, 81 * sum(math.ceil(c / 64) for c in VGG_IN)),
    ("out_nc", 64, 81 * sum(math.ceil(c / 64) for c in VGG_OUT)),
    ("in_nc", 1, 81 * sum(VGG_IN)), ("out_nc", 512, 13 * 81),  # nc >= channels: fine sharing
])
def test_vgg16_basis_parameters_per_scheme(scheme, nc, expected):
    model = converted("vgg16", scheme, nc)
    assert basis_parameters(model) == expected


def test_table_a2_fine_sharing_basis_parameters():
    """IP Table A2: VGG16 1,053; ResNet18 (ImageNet, 7x7 stem standard) 1,296; ResNet50 (7x7 stem with
    its own basis) 3,697 = 16 * 81 + 49 * 49."""
    assert basis_parameters(converted("vgg16", "fine")) == 1053
    assert basis_parameters(converted("vgg16_lth", "fine")) == 1053
    assert basis_parameters(converted("resnet18_imagenet", "fine")) == 1296
    resnet50 = converted("resnet50", "fine")
    assert basis_parameters(resnet50) == 3697
    assert basis_counts(resnet50)["conv1"] == 49 * 49


def test_resnet_coarse_and_medium_keys():
    r50 = converted("resnet50", "coarse")
    assert basis_counts(r50) == {"k7": 49 * 49, "k3": 81}  # coarse: one basis per kernel size
    assert basis_counts(converted("resnet50", "medium")) == {"g0": 49 * 49, "g1": 81, "g2": 81, "g3": 81, "g4": 81}
    assert basis_counts(converted("resnet18_imagenet", "medium")) == {f"g{i}": 81 for i in range(1, 5)}
    assert basis_parameters(converted("vgg16", "coarse", dict_size=5)) == 5 * 9  # a dictionary of n# = 5 elements


def test_prunable_parameter_of_fb_layers_is_the_coefficient_tensor():
    model = converted("vgg16", "medium")
    params = prunable_parameters(model)
    assert "features.0.coeff" in params and tuple(params["features.0.coeff"].shape) == (64, 3, 9)
    assert "classifier.0.weight" in params
    assert all(isinstance(m, FilterBasisConv2d) for n, m in model.named_modules() if n.startswith("features") and hasattr(m, "coeff"))
