"""`trainer.sparse_kernels=auto|on|off`: which layers of a masked network train on sparse kernels.

Masked dense training spends the dense network's arithmetic on every step. For each pruned linear
or convolutional layer (mask mode prune) this module can run the forward product, dL/dX and dL/dW
on the layer's CSR structure instead (kernels/products.py); for a frozen layer (FreezeNet) only
dL/dW, at the trained entries. The parameters, the optimizer, the mask enforcement and everything
the methods see stay as they are: the sparse products compute the same numbers (up to float
rounding) without the multiplications by zero.

* off:  every layer stays dense.
* on:   every eligible layer uses every sparse product it may (tests, experiments with the kernels).
* auto: at the layer's first training step with a new shape and density, each product is timed
        dense and sparse on the step's own input (median of interleaved repetitions), and the sparse
        version is a candidate only if it is at least `MIN_SPEEDUP` (1.25) times faster; layers above
        `MAX_DENSITY` (and convolutions whose im2col columns would exceed `MAX_COLUMNS_MB`) stay
        dense unmeasured. Then whole training steps choose between these measured products, every
        product sparse and plain masked dense (kernels/trial.py), so that auto trains at masked dense
        speed unless a plan was faster in real steps on this machine, layer shape and batch.

With SGD (the papers' optimizer) a layer also *updates* only its trained entries (kernels/update.py:
the weight-decay fold, momentum and step on the nnz values, dL/dW handed over as a sparse tensor) under
`on`, under `auto` with the compiled kernels (kernels/native.py) for every layer on sparse kernels, and
without them where the layer is at most `KEPT_UPDATE_MAX_DENSITY` dense and has at least
`KEPT_UPDATE_MIN_NUMEL` entries (else PyTorch's gathers cost more than the dense update saves).

Masks that change (SET, RigL, GMP, LTH rounds) rebuild the structure at every update
(`install` again); a decision is reused for the same shape and density bucket. A method that reads
the full weight gradient at a step (RigL's regrowth) says so through `Method.needs_dense_gradients`
and gets dense dL/dW in that step.
"""
from __future__ import annotations

import copy
import logging
import math
import statistics
import time
import types
from typing import Callable, Optional

import torch
from torch import nn

from sparse_exp import distributed
from sparse_exp.kernels import native
from sparse_exp.kernels.csr import CSRStructure
from sparse_exp.kernels.products import PRODUCTS, SparseLayerFunction, products_for
from sparse_exp.kernels.trial import PLANS, StepTrial

log = logging.getLogger("sparse_exp")

MODES = ("auto", "on", "off")
# auto: a sparse product must beat the dense one by 25%: timed alone it looks better than inside a step (its
# operands are in cache), and bench_sparse.py showed products chosen at a 10% margin slowing whole steps
MIN_SPEEDUP = 1.25
# auto: a sparse dL/dW without a sparse forward must win by 2x: it then pays the transposes of x and dL/dY
# alone, and inside a step it lost what it won timed alone (bench_sparse.py, FreezeNet LeNet-300 case: 0.90-1.06x)
MIN_SPEEDUP_WEIGHT_GRAD_ALONE = 2.0
MAX_DENSITY = 0.3  # auto: above this density CSR products do not pay on any layer measured (README)
MAX_COLUMNS_MB = 256  # auto: a convolution whose im2col columns would exceed this stays dense unmeasured
REPEATS = 5
# auto without the compiled kernels: a layer's SGD step runs at its trained entries only (kernels/update.py) at
# most this dense and at least this large: measured per step (one thread) gather/scatter at the kept
# entries vs the dense fold + momentum + update in PyTorch operations: 235,200 entries at 1% 54 vs 185 us, at 10%
# 250 vs 135 us; 30,000 entries at 1% 47 vs 47 us
KEPT_UPDATE_MAX_DENSITY = 0.05
KEPT_UPDATE_MIN_NUMEL = 65_536


