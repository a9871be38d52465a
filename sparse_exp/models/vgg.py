"""VGG-16 and VGG-16-LTH for 32x32 CIFAR inputs (Table A.3; IP appendix Table A4)."""
from __future__ import annotations

import torch
from torch import nn

from sparse_exp.models import MODELS
from sparse_exp.models.base import ModelSpec, declare

# Table A.3: 13 convs 3x3/pad 1 with bias + BatchNorm + ReLU; "M" is a 2x2 max-pool with stride 2.
# The layout (and therefore the module names features.0, features.1, ...) is torchvision's vgg16_bn.
CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

# Medium filter-basis sharing (thesis 5.4.3.1): conv layers (1,2), (3,4), (5,6,7), (8,9,10),
# (11,12,13) share one basis each - i.e. one basis per resolution stage between max-pools.
MEDIUM = (0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4)


def make_features(in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_channels
    for v in CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers)


class VGG16(nn.Module):
    """`lth=False`: two Linear 512-512 layers (bias, BatchNorm1d, ReLU) before the Linear 512-C
    classifier. `lth=True` (VGG-16-LTH): those two layers are removed, only Linear 512-C remains."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], lth: bool):
        super().__init__()
        c, h, w = input_shape
        self.features = make_features(c)
        flat = 512 * (h // 32) * (w // 32)  # five 2x2 pools: 32x32 -> 1x1
        if lth:
            self.classifier = nn.Sequential(nn.Linear(flat, num_classes))
        else:
            self.classifier = nn.Sequential(
                nn.Linear(flat, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                nn.Linear(512, num_classes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _build(lth: bool):
    def build(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        model = VGG16(num_classes, input_shape, lth)
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        classifier = f"classifier.{len(model.classifier) - 1}"
        return declare(model, medium_groups=dict(zip(convs, MEDIUM, strict=True)), classifier_name=classifier)

    return build


MODELS.register("vgg16")(
    ModelSpec(
        build=_build(lth=False),
        input_shapes=((3, 32, 32),),
        table="Table A.3",
        description="VGG-16 with BatchNorm and two 512-wide hidden Linear layers (CIFAR-10/100)",
        notes=(
            "15,255,626 parameters for C = 10 (15,301,796 for C = 100); IP appendix Table A2: 15.3M.",
            "Medium sharing: conv layers (1,2), (3,4), (5,6,7), (8,9,10), (11,12,13) (thesis 5.4.3.1).",
        ),
    )
)

MODELS.register("vgg16_lth")(
    ModelSpec(
        build=_build(lth=True),
        input_shapes=((3, 32, 32),),
        table="Table A.3",
        description="VGG-16-LTH: VGG-16 with the two hidden Linear layers removed (lottery tickets)",
        notes=(
            "14,728,266 parameters for C = 10 (14,774,436 for C = 100); IP appendix Table A2: 14.7M.",
            "Medium sharing: conv layers (1,2), (3,4), (5,6,7), (8,9,10), (11,12,13) (thesis 5.4.3.1).",
        ),
    )
)
