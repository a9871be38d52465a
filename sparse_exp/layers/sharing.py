"""Filter-basis sharing schemes (section 5.4.3.1, 5.5.3.3): which KxK convolutions share a basis.

`none` is standard spatial training (SP): no convolution gets a basis.
"""
from __future__ import annotations

from sparse_exp.registry import Registry


class SharingScheme:
    name = "base"

    @classmethod
    def validate(cls, cfg) -> None:
        """Raise ConfigError for values of the sharing config this scheme cannot use."""


SHARING_SCHEMES: Registry[type[SharingScheme]] = Registry("sharing scheme")


@SHARING_SCHEMES.register("none")
class NoSharing(SharingScheme):
    name = "none"
