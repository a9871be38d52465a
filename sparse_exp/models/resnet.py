"""The ResNet family of Tables A.4-A.8: residual blocks (Fig. A.1a) and bottlenecks (Fig. A.1b).

Module names follow torchvision (conv1, bn1, layer1.0.conv1, ..., downsample.0/1, fc), so the
ImageNet ResNet18 loads into `torchvision.models.resnet18` unchanged and ResNet50 has the same
state-dict keys and shapes as `torchvision.models.resnet50`. All convolutions are bias-free and
followed by BatchNorm (Fig. A.1); only the final Linear has a bias.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from sparse_exp.errors import ConfigError
from sparse_exp.models import MODELS
from sparse_exp.models.base import ModelSpec, declare, spatial_convs


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def projection(cin: int, cout: int, stride: int) -> nn.Sequential:
    """The 1x1 conv (stride s) + BatchNorm shortcut of the first block of a stage."""
    return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Fig. A.1(a): conv3x3(stride s)-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU. The shortcut
    is a projection if s > 1 or cin != cout, else the identity."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = projection(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """Fig. A.1(b): conv1x1(stride s)-BN-ReLU-conv3x3-BN-ReLU-conv1x1-BN, plus the shortcut, then
    ReLU, with cmid = cout / 4 (Table A.7). The stride sits on the FIRST 1x1 conv as in the thesis
    figure (original ResNet v1); torchvision's v1.5 puts it on the 3x3 conv instead."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        cmid = cout // 4
        self.conv1 = conv1x1(cin, cmid, stride)
        self.bn1 = nn.BatchNorm2d(cmid)
        self.conv2 = conv3x3(cmid, cmid)
        self.bn2 = nn.BatchNorm2d(cmid)
        self.conv3 = conv1x1(cmid, cout)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        # The first block of every stage projects (cin != cout there for all of Table A.7).
        self.downsample = projection(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem, four stages `layer1..layer4` of `blocks[i]` blocks with output width `widths[i]` (only
    the first block of a stage strides), global average pooling and a biased Linear classifier.

    `imagenet_stem`: 7x7/2 conv + BN + ReLU + 3x3/2 max-pool (Tables A.5, A.7); otherwise a 3x3/1
    conv + BN + ReLU without pooling (Tables A.4, A.6, A.8). The average pool is adaptive; on the
    final 4x4 (CIFAR/Tiny ImageNet) or 7x7 (ImageNet) map it equals the tables' AvgPool 4 / 7.
    """

    def __init__(
        self,
        block: Callable[[int, int, int], nn.Module],
        in_channels: int,
        stem_width: int,
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        strides: tuple[int, ...],
        num_classes: int,
        imagenet_stem: bool,
    ):
        super().__init__()
        if imagenet_stem:
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(in_channels, stem_width)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if imagenet_stem else nn.Identity()
        cin = stem_width
        for i, (width, n, stride) in enumerate(zip(widths, blocks, strides, strict=True), start=1):
            stage = [block(cin, width, stride)] + [block(width, width, 1) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*stage))
            cin = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def medium_groups(model: nn.Module, exempt: frozenset[str] = frozenset()) -> dict[str, int]:
    """Thesis 5.4.3.1: "one FB for each of the 5 convolutional blocks" - the stem is group 0 and
    every KxK conv of stage `layer<i>` is in group i."""
    return {
        name: int(name[len("layer")]) if name.startswith("layer") else 0
        for name in spatial_convs(model)
        if name not in exempt
    }


def _first_stride(model_name: str, input_shape: tuple[int, int, int]) -> int:
    """Tables A.4, A.6, A.8: the first stage strides by s = H / 32 (1 for 32x32, 2 for 64x64), so the
    last stage always ends on the 4x4 map that AvgPool 4 reduces."""
    _, h, w = input_shape
    if h != w or h not in (32, 64):
        raise ConfigError(f"model '{model_name}' takes 32x32 or 64x64 inputs, got {h}x{w}")
    return h // 32


def _small_resnet(name: str, stem: int, widths: tuple[int, ...], blocks: tuple[int, ...]):
    def build(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        s = _first_stride(name, input_shape)
        model = ResNet(BasicBlock, input_shape[0], stem, widths, blocks, (s, 2, 2, 2), num_classes, False)
        return declare(model, medium_groups=medium_groups(model), classifier_name="fc")

    return build


def build_resnet18_imagenet(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    model = ResNet(BasicBlock, input_shape[0], 64, (64, 128, 256, 512), (2, 2, 2, 2), (1, 2, 2, 2), num_classes, True)
    # Section 5.5 / IP Table A5: the 7x7 stem keeps the standard basis (no FB formulation).
    exempt = frozenset({"conv1"})
    return declare(model, medium_groups=medium_groups(model, exempt), classifier_name="fc", fb_exempt=exempt)


def build_resnet50(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    model = ResNet(Bottleneck, input_shape[0], 64, (256, 512, 1024, 2048), (3, 4, 6, 3), (1, 2, 2, 2), num_classes, True)
    # IP Table A6: here the 7x7 stem IS an (FB) conv, with its own basis (group 0).
    return declare(model, medium_groups=medium_groups(model), classifier_name="fc")


MODELS.register("resnet18")(
    ModelSpec(
        build=_small_resnet("resnet18", 64, (64, 128, 256, 512), (2, 2, 2, 2)),
        input_shapes=((3, 32, 32), (3, 64, 64)),
        table="Table A.4",
        description="ResNet18 for CIFAR-100 (32x32) and Tiny ImageNet (64x64): 3x3 stem, no max-pool",
        notes=(
            "First stage stride s = H/32: 1 for CIFAR-100, 2 for Tiny ImageNet.",
            "11,220,132 parameters for C = 100 at 32x32; 11,275,656 for C = 200 at 64x64 (the stride-2 "
            "first stage adds a 1x1 projection shortcut, Fig. A.1a).",
        ),
    )
)

MODELS.register("resnet34")(
    ModelSpec(
        build=_small_resnet("resnet34", 64, (64, 128, 256, 512), (3, 4, 6, 3)),
        input_shapes=((3, 64, 64), (3, 32, 32)),
        table="Table A.6",
        description="ResNet34 for Tiny ImageNet: 3x3 stem, no max-pool, blocks 3/4/6/3",
        notes=(
            "First stage stride s = H/32 (Table A.6 lists 2 for 64x64 inputs; 1 for 32x32).",
            "21,383,816 parameters for C = 200 at 64x64 (21,379,592 at 32x32: no first-stage projection).",
        ),
    )
)

MODELS.register("wrn18_2")(
    ModelSpec(
        build=_small_resnet("wrn18_2", 128, (128, 256, 512, 1024), (2, 2, 2, 2)),
        input_shapes=((3, 64, 64), (3, 32, 32)),
        table="Table A.8",
        description="Wide-ResNet18-2 for Tiny ImageNet: ResNet18 with every width doubled",
        notes=(
            "First stage stride s = H/32 (2 for 64x64 inputs; 1 for 32x32).",
            "44,874,312 parameters for C = 200 at 64x64 (44,857,672 at 32x32).",
        ),
    )
)

MODELS.register("resnet18_imagenet")(
    ModelSpec(
        build=build_resnet18_imagenet,
        input_shapes=((3, 224, 224),),
        table="Table A.5",
        description="ResNet18 for ImageNet, torchvision's layout and module names",
        notes=(
            "11,689,512 parameters for C = 1000 (= torchvision.models.resnet18; IP Table A2: 11.7M).",
            "The 7x7 stem conv1 is fb_exempt: it keeps the standard basis (section 5.5).",
        ),
    )
)

MODELS.register("resnet50")(
    ModelSpec(
        build=build_resnet50,
        input_shapes=((3, 224, 224),),
        table="Table A.7",
        description="ResNet50 for ImageNet (ResNet v1 bottlenecks), torchvision's module names",
        notes=(
            "Stride on the first 1x1 conv of a bottleneck (Fig. A.1b, ResNet v1); torchvision's "
            "resnet50 (v1.5) strides the 3x3 conv. Same state-dict keys and shapes, different function.",
            "The Linear layer takes 2048 features; Table A.7's '512' is a typo (25.6M parameters need 2048).",
            "25,557,032 parameters for C = 1000 (= torchvision.models.resnet50; IP Table A2: 25.6M).",
            "The 7x7 stem has its own basis (group 0) in the interspace (IP Table A6).",
        ),
        lookalikes=("torchvision.models.resnet50 (v1.5) strides the 3x3 conv of a bottleneck, Table A.7 the first 1x1",),
    )
)
