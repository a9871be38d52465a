"""The compiled kernels of native.c, built with the system's C compiler at first use and called via ctypes.

Why: at 1% density a layer's sparse products do little arithmetic, and PyTorch's CSR path spends most of
a step in dispatching its small operations (bench_sparse.py; README, performance). native.c does each
product, the SGD step of a parameter, and the interspace composition W = beta F and its backward, in one call.

The shared library is cached under `$SPARSE_EXP_CACHE` (default `$XDG_CACHE_HOME/sparse-exp` or
`~/.cache/sparse-exp`), named by a hash of the source, the compiler and the flags, and written by an atomic
rename, so parallel sweep jobs may build it at once. Without a C compiler, or with `SPARSE_EXP_NATIVE=0`,
`lib()` is None and kernels/csr.py and kernels/update.py use PyTorch's operations (same results up to
float rounding). The kernels run on CPU tensors of float32/float64, one thread (`auto` times them against
the dense products, so with more threads it keeps the dense ones where those are faster).

Flags: -O3 vectorises the loops; -fassociative-math (with -fno-signed-zeros -fno-trapping-math, which it
needs) lets the dot products of `sampled` be summed in vector lanes. Not -ffast-math: in a shared library
it would switch the whole process to flush-to-zero.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import torch

log = logging.getLogger("sparse_exp")

SOURCE = Path(__file__).with_name("native.c")
FLAGS = ["-O3", "-shared", "-fPIC", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", "-fno-signed-zeros",
         "-fassociative-math"]
SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_I64, _PTR, _F64, _INT = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double, ctypes.c_int
SIGNATURES = {
    "csr_mm": [_I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR],
    "sampled": [_I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR],
    "kept_sgd": [_I64, _PTR, _PTR, _PTR, _PTR, _F64, _F64, _F64, _F64, _F64, _INT, _INT, _INT, _INT],
    "rows_mm": [_I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR],
    "rows_sampled": [_I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR],
    "compose": [_I64, _I64, _I64, _PTR, _PTR, _PTR],
    "compose_backward": [_I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR],
}
RETURNS = {"rows_mm": _INT, "rows_sampled": _INT, "compose_backward": _INT}  # 0, or -1 where the kernel's scratch memory was refused

_state: dict = {}  # "lib": the loaded library or None, once tried


def cache_dir() -> Path:
    if os.environ.get("SPARSE_EXP_CACHE"):
        return Path(os.environ["SPARSE_EXP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sparse-exp"


def _compiler() -> Optional[str]:
    """$CC, else gcc, else cc: native.c is GNU C (vector extensions, __builtin_shuffle, target_clones)."""
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def build(directory: Optional[Path] = None) -> Path:
    """Compile native.c (if not cached) and return the library's path; raises if the compiler fails."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found ($CC, gcc or cc)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + version.encode() + " ".join(FLAGS).encode()).hexdigest()[:16]
    directory = cache_dir() if directory is None else Path(directory)
    target = directory / f"native-{key}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        out = Path(tmp) / target.name
        done = subprocess.run([cc, *FLAGS, str(SOURCE), "-o", str(out)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed: {done.stderr.strip()[-500:]}")
        os.replace(out, target)
    return target


def _load(path: Path) -> ctypes.CDLL:
    library = ctypes.CDLL(str(path))
    for name, argtypes in SIGNATURES.items():
        for suffix in SUFFIX.values():
            fn = getattr(library, f"{name}_{suffix}")
            fn.argtypes, fn.restype = argtypes, RETURNS.get(name)
    return library


def lib() -> Optional[ctypes.CDLL]:
    """The loaded kernels, or None where they cannot be built (logged once) or are switched off."""
    if "lib" not in _state:
        _state["lib"] = None
        if os.environ.get("SPARSE_EXP_NATIVE", "1") == "0":
            return None
        try:
            _state["lib"] = _load(build())
        except (OSError, RuntimeError) as err:
            log.info("sparse kernels: compiled kernels unavailable (%s); using PyTorch's CSR operations", err)
    return _state["lib"]


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the compiled kernels can take these tensors: CPU, one float dtype, contiguous.
    (Called a few times per layer and step: kept to plain attribute checks.)"""
    dtype = tensors[0].dtype
    if dtype not in SUFFIX or (_state["lib"] if "lib" in _state else lib()) is None:
        return False
    for t in tensors:
        if not t.is_cpu or t.dtype is not dtype or not t.is_contiguous():
            return False
    return True


def fn(name: str, dtype: torch.dtype):
    return getattr(lib(), f"{name}_{SUFFIX[dtype]}")


def call(name: str, dtype: torch.dtype, *args) -> None:
    """Run a kernel that reports out-of-memory (rows_*, compose_backward) and raise MemoryError if it did."""
    if fn(name, dtype)(*args) != 0:
        raise MemoryError(f"sparse kernels: {name} could not allocate its scratch memory")


def ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()
