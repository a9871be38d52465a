"""Filter-basis sharing schemes (thesis 5.4.3.1, 5.5.3.3): which KxK convolutions share a basis.

A scheme turns a model into a *plan*: for every KxK convolution (K > 1) that gets a filter basis,
a `BasisUse` naming the basis (its key in `model.fb_bases`) and how the layer splits its filters
over bases. Convolutions listed in the model's `fb_exempt` and 1x1 convolutions keep the standard
basis, i.e. stay ordinary convolutions (section 5.5).

* `none`   standard spatial training (SP): no convolution gets a basis.
* `coarse` one basis for all KxK filters of the network - one per kernel size, since 3x3 and 7x7
           filters cannot share one (Tables A.3, A.5).
* `medium` one basis per group of the model's `medium_groups` (VGG-16: layers (1,2), (3,4),
           (5,6,7), (8,9,10), (11,12,13); ResNets: stem + 4 stages; Tables A.3, A.5, A.7).
* `fine`   one basis per layer.
* `in_nc`  one basis per `nc` neighbouring input channels of a layer, starting at channel 1
           (section 5.5.3.3); `nc` >= c_in gives one basis for the layer, i.e. fine sharing.
* `out_nc` the same over output channels; the basis-first FLOP overhead is multiplied by
           ceil(c_out / nc).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from sparse_exp.errors import ConfigError
from sparse_exp.models.base import spatial_convs
from sparse_exp.registry import Registry


@dataclass(frozen=True)
class BasisUse:
    """How one convolution uses filter bases.

    key:   name of the basis Parameter in `model.fb_bases`
    split: "layer" - one basis for all filters of the layer;
           "in" / "out" - basis g serves input / output channels [g*nc, (g+1)*nc)
    nc:    channels per basis for "in" / "out" (unused for "layer")
    """

    key: str
    split: str = "layer"
    nc: int = 0


def fb_candidates(model: nn.Module) -> list[str]:
    """The KxK convolutions (K > 1) that get a basis, in module order: all of them minus fb_exempt."""
    exempt = getattr(model, "fb_exempt", frozenset())
    return [name for name in spatial_convs(model) if name not in exempt]


def layer_key(name: str) -> str:
    """A module name as a ParameterDict key (no dots allowed there)."""
    return name.replace(".", "_")


def _kernel(model: nn.Module, name: str) -> int:
    return int(max(model.get_submodule(name).kernel_size))


class SharingScheme:
    name = "base"

    @classmethod
    def validate(cls, cfg) -> None:
        """Raise ConfigError for values of the sharing config this scheme cannot use."""
        if cfg.dict_size is not None and cfg.dict_size < 1:
            raise ConfigError(f"sharing.dict_size must be >= 1 (elements n# of the filter dictionary) or null; got {cfg.dict_size}")
        if cfg.nc < 1:
            raise ConfigError(f"sharing.nc must be >= 1 (channels per filter basis); got {cfg.nc}")

    @classmethod
    def plan(cls, model: nn.Module, nc: int) -> dict[str, BasisUse]:
        """Convolution name -> BasisUse for every convolution that gets a basis, in module order."""
        raise NotImplementedError(f"sharing scheme '{cls.name}' has no plan")


SHARING_SCHEMES: Registry[type[SharingScheme]] = Registry("sharing scheme")


@SHARING_SCHEMES.register("none")
class NoSharing(SharingScheme):
    name = "none"

    @classmethod
    def validate(cls, cfg) -> None:
        super().validate(cfg)
        if cfg.dict_size is not None:
            raise ConfigError("sharing.dict_size needs filter bases; choose sharing=coarse|medium|fine|in_nc|out_nc or leave it null")
        if cfg.basis_weight_decay:
            raise ConfigError("sharing.basis_weight_decay needs filter bases; choose sharing=coarse|medium|fine|in_nc|out_nc")

    @classmethod
    def plan(cls, model: nn.Module, nc: int) -> dict[str, BasisUse]:
        return {}


@SHARING_SCHEMES.register("coarse")
class CoarseSharing(SharingScheme):
    name = "coarse"

    @classmethod
    def plan(cls, model: nn.Module, nc: int) -> dict[str, BasisUse]:
        return {n: BasisUse(f"k{_kernel(model, n)}") for n in fb_candidates(model)}


@SHARING_SCHEMES.register("medium")
class MediumSharing(SharingScheme):
    name = "medium"

    @classmethod
    def plan(cls, model: nn.Module, nc: int) -> dict[str, BasisUse]:
        groups = getattr(model, "medium_groups", None)
        if groups is None:
            raise ValueError(f"{type(model).__name__} declares no medium_groups (models/base.py: declare)")
        names = fb_candidates(model)
        kernels: dict[int, set[int]] = {}
        for n in names:
            kernels.setdefault(groups[n], set()).add(_kernel(model, n))
        plan = {}
        for n in names:
            g = groups[n]
            # A group mixing kernel sizes gets one basis per size (no model of the tables does).
            key = f"g{g}" if len(kernels[g]) == 1 else f"g{g}_k{_kernel(model, n)}"
            plan[n] = BasisUse(key)
        return plan


@SHARING_SCHEMES.register("fine")
class FineSharing(SharingScheme):
    name = "fine"

    @classmethod
    def plan(cls, model: nn.Module, nc: int) -> dict[str, BasisUse]:
        return {n: BasisUse(layer_key(n)) for n in fb_candidates(model)}


class _ChannelSharing(SharingScheme):
    split = "in"

    @classmethod
    def plan(cls, model: nn.Module, nc: int) -> dict[str, BasisUse]:
        plan = {}
        for n in fb_candidates(model):
            conv = model.get_submodule(n)
            channels = conv.in_channels // conv.groups if cls.split == "in" else conv.out_channels
            # One basis per nc neighbouring channels; a single group is plain fine sharing.
            split = cls.split if math.ceil(channels / nc) > 1 else "layer"
            plan[n] = BasisUse(layer_key(n), split, nc if split != "layer" else 0)
        return plan


@SHARING_SCHEMES.register("in_nc")
class InChannelSharing(_ChannelSharing):
    name = "in_nc"
    split = "in"


@SHARING_SCHEMES.register("out_nc")
class OutChannelSharing(_ChannelSharing):
    name = "out_nc"
    split = "out"
