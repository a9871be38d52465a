"""The registered architectures against appendix A.2 of the thesis and the IP appendix (Tables A2, A4-A6)."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import torchvision
from hydra import compose, initialize_config_dir
from torch import nn

import sparse_exp.config.schema  # noqa: F401  (registers the Hydra schemas)
from sparse_exp.errors import ConfigError
from sparse_exp.models import (
    MODELS,
    describe_layers,
    layer_output_sizes,
    prunable_parameters,
    spatial_convs,
)

CONF = Path(__file__).resolve().parents[1] / "conf"
CLASSES = {28: 10, 32: 100, 64: 200, 224: 1000}  # MNIST, CIFAR-100, Tiny ImageNet, ImageNet
CASES = [(name, shape) for name in MODELS.names() for shape in MODELS.get(name).input_shapes]


@functools.lru_cache(maxsize=None)
def built(name: str, shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build once per test session (the big ResNets take a second to construct)."""
    torch.manual_seed(0)
    return MODELS.get(name).build(num_classes, shape).eval()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_prunable(model: nn.Module) -> int:
    return sum(p.numel() for p in prunable_parameters(model).values())


@pytest.mark.parametrize("name,shape", CASES, ids=[f"{n}-{s[1]}" for n, s in CASES])
def test_forward_backward(name, shape):
    """Batch of 2 in eval mode; the backward pass only for the main input shape (keeps this fast)."""
    c = CLASSES[shape[1]]
    model = built(name, shape, c)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    if shape != MODELS.get(name).input_shapes[0]:
        with torch.no_grad():
            assert model(x).shape == (2, c)
        return
    model.zero_grad(set_to_none=True)
    out = model(x)
    assert out.shape == (2, c)
    out.square().mean().backward()
    for pname, p in prunable_parameters(model).items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    model.zero_grad(set_to_none=True)


def test_train_mode_batch_of_two():
    """VGG-16 trains on a batch of two (its BatchNorm1d needs batch > 1): every BatchNorm normalises with
    the batch's own statistics (at initialisation, weight 1 and bias 0: outputs of mean 0 per channel),
    updates its running statistics, and every prunable weight gets a finite, non-zero gradient."""
    model = MODELS.get("vgg16").build(10, (3, 32, 32)).train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in norms)
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append((m, o.detach().clone()))) for m in norms]  # before in-place ReLUs
    model(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))).sum().backward()
    for h in hooks:
        h.remove()
    assert len(outputs) == len(norms)
    for m, out in outputs:
        dims = [0] + list(range(2, out.dim()))  # batch (and spatial) dimensions
        torch.testing.assert_close(out.mean(dims), torch.zeros(out.shape[1]), atol=1e-4, rtol=0)
        assert int(m.num_batches_tracked) == 1 and float(m.running_mean.abs().sum()) > 0
    for name, p in prunable_parameters(model).items():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def basic_resnet_params(stem: int, widths, blocks, first_stride: int, c: int) -> int:
    """Parameter count of a Fig. A.1(a) ResNet with a 3x3 stem, from the tables alone: conv weights
    cin*cout*K^2 (no bias), 2*c BatchNorm parameters per conv, projection when s > 1 or cin != cout."""
    total = 3 * stem * 9 + 2 * stem
    cin = stem
    for i, (w, n) in enumerate(zip(widths, blocks)):
        stride = first_stride if i == 0 else 2
        for b in range(n):
            total += cin * w * 9 + 2 * w + w * w * 9 + 2 * w
            if b == 0 and (stride > 1 or cin != w):
                total += cin * w + 2 * w
            cin = w
    return total + cin * c + c


# VGG-16 (Table A.3), C = 10:
#   conv weights 9 * (3*64 + 64*64 + 64*128 + 128*128 + 128*256 + 2*256*256 + 256*512 + 5*512*512)
#              = 9 * 1,634,496 = 14,710,464
#   conv biases 2*64 + 2*128 + 3*256 + 6*512 = 4,224; BatchNorm2d 2 * 4,224 = 8,448
#   final Linear 512*10 + 10 = 5,130
#   vgg16_lth = 14,710,464 + 4,224 + 8,448 + 5,130                                  = 14,728,266
#   vgg16     = vgg16_lth + 2 * (512*512 + 512) + 2 * (2*512) [BatchNorm1d]         = 15,255,626
#   prunable:   vgg16_lth 14,710,464 + 5,120 = 14,715,584; vgg16 + 2*262,144        = 15,239,872
# LeNet-300-100: 784*300 + 300*100 + 100*10 = 266,200 weights + 410 biases          = 266,610
# LeNet-5-Caffe: 20*25 + 50*20*25 + 800*500 + 500*10 = 430,500 weights + 580 biases = 431,080
COUNTS = [
    ("lenet300", (1, 28, 28), 10, 266_610, 266_200),
    ("lenet5", (1, 28, 28), 10, 431_080, 430_500),
    ("vgg16", (3, 32, 32), 10, 15_255_626, 15_239_872),
    ("vgg16_lth", (3, 32, 32), 10, 14_728_266, 14_715_584),
    ("resnet18", (3, 32, 32), 100, basic_resnet_params(64, (64, 128, 256, 512), (2, 2, 2, 2), 1, 100), None),
    ("resnet18", (3, 64, 64), 200, basic_resnet_params(64, (64, 128, 256, 512), (2, 2, 2, 2), 2, 200), None),
    ("resnet34", (3, 64, 64), 200, basic_resnet_params(64, (64, 128, 256, 512), (3, 4, 6, 3), 2, 200), None),
    ("wrn18_2", (3, 64, 64), 200, basic_resnet_params(128, (128, 256, 512, 1024), (2, 2, 2, 2), 2, 200), None),
    ("resnet18_imagenet", (3, 224, 224), 1000, 11_689_512, None),
    ("resnet50", (3, 224, 224), 1000, 25_557_032, None),
]


