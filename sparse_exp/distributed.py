"""Several processes, one run: torchrun + DistributedDataParallel, behind a few functions.

    torchrun --nproc_per_node=4 -m sparse_exp model=resnet50 dataset=imagenet method=rigl ...

Under torchrun (WORLD_SIZE > 1) `init()` joins the process group (gloo for CPU tensors, NCCL for
CUDA tensors when CUDA exists) before Hydra composes, and every rank then runs the same run:

* one run dir: rank 0 picks it and broadcasts it (`hydra_overrides`); only rank 0 writes logs,
  metrics, masks, checkpoints and TensorBoard (experiment.run's `is_writer`), the other ranks log
  warnings to the console only (conf/hydra/job_logging/sparse_exp_rank.yaml);
* data: every rank draws the same epoch order; each global batch of `trainer.batch_size` samples is
  cut into `world_size` consecutive slices (sizes differ by at most one) and rank r trains on slice
  r (`data.base.shard_bounds`); `batch_share` weights each rank's mean loss by its share, so DDP's
  average over ranks is the mean over the global batch exactly as in one process; evaluation
  splits val/test the same way and sums loss, correct and count over the ranks;
* the model trains as DistributedDataParallel (`wrap`); everything else (masks, scores,
  checkpoints, evaluation) uses the plain module, which is identical on every rank;
* masks: every rank computes the mask from the same state and data, rank 0's is broadcast (by
  construction) and the sha256 of the installed mask is compared across ranks after the initial
  mask and after every mask update (by check, `agree_on_mask`); a mismatch stops the run.

In one process every function here is a no-op that returns its input unchanged.
"""
from __future__ import annotations

import datetime
import logging
import os
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn

from sparse_exp.errors import ConfigError

log = logging.getLogger("sparse_exp")

# The pattern of conf/config.yaml's hydra.run.dir (outputs/${now:%Y-%m-%d}/${now:%H-%M-%S-%f}).
RUN_DIR_PATTERN = "outputs/%Y-%m-%d/%H-%M-%S-%f"
RANK_LOGGING = "sparse_exp_rank"  # hydra/job_logging option of ranks > 0: console only, no run.log


class MaskMismatchError(RuntimeError):
    """The ranks of one run hold different masks."""


# process group ------------------------------------------------------------------------------
def launched() -> bool:
    """True in a process that torchrun started as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> None:
    """Join the process group of this torchrun job (once)."""
    if not launched() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"  # objects and CPU tensors through gloo, CUDA tensors through NCCL
    else:
        backend = "gloo"
    dist.init_process_group(backend)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def backend() -> Optional[str]:
    return str(dist.get_backend()) if active() else None


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# command line -------------------------------------------------------------------------------
def hydra_overrides(argv: list[str]) -> list[str]:
    """Overrides every rank appends to its command line: one run dir for all ranks (unless the
    user gave hydra.run.dir or resume=), and no run.log file handler on ranks > 0."""
    if not active():
        return []
    given = {}
    for arg in argv:
        if "=" in arg and not arg.startswith("-"):
            key, value = arg.split("=", 1)
            given[key.lstrip("+~")] = value
    extra = []
    if "hydra.run.dir" not in given and given.get("resume", "null") in ("", "null", "None"):
        run_dir = datetime.datetime.now().strftime(RUN_DIR_PATTERN) if is_main() else None
        extra.append(f"hydra.run.dir={broadcast_object(run_dir)}")
    if not is_main() and "hydra/job_logging" not in given:
        extra.append(f"hydra/job_logging={RANK_LOGGING}")
    return extra


# devices and models -------------------------------------------------------------------------
def rank_device(device: torch.device) -> torch.device:
    """cuda:<LOCAL_RANK> for device=auto|cuda under torchrun; one process keeps its device."""
    if not active() or device.type != "cuda":
        return device
    if device.index is not None:
        raise ConfigError(f"device={device} under torchrun would put every rank on one GPU; use device=auto or "
                          "device=cuda (rank r takes cuda:<LOCAL_RANK>) and choose GPUs with CUDA_VISIBLE_DEVICES")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def prepare_model(model: nn.Module, sync_bn: bool) -> nn.Module:
    """BatchNorm statistics over the global batch (trainer.sync_bn) when several ranks train."""
    if sync_bn and active():
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if sync_bn:
        log.info("trainer.sync_bn=true has no effect in a single process")
    return model


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The module the training step runs: DistributedDataParallel under torchrun, else the model."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


@torch.no_grad()
def sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) on every rank: DDP broadcasts them at each training
    forward, so after an epoch's last step each rank holds its own; evaluation and checkpoints need one."""
    if not active():
        return
    for buf in model.buffers():
        dist.broadcast(buf, src=0)


