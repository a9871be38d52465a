"""Weight initialisations: their statistics, and `initialise` being a pure function of the seed."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

import sparse_exp.config.schema  # noqa: F401  (registers the Hydra schemas)
from sparse_exp.models import MODELS
from sparse_exp.models.init import INITS, fans, initialise
from sparse_exp.registry import UnknownName

CONF = Path(__file__).resolve().parents[1] / "conf"

# A large 3x3 conv weight: c_out = 256, c_in = 128, so fan_in = 1152, fan_out = 2304.
SHAPE = (256, 128, 3, 3)
FAN_IN, FAN_OUT = 128 * 9, 256 * 9
XAVIER_STD = math.sqrt(2 / (FAN_IN + FAN_OUT))
KAIMING_STD = math.sqrt(2 / FAN_IN)  # eq. A.67: sqrt(2 / (c_in K^2))


def drawn(scheme: str, shape=SHAPE, seed: int = 0) -> torch.Tensor:
    t = torch.empty(shape)
    INITS.get(scheme)(t, torch.Generator().manual_seed(seed))
    return t


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fans_follow_pytorch_convention():
    assert fans(torch.empty(SHAPE)) == (FAN_IN, FAN_OUT)
    assert fans(torch.empty(500, 1000)) == (1000, 500)  # Linear(1000, 500)


@pytest.mark.parametrize("scheme,std", [("xavier_normal", XAVIER_STD), ("kaiming_uniform", KAIMING_STD),
                                        ("kaiming_normal", KAIMING_STD), ("pm_sigma", XAVIER_STD)])
def test_scheme_statistics(scheme, std):
    t = drawn(scheme)
    assert abs(t.mean().item()) < 0.01 * std
    assert t.std().item() == pytest.approx(std, rel=0.02)


def test_kaiming_uniform_bound_uses_relu_gain():
    t = drawn("kaiming_uniform")
    bound = math.sqrt(6 / FAN_IN)  # sqrt(2) * sqrt(3 / fan_in); PyTorch's default a=sqrt(5) gives sqrt(1 / fan_in)
    assert t.abs().max().item() <= bound
    assert t.abs().max().item() > 0.99 * bound


def test_kaiming_normal_uses_fan_in_of_linear_layers():
    t = drawn("kaiming_normal", shape=(500, 1000))
    assert t.std().item() == pytest.approx(math.sqrt(2 / 1000), rel=0.02)


def test_pm_sigma_is_exactly_plus_minus_sigma():
    t = drawn("pm_sigma")
    sigma = torch.tensor(XAVIER_STD, dtype=torch.float32)
    assert set(t.unique().tolist()) == {-sigma.item(), sigma.item()}
    assert (t > 0).float().mean().item() == pytest.approx(0.5, abs=0.005)  # fair sign


@pytest.mark.parametrize("scheme", INITS.names())
def test_scheme_is_a_function_of_the_generator(scheme):
    assert torch.equal(drawn(scheme, seed=5), drawn(scheme, seed=5))
    assert not torch.equal(drawn(scheme, seed=5), drawn(scheme, seed=6))


def test_unknown_scheme_names_the_valid_ones():
    model = nn.Linear(2, 2)
    with pytest.raises(UnknownName, match="kaiming_normal"):
        initialise(model, "kaiming", 0)


@pytest.mark.parametrize(
    "scheme,name,shape",
    [(s, "lenet5", (1, 28, 28)) for s in INITS.names()] + [("kaiming_uniform", "vgg16", (3, 32, 32))],
)
def test_initialise_depends_only_on_the_seed(scheme, name, shape):
    torch.manual_seed(1)
    a = MODELS.get(name).build(10, shape)
    torch.manual_seed(2)  # different PyTorch default initialisation
    b = MODELS.get(name).build(10, shape)
    b.train()(torch.randn(4, *shape)).sum().backward()  # disturb BatchNorm statistics (VGG)
    initialise(a, scheme, seed=7)
    initialise(b, scheme, seed=7)
    sa, sb = state(a), state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    initialise(b, scheme, seed=7)  # initialising twice changes nothing
    assert all(torch.equal(sa[k], v) for k, v in state(b).items())
    initialise(b, scheme, seed=8)
    sc = state(b)
    for k, v in sa.items():
        if k.endswith("weight") and v.dim() > 1:
            assert not torch.equal(v, sc[k]), k


def test_initialise_biases_batchnorm_and_layer_scale():
    model = MODELS.get("resnet18").build(100, (3, 32, 32))
    model.train()(torch.randn(2, 3, 32, 32))
    initialise(model, "kaiming_normal", seed=0)
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert m.bias is None or not m.bias.any(), name
            fan_in = m.weight[0].numel()
            if m.weight.numel() > 20_000:
                assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05), name
        elif isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert not m.bias.any() and not m.running_mean.any()
            assert torch.equal(m.running_var, torch.ones_like(m.running_var))
            assert m.num_batches_tracked.item() == 0


def test_linear_biases_are_zeroed():
    model = MODELS.get("lenet300").build(10, (1, 28, 28))
    initialise(model, "xavier_normal", seed=0)
    assert all(not m.bias.any() for m in model.modules() if isinstance(m, nn.Linear))
    assert model.fc1.weight.std().item() == pytest.approx(math.sqrt(2 / (784 + 300)), rel=0.02)


def test_values_do_not_depend_on_dtype_or_device():
    a = MODELS.get("lenet5").build(10, (1, 28, 28))
    b = MODELS.get("lenet5").build(10, (1, 28, 28)).double()
    initialise(a, "xavier_normal", 3)
    initialise(b, "xavier_normal", 3)
    assert all(torch.equal(pa.double(), pb) for pa, pb in zip(a.parameters(), b.parameters()))
    if torch.cuda.is_available():
        c = MODELS.get("lenet5").build(10, (1, 28, 28)).cuda()
        initialise(c, "xavier_normal", 3)
        assert all(torch.equal(pa, pc.cpu()) for pa, pc in zip(a.parameters(), c.parameters()))


class SelfInitialising(nn.Module):
    """Stands in for the interspace layer: draws its own parameters from the shared generator."""

    def __init__(self):
        super().__init__()
        self.coefficients = nn.Parameter(torch.empty(8, 4, 9))
        self.inner = nn.Linear(3, 3)  # covered by init_parameters, must not be touched again
        self.calls = []

    def init_parameters(self, weight_init, generator):
        self.calls.append((weight_init, generator))
        weight_init(self.coefficients.data, generator)
        self.inner.weight.data.fill_(5.0)
        self.inner.bias.data.fill_(5.0)


def test_init_parameters_hook_and_shared_generator():
    model = nn.Sequential(nn.Linear(4, 4), SelfInitialising(), nn.Linear(4, 4))
    initialise(model, "kaiming_normal", seed=11)
    (weight_init, generator), = model[1].calls
    assert weight_init is INITS.get("kaiming_normal") and isinstance(generator, torch.Generator)
    assert (model[1].inner.weight == 5).all() and (model[1].inner.bias == 5).all()
    # One generator, module order: the draws continue where the previous module stopped.
    g = torch.Generator().manual_seed(11)
    expected = [torch.empty(4, 4), torch.empty(8, 4, 9), torch.empty(4, 4)]
    for t in expected:
        INITS.get("kaiming_normal")(t, g)
    assert torch.equal(model[0].weight, expected[0])
    assert torch.equal(model[1].coefficients, expected[1])
    assert torch.equal(model[2].weight, expected[2])


def test_module_without_a_rule_is_an_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    with pytest.raises(TypeError, match="LayerNorm"):
        initialise(model, "xavier_normal", 0)


def test_init_yaml():
    expected = {
        "xavier_normal": ("xavier_normal", "standard"), "kaiming_uniform": ("kaiming_uniform", "standard"),
        "kaiming_normal": ("kaiming_normal", "standard"), "pm_sigma": ("pm_sigma", "standard"),
        # Algorithm 5.1: the interspace initialisations, all Kaiming-normal in the spatial representation.
        "standard": ("kaiming_normal", "standard"), "onb": ("kaiming_normal", "onb"),
        "random": ("kaiming_normal", "random"),
    }
    assert sorted(p.stem for p in (CONF / "init").glob("*.yaml")) == sorted(expected)
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        for name, (weights, basis) in expected.items():
            cfg = compose(overrides=[f"+init={name}"]).init
            assert (cfg.name, cfg.weights, cfg.basis) == (name, weights, basis)
            assert cfg.weights in INITS