@pytest.mark.parametrize("name,shape,c,total,prunable", COUNTS, ids=[f"{r[0]}-{r[1][1]}" for r in COUNTS])
def test_parameter_counts(name, shape, c, total, prunable):
    model = built(name, shape, c)
    assert n_params(model) == total
    if prunable is not None:
        assert n_prunable(model) == prunable


def test_small_resnet_counts_pinned():
    # The formula above, evaluated (so a change of the formula cannot go unnoticed).
    assert n_params(built("resnet18", (3, 32, 32), 100)) == 11_220_132
    assert n_params(built("resnet18", (3, 64, 64), 200)) == 11_275_656
    assert n_params(built("resnet34", (3, 64, 64), 200)) == 21_383_816
    assert n_params(built("wrn18_2", (3, 64, 64), 200)) == 44_874_312


def test_counts_match_torchvision():
    assert n_params(built("resnet18_imagenet", (3, 224, 224), 1000)) == n_params(torchvision.models.resnet18())
    assert n_params(built("resnet50", (3, 224, 224), 1000)) == n_params(torchvision.models.resnet50())


@pytest.mark.parametrize(
    "name,shape,millions",
    [("vgg16", (3, 32, 32), 15.3), ("vgg16_lth", (3, 32, 32), 14.7),
     ("resnet18_imagenet", (3, 224, 224), 11.7), ("resnet50", (3, 224, 224), 25.6)],
)
def test_table_a2_rounded_counts(name, shape, millions):
    c = 10 if shape[1] == 32 else 1000  # Table A2: CIFAR-10 and ImageNet
    assert round(n_params(built(name, shape, c)) / 1e6, 1) == millions


def test_resnet18_imagenet_is_torchvision_resnet18():
    ours = built("resnet18_imagenet", (3, 224, 224), 1000)
    ref = torchvision.models.resnet18(num_classes=1000).eval()
    ref.load_state_dict(ours.state_dict())  # strict: identical names and shapes
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


def test_resnet50_torchvision_names_and_v1_stride():
    ours = built("resnet50", (3, 224, 224), 1000)
    torchvision.models.resnet50(num_classes=1000).load_state_dict(ours.state_dict())  # strict
    for i, stride in enumerate((1, 2, 2, 2), start=1):
        block = getattr(ours, f"layer{i}")[0]
        assert block.conv1.stride == (stride, stride)  # Fig. A.1(b): stride on the first 1x1 conv
        assert block.conv2.stride == (1, 1)
        assert block.downsample[0].stride == (stride, stride)
    assert ours.fc.in_features == 2048  # Table A.7's "512" is a typo


def test_vgg_features_are_torchvision_vgg16_bn_features():
    from torchvision.models.vgg import cfgs, make_layers

    ours = built("vgg16", (3, 32, 32), 10)
    ref = make_layers(cfgs["D"], batch_norm=True).eval()
    ref.load_state_dict(ours.features.state_dict())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours.features(x), ref(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,shape", CASES, ids=[f"{n}-{s[1]}" for n, s in CASES])
def test_prunable_parameters_are_conv_and_linear_weights(name, shape):
    model = built(name, shape, CLASSES[shape[1]])
    expected = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert list(prunable_parameters(model)) == expected


@pytest.mark.parametrize("name,shape", CASES, ids=[f"{n}-{s[1]}" for n, s in CASES])
def test_medium_groups_cover_the_spatial_convs(name, shape):
    model = built(name, shape, CLASSES[shape[1]])
    spatial = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1]
    assert spatial_convs(model) == spatial
    assert sorted(model.medium_groups) == sorted(set(spatial) - model.fb_exempt)
    assert model.fb_exempt == (frozenset({"conv1"}) if name == "resnet18_imagenet" else frozenset())
    expected = {"lenet300": set(), "lenet5": {0, 1}, "resnet18_imagenet": {1, 2, 3, 4}}.get(name, set(range(5)))
    assert set(model.medium_groups.values()) == expected
    classifier = dict(model.named_modules())[model.classifier_name]
    last_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert classifier is last_linear


def test_vgg_medium_groups_follow_thesis_5_4_3_1():
    model = built("vgg16", (3, 32, 32), 10)
    convs = spatial_convs(model)
    assert len(convs) == 13
    assert [model.medium_groups[n] for n in convs] == [0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "wrn18_2", "resnet18_imagenet", "resnet50"])
