"""LeNet-300-100 (Table A.1) and LeNet-5-Caffe (Table A.2) for MNIST-sized grayscale inputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sparse_exp.models import MODELS
from sparse_exp.models.base import ModelSpec, declare


class LeNet300(nn.Module):
    """Table A.1: the 28x28 image is flattened to 784 values; three biased Linear layers, ReLU between."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = input_shape
        self.fc1 = nn.Linear(c * h * w, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)  # no ReLU on the logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """Table A.2 (LeNet-5-Caffe): two biased 5x5 convs without padding, each followed by ReLU and a
    2x2 max-pool, then Linear 800-500 (ReLU) and Linear 500-C. No BatchNorm anywhere."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = input_shape
        self.conv1 = nn.Conv2d(c, 20, 5)  # 28 -> 24
        self.pool1 = nn.MaxPool2d(2, 2)  # 24 -> 12
        self.conv2 = nn.Conv2d(20, 50, 5)  # 12 -> 8
        self.pool2 = nn.MaxPool2d(2, 2)  # 8 -> 4: the 50x4x4 = 800 features of Table A.2
        side_h, side_w = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(50 * side_h * side_w, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def build_lenet300(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    # No convolutions, hence no filter bases.
    return declare(LeNet300(num_classes, input_shape), medium_groups={}, classifier_name="fc3")


def build_lenet5(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    # Medium sharing: one basis per conv layer (the two 5x5 convs are the only spatial filters).
    return declare(
        LeNet5(num_classes, input_shape), medium_groups={"conv1": 0, "conv2": 1}, classifier_name="fc2"
    )


MODELS.register("lenet300")(
    ModelSpec(
        build=build_lenet300,
        input_shapes=((1, 28, 28),),
        table="Table A.1",
        description="LeNet-300-100: Linear 784-300-100-C with biases and ReLU (MNIST)",
        notes=("266,610 parameters, 266,200 prunable weights for C = 10.",),
    )
)

MODELS.register("lenet5")(
    ModelSpec(
        build=build_lenet5,
        input_shapes=((1, 28, 28),),
        table="Table A.2",
        description="LeNet-5-Caffe: conv5x5(20)-pool-conv5x5(50)-pool-Linear 800-500-C (MNIST)",
        notes=("431,080 parameters, 430,500 prunable weights for C = 10.",),
    )
)