class LayerKernel:
    """The forward of one layer (installed as the module's `forward`), with its CSR structure and plan."""

    def __init__(self, owner: "SparseKernels", name: str, module: nn.Module, products, structure: CSRStructure,
                 allowed: tuple[str, ...]):
        self.owner, self.name, self.module = owner, name, module
        self.products, self.structure, self.allowed = products, structure, allowed
        self.use: Optional[dict[str, bool]] = None  # product -> sparse?, decided at the first training step
        self.measured: dict[str, tuple[float, float]] = {}
        self.unmeasured = ""  # why auto kept the layer dense without timing it
        self.key: Optional[tuple] = None  # what the decision depends on (shapes, density bucket)
        self.measured_use: Optional[dict[str, bool]] = None  # the products measured faster (plan "measured")
        self.kept_update = False  # whether SGD updates only the trained entries (kernels/update.py)
        self.kept_measured = False  # the kept-entry step of plan "measured" (KEPT_UPDATE_*)
        self.kept_sparse = False  # ... of plan "sparse"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        module = self.module
        if self.use is None:
            if not (module.training and torch.is_grad_enabled()):
                return type(module).forward(module, x)
            self.owner.decide(self, x)
        if not any(self.use.values()):
            return type(module).forward(module, x)
        return SparseLayerFunction.apply(x, module.weight, module.bias, self)

    def __deepcopy__(self, memo):
        # A copy of the model (SynFlow's scoring copy, the spatial export) gets the plain forward.
        copy_of_module = memo.get(id(self.module)) or copy.deepcopy(self.module, memo)
        return types.MethodType(type(copy_of_module).forward, copy_of_module)

    def set_plan(self, use: dict[str, bool], kept: bool, final: bool = False) -> None:
        """Run the products of `use` sparsely and SGD at the kept entries if `kept`; a `final` plan
        without sparse products restores the module's plain forward (no indirection per call)."""
        self.use, self.kept_update = dict(use), kept
        kept_index, pid = self.owner.enforcer.kept_index, id(self.module.weight)
        if kept:
            kept_index[pid] = self.structure.index
        else:
            kept_index.pop(pid, None)
        if any(use.values()) or not final:
            self.module.forward = self
        elif self.module.__dict__.get("forward") is self:
            del self.module.forward

    def sparse_grad(self) -> bool:
        """Whether dL/dW leaves backward as a sparse COO tensor: where the optimizer steps this layer
        at its kept entries (SGD, kernels/update.py) and nothing else reads the gradient in between
        (DDP's all-reduce buckets want dense gradients)."""
        return self.kept_update and self.owner.enforcer.kept_entry_step and not self.owner.distributed

    def record(self, kept_entry_step: bool) -> dict:
        out = {"layer": type(self.module).__name__, "density": self.structure.density,
               "update": "kept entries" if self.kept_update and kept_entry_step else "dense"}
        for product in PRODUCTS:
            out[product] = "sparse" if self.use and self.use.get(product) else "dense"
        if self.unmeasured:
            out["not_measured"] = self.unmeasured
        if self.measured:
            out["measured_ms"] = {p: {"dense": 1e3 * d, "sparse": 1e3 * s} for p, (d, s) in self.measured.items()}
        return out


def _clock(x: torch.Tensor) -> Callable[[], float]:
    """CPU time of this process when torch runs one thread on the CPU (other processes on the machine
    then cannot distort the comparison); wall time otherwise (several threads, a GPU)."""
    return time.process_time if not x.is_cuda and torch.get_num_threads() == 1 else time.perf_counter


