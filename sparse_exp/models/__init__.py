"""Model registry: the exact architectures of Tables A.1-A.8, and `custom` (the user's own, custom.py)."""
from sparse_exp.models.base import ModelSpec, declare, prunable_name, prunable_parameters, spatial_convs
from sparse_exp.registry import Registry

MODELS: Registry[ModelSpec] = Registry("model")

# Importing the architecture modules registers them (they import MODELS from here).
from sparse_exp.models import custom, lenet, resnet, vgg  # noqa: E402,F401
from sparse_exp.models.describe import describe_layers, layer_output_sizes  # noqa: E402
from sparse_exp.models.init import INITS, initialise  # noqa: E402

__all__ = [
    "INITS",
    "MODELS",
    "ModelSpec",
    "declare",
    "describe_layers",
    "initialise",
    "layer_output_sizes",
    "prunable_name",
    "prunable_parameters",
    "spatial_convs",
]
