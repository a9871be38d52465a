"""Method registry. Every module in this package registers its method on import."""
import importlib
import pkgutil

from sparse_exp.methods.base import METHODS, Method, register_method

for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METHODS", "Method", "register_method"]