def _median_times(fn_dense: Callable, fn_sparse: Callable, sync: Callable, clock: Callable) -> tuple[float, float]:
    """Median seconds of interleaved dense/sparse calls (two warm-ups each); stops early when one
    side is clearly slower (3x), since then the choice is made."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for fn in (fn_dense, fn_sparse, fn_dense, fn_sparse):
        fn()
    for k in range(REPEATS):
        for sparse in ((False, True) if k % 2 == 0 else (True, False)):
            sync()
            t0 = clock()
            (fn_sparse if sparse else fn_dense)()
            sync()
            times[sparse].append(clock() - t0)
        d, s = statistics.median(times[False]), statistics.median(times[True])
        if k >= 1 and (s > 3 * d or d > 3 * s):
            break
    return statistics.median(times[False]), statistics.median(times[True])


class SparseKernels:
    def __init__(self, mode: str = "auto", precision: str = "fp32",
                 timer: Optional[Callable[[LayerKernel, torch.Tensor], dict]] = None):
        if mode not in MODES:
            raise ValueError(f"trainer.sparse_kernels must be one of {', '.join(MODES)}; got '{mode}'")
        self.mode = mode
        self.precision = precision
        self.timer = timer or measure_products
        self.layers: dict[str, LayerKernel] = {}
        self.dense: dict[str, str] = {}  # layer -> why it stays dense
        self.dense_weight_grad = False  # set by the trainer for a step whose dL/dW a method reads in full
        self._decisions: dict[tuple, tuple[dict, dict]] = {}
        self.distributed = False
        self.trial: Optional[StepTrial] = None  # auto: whole steps choosing a plan (kernels/trial.py)
        self.plan = "measured"
        self._timing: Optional[tuple[str, float]] = None
        self._choices: dict[tuple, str] = {}  # plan key -> the plan the trial chose (kept for resumes)
        self._last_trial: Optional[StepTrial] = None
        self.enforcer = None  # of the last install; its optimizer (SGD) may step kept entries only (kernels/update.py)
        self.installs = 0

    @property
    def active(self) -> bool:
        return bool(self.layers)

    # installation -----------------------------------------------------------------------------
    def install(self, model: nn.Module, enforcer) -> None:
        """(Re)build the structure of every eligible layer from the enforcer's mask and mode."""
        self.uninstall()
        self.dense = {}
        self.enforcer = enforcer
        self.distributed = distributed.active()
        self.trial, self.plan = None, "measured"
        enforcer.kept_index.clear()
        if self.mode == "off" or enforcer.mode == "dense":
            return
        self.installs += 1
        for name, mask in enforcer.mask.masks.items():
            module_name, _, param = name.rpartition(".")
            module = model.get_submodule(module_name)
            products, why = products_for(module)
            if products is None or param != "weight":
                self.dense[name] = f"{why or type(module).__name__} (no sparse kernel)"
                continue
            if self.precision != "fp32":
                self.dense[name] = f"precision {self.precision} (sparse kernels are fp32)"
                continue
            structure = CSRStructure(mask)
            if structure.nnz == structure.numel:
                self.dense[name] = "nothing masked"
                continue
            allowed = PRODUCTS if enforcer.mode == "prune" else ("grad_weight",)
            kernel = LayerKernel(self, name, module, products, structure, allowed)
            steps_kept = enforcer.updates_only_trained_entries()  # SGD at the trained entries (kernels/update.py)
            # compiled, the kept-entry step is one call at any density, and a layer it steps leaves the enforcer's
            # passes (bench_sparse.py, LeNet-300-100 at q = 0.99: fc3, 18% dense, kept too: 2.28x against 2.01x)
            compiled = native.usable(module.weight)
            kernel.kept_sparse = steps_kept and (
                self.mode == "on" or structure.density <= KEPT_UPDATE_MAX_DENSITY or compiled)
            kernel.kept_measured = kernel.kept_sparse and (
                self.mode == "on" or structure.numel >= KEPT_UPDATE_MIN_NUMEL or compiled)
            self.layers[name] = kernel
            kernel.set_plan({p: self.mode == "on" and p in allowed for p in PRODUCTS}, kernel.kept_measured)
            if self.mode == "auto":
                kernel.use = None  # decided at the layer's first training step

    def uninstall(self) -> None:
        for kernel in self.layers.values():
            if kernel.module.__dict__.get("forward") is kernel:
                del kernel.module.forward
        self.layers = {}

    # auto -------------------------------------------------------------------------------------
    def decide(self, kernel: LayerKernel, x: torch.Tensor) -> None:
        """auto: the plan of `kernel` for inputs like `x` (timed once per shape and density bucket)."""
        density = kernel.structure.density
        bucket = round(4 * math.log2(max(density, 1e-12)))  # densities within ~19% share a decision
        key = (kernel.products.kind, tuple(kernel.module.weight.shape), tuple(x.shape), kernel.allowed, bucket,
               x.requires_grad)
        columns_mb = kernel.products.columns_mb(x)
        kernel.unmeasured = (f"density above {MAX_DENSITY}" if density > MAX_DENSITY else
                             f"im2col columns of {columns_mb:.0f} MB" if columns_mb > MAX_COLUMNS_MB else "")
        kernel.key = key
        if key in self._decisions:
            kernel.use, kernel.measured = (dict(v) for v in self._decisions[key])
            kernel.measured_use = dict(kernel.use)
            return
        if kernel.unmeasured:
            kernel.use, kernel.measured = {p: False for p in PRODUCTS}, {}
        else:
            kernel.measured = self.timer(kernel, x)
            kernel.use = {p: p in kernel.measured and kernel.measured[p][0] >= MIN_SPEEDUP * kernel.measured[p][1]
                          for p in PRODUCTS}
            if kernel.use["grad_weight"] and not kernel.use["forward"]:
                dense, sparse = kernel.measured["grad_weight"]
                kernel.use["grad_weight"] = dense >= MIN_SPEEDUP_WEIGHT_GRAD_ALONE * sparse
        self._decisions[key] = (dict(kernel.use), dict(kernel.measured))
        kernel.measured_use = dict(kernel.use)
        chosen = [p for p in PRODUCTS if kernel.use[p]]
        timings = ", ".join(f"{p} {1e3 * d:.2f} -> {1e3 * s:.2f} ms" for p, (d, s) in kernel.measured.items())
        detail = f" [{timings}]" if timings else f" [not measured: {kernel.unmeasured}]"
        log.info(f"sparse kernels: {kernel.name} (density {density:.4f}): "
                 f"{'sparse ' + '/'.join(chosen) if chosen else 'dense'}{detail}")

    # auto, whole steps (kernels/trial.py) -------------------------------------------------------
    def begin_step(self, dense_weight_grad: bool = False) -> None:
        """Called by the trainer before a step's forward; `dense_weight_grad` when a method reads the
        step's full dL/dW (RigL). auto: applies the plan this step runs (a trial step is timed)."""
        self.dense_weight_grad = dense_weight_grad
        self._timing = None
        if self.mode != "auto" or not self.layers or any(k.use is None for k in self.layers.values()):
            return  # nothing to choose, or the layers measure their products in this step
        key = self._plan_key()
        if key in self._choices:
            if self.trial is not None or self.plan != self._choices[key]:
                self._apply(self._choices[key], final=True)
                self.trial = None
            return
        if self.trial is None:
            self.trial = StepTrial(self._distinct_plans())
        plan = self.trial.next_plan()
        self._apply(plan)
        if not dense_weight_grad:  # a step with RigL's dense dL/dW is not a typical step
            self._sync()
            self._timing = (plan, self._clock())

    def end_step(self) -> None:
        """Called by the trainer after the optimizer step."""
        if self._timing is None:
            return
        self._sync()
        plan, t0 = self._timing
        self._timing = None
        self.trial.record(plan, self._clock() - t0)
        if self.trial.done:
            choice = self.trial.choice()
            self._choices[self._plan_key()] = choice
            self._apply(choice, final=True)
            self._last_trial, self.trial = self.trial, None
            medians = ", ".join(f"{p} {1e3 * t:.2f} ms" for p, t in self._last_trial.medians().items())
            log.info(f"sparse kernels: whole steps chose plan '{choice}' (median step: {medians})")

    @property
    def settled(self) -> bool:
        """Whether auto has chosen its plan for the current masks (always for on and off)."""
        return self.mode != "auto" or not self.layers or (self.trial is None and all(
            k.use is not None for k in self.layers.values()) and self._choices.get(
            self._plan_key()) == self.plan)

    def _plan_key(self) -> tuple:
        """What a plan choice depends on: every layer's decision key (shapes, density bucket)."""
        return tuple((name, k.key) for name, k in self.layers.items())

    def _assignment(self, plan: str) -> dict[str, tuple[tuple[bool, ...], bool]]:
        """layer -> (sparse? per product, kept-entry step?) under `plan`."""
        out = {}
        for name, k in self.layers.items():
            if plan == "measured":
                use, kept = k.measured_use, k.kept_measured
            elif plan == "sparse":
                use, kept = {p: p in k.allowed and not k.unmeasured for p in PRODUCTS}, k.kept_sparse
            else:
                use, kept = {p: False for p in PRODUCTS}, False
            out[name] = (tuple(use[p] for p in PRODUCTS), kept)
        return out

    def _distinct_plans(self) -> tuple[str, ...]:
        plans, seen = [], []
        for plan in PLANS:
            assignment = self._assignment(plan)
            if assignment not in seen:
                plans.append(plan)
                seen.append(assignment)
        return tuple(plans)

    def _apply(self, plan: str, final: bool = False) -> None:
        for name, (use, kept) in self._assignment(plan).items():
            self.layers[name].set_plan(dict(zip(PRODUCTS, use)), kept, final)
        self.plan = plan

    def _weight(self) -> torch.Tensor:
        return next(iter(self.layers.values())).module.weight

    def _clock(self) -> float:
        return _clock(self._weight())()

    def _sync(self) -> None:
        if self._weight().is_cuda:
            torch.cuda.synchronize(self._weight().device)

    # checkpoints: a resumed run keeps the decisions of the run it continues (the same products,
    # so the same rounding: resume stays exact) -------------------------------------------------
    def state_dict(self) -> dict:
        return {"decisions": [[list(key), use, {p: list(t) for p, t in measured.items()}]
                              for key, (use, measured) in self._decisions.items()],
                "plans": [[list(key), plan] for key, plan in self._choices.items()]}

    def load_state_dict(self, state: Optional[dict]) -> None:
        for key, use, measured in (state or {}).get("decisions", []):
            self._decisions[_tuples(key)] = (dict(use), {p: tuple(t) for p, t in measured.items()})
        for key, plan in (state or {}).get("plans", []):
            self._choices[_tuples(key)] = plan

    # metrics.json -----------------------------------------------------------------------------
    def summary(self) -> dict:
        out = {"mode": self.mode, "installs": self.installs,
               "compiled": bool(self.layers) and native.usable(next(iter(self.layers.values())).module.weight),
               "layers": {**{n: k.record(bool(self.enforcer and self.enforcer.kept_entry_step)) for n, k in self.layers.items()},
                          **{n: {"dense": why} for n, why in self.dense.items()}}}
        if self.mode == "auto" and self.layers:
            out["plan"] = self.plan  # kernels/trial.py
            if self.trial is not None or self._last_trial:
                out["step_trial_ms"] = {p: 1e3 * t for p, t in (self.trial or self._last_trial).medians().items()}
        return out