# data and metrics ---------------------------------------------------------------------------
def shard(data) -> None:
    """Give each rank its part of every batch of the run's data (see data.base.shard_bounds)."""
    if not active():
        return
    for name, lockstep in (("train", True), ("val", False), ("test", False)):
        source = getattr(data, name)
        if not hasattr(source, "set_shard"):
            raise ConfigError(f"the {name} data of this dataset cannot be split over ranks (its source has no set_shard)")
        source.set_shard(rank(), world_size(), lockstep=lockstep)
    last = data.train.num_samples % data.train.batch_size
    if 0 < last < world_size() and is_main():
        log.warning(f"WARNING: the last training batch of every epoch has {last} sample(s), fewer than the "
                    f"{world_size()} ranks; it is skipped (choose trainer.batch_size so that this does not happen)")


def batch_share(n_local: int, index: int, num_samples: int, batch_size: int) -> float:
    """world_size * n_local / n_global for batch `index` of an epoch: the factor on this rank's mean
    loss that makes DDP's average over ranks the mean over the global batch (1 for equal slices)."""
    n_global = min(batch_size, num_samples - index * batch_size)
    return world_size() * n_local / n_global


def sum_across_ranks(*values):
    """Each value (number or one-element tensor) summed over the ranks; unchanged in one process."""
    if not active():
        return values
    device = next((v.device for v in values if isinstance(v, torch.Tensor)), torch.device("cpu"))
    t = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values])
    dist.all_reduce(t)
    out = []
    for v, s in zip(values, t.tolist()):
        integral = isinstance(v, int) or (isinstance(v, torch.Tensor) and not v.is_floating_point())
        out.append(int(s) if integral else s)
    return tuple(out)


# masks --------------------------------------------------------------------------------------
def agree_on_mask(mask, where: str):
    """(rank 0's mask, whether every rank had computed that same mask itself).

    By construction: rank 0's mask is broadcast and installed everywhere (GPU scoring kernels need
    not be bit-for-bit deterministic across devices). By check: the sha256 of the installed mask is
    compared across ranks; a mismatch raises MaskMismatchError naming `where`. A rank whose own
    computation differed from rank 0's is reported in the log."""
    if not active():
        return mask, True
    computed = mask.sha256()
    flat = torch.cat([m.reshape(-1) for m in mask.masks.values()]).to(torch.uint8)
    dist.broadcast(flat, src=0)
    agreed = type(mask).from_flat(flat.bool(), mask.masks)
    check_same(agreed.sha256(), where)
    hashes = gather(computed)
    same = len(set(hashes)) == 1
    if not same and is_main():
        differing = ", ".join(f"rank {r} {h[:12]}" for r, h in enumerate(hashes) if h != hashes[0])
        log.warning(f"WARNING: {where}: {differing} computed a different mask than rank 0 ({hashes[0][:12]}); "
                    "every rank uses rank 0's")
    return agreed, same


def gather(obj: Any) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not active():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def check_same(digest: str, where: str) -> None:
    """Stop the run with a clear error unless every rank holds the same `digest` (a mask hash)."""
    hashes = gather(digest)
    if len(set(hashes)) > 1:
        listing = ", ".join(f"rank {r}: {h[:12]}" for r, h in enumerate(hashes))
        raise MaskMismatchError(f"the ranks hold different masks {where} ({listing}); stopping the run")


def metrics(session) -> dict:
    """metrics.json section of a run of several processes."""
    return {"distributed": {"world_size": world_size(), "backend": backend(), **session.mask_agreement}}


__all__ = [
    "MaskMismatchError", "active", "agree_on_mask", "batch_share", "broadcast_object", "check_same", "gather", "init",
    "hydra_overrides", "is_main", "launched", "metrics", "prepare_model", "rank", "rank_device", "shard", "shutdown",
    "sum_across_ranks", "sync_buffers", "world_size", "wrap",
]