def test_resnet_medium_groups_are_stem_and_stages(name):
    shape = MODELS.get(name).input_shapes[0]
    model = built(name, shape, CLASSES[shape[1]])
    for conv, group in model.medium_groups.items():
        assert group == (int(conv[5]) if conv.startswith("layer") else 0), conv
    assert ("conv1" in model.medium_groups) == (name != "resnet18_imagenet")


@pytest.mark.parametrize(
    "name,shape,c,n3x3,fine_fb_params",
    [("vgg16", (3, 32, 32), 10, 13, 1_053), ("vgg16_lth", (3, 32, 32), 10, 13, 1_053),
     ("resnet18_imagenet", (3, 224, 224), 1000, 16, 1_296), ("resnet50", (3, 224, 224), 1000, 16, 3_697)],
)
def test_table_a2_fine_sharing_basis_parameters(name, shape, c, n3x3, fine_fb_params):
    # Fine sharing: one K^2 x K^2 basis (K^4 numbers) per layer with a basis.
    model = built(name, shape, c)
    convs = dict(model.named_modules())
    assert sum(convs[n].kernel_size == (3, 3) for n in model.medium_groups) == n3x3
    assert sum(convs[n].kernel_size[0] ** 4 for n in model.medium_groups) == fine_fb_params


def test_describe_layers():
    model = built("lenet5", (1, 28, 28), 10)
    assert describe_layers(model) == [
        dict(name="conv1", kind="conv", c_in=1, c_out=20, kernel=5, stride=1, param="conv1.weight", numel=500),
        dict(name="conv2", kind="conv", c_in=20, c_out=50, kernel=5, stride=1, param="conv2.weight", numel=25_000),
        dict(name="fc1", kind="linear", c_in=800, c_out=500, kernel=1, stride=1, param="fc1.weight", numel=400_000),
        dict(name="fc2", kind="linear", c_in=500, c_out=10, kernel=1, stride=1, param="fc2.weight", numel=5_000),
    ]
    model = built("resnet50", (3, 224, 224), 1000)
    rows = {r["name"]: r for r in describe_layers(model)}
    assert [r["param"] for r in rows.values()] == list(prunable_parameters(model))
    assert sum(r["numel"] for r in rows.values()) == n_prunable(model)
    assert rows["conv1"] == dict(
        name="conv1", kind="conv", c_in=3, c_out=64, kernel=7, stride=2, param="conv1.weight", numel=9_408
    )
    assert (rows["layer3.0.conv1"]["stride"], rows["layer3.0.conv2"]["stride"]) == (2, 1)
    assert rows["fc"]["c_in"] == 2048


@pytest.mark.parametrize(
    "name,shape,expected",
    [
        ("lenet5", (1, 28, 28), {"conv1": (24, 24), "conv2": (8, 8), "fc1": (1, 1), "fc2": (1, 1)}),
        ("vgg16", (3, 32, 32), {"features.0": (32, 32), "features.7": (16, 16), "features.40": (2, 2)}),
        ("resnet18", (3, 32, 32), {"conv1": (32, 32), "layer1.0.conv1": (32, 32), "layer4.1.conv2": (4, 4)}),
        ("resnet18", (3, 64, 64), {"conv1": (64, 64), "layer1.0.conv1": (32, 32), "layer1.0.downsample.0": (32, 32),
                                   "layer4.1.conv2": (4, 4)}),
        ("resnet18_imagenet", (3, 224, 224), {"conv1": (112, 112), "layer1.0.conv1": (56, 56),
                                              "layer4.1.conv2": (7, 7), "fc": (1, 1)}),
        ("resnet50", (3, 224, 224), {"layer2.0.conv1": (28, 28), "layer2.0.conv2": (28, 28),
                                     "layer4.2.conv3": (7, 7)}),
    ],
)
def test_layer_output_sizes(name, shape, expected):
    model = built(name, shape, CLASSES[shape[1]])
    sizes = layer_output_sizes(model, shape)
    assert set(sizes) == {n.rsplit(".", 1)[0] for n in prunable_parameters(model)}
    assert {k: sizes[k] for k in expected} == expected


def test_layer_output_sizes_leaves_mode_and_statistics_alone():
    model = MODELS.get("vgg16_lth").build(10, (3, 32, 32)).train()
    model.features[1].eval()  # a mixed state must come back as it was
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    layer_output_sizes(model, (3, 32, 32))
    assert [m.training for m in model.modules()] == [m is not model.features[1] for m in model.modules()]
    assert all(torch.equal(v, stats[k]) for k, v in model.state_dict().items())


def test_small_resnets_reject_other_input_sizes():
    with pytest.raises(ConfigError, match="32x32 or 64x64"):
        MODELS.get("resnet18").build(10, (3, 48, 48))


def test_model_yaml_files_match_registry():
    assert sorted(p.stem for p in (CONF / "model").glob("*.yaml")) == MODELS.names()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        for name in MODELS.names():
            assert compose(overrides=[f"+model={name}"]).model.name == name