def _tuples(value):
    """A JSON round trip turns the tuples of a key into lists; this turns them back."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


@torch.no_grad()
def measure_products(kernel: LayerKernel, x: torch.Tensor) -> dict[str, tuple[float, float]]:
    """product -> (dense seconds, sparse seconds) of `kernel`'s allowed products on input `x`."""
    products, structure = kernel.products, kernel.structure
    w = kernel.module.weight.detach()
    timed = [p for p in kernel.allowed if p != "grad_input" or x.requires_grad]  # a first layer needs no dL/dX
    x = x.detach()
    bias = None if kernel.module.bias is None else kernel.module.bias.detach()
    y, _ = products.forward(x, w, bias, structure, False)
    gy = torch.randn_like(y)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    # each sparse product is timed with the layout work it needs (dL/dY^T, the columns of x)
    flat = (lambda s: products.flat_grad(gy, w) if s else None)
    calls = {
        "forward": lambda s: products.forward(x, w, bias, structure, s),
        "grad_input": lambda s: products.grad_input(gy, flat(s), x, w, structure, s),
        "grad_weight": lambda s: products.grad_weight(gy, flat(s), x, w, structure, s, coo=s and kernel.sparse_grad()),
    }
    clock = _clock(x)
    return {p: _median_times(lambda p=p: calls[p](False), lambda p=p: calls[p](True), sync, clock) for p in timed}
