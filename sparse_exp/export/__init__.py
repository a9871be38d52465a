"""Compressed model export and storage sizes (the point of FreezeNet: store the trained values, the
mask and one seed), and plain state dicts for use without this package (state_dict.py)."""
from __future__ import annotations

from pathlib import Path

from sparse_exp.export.compressed import export_compressed, load_compressed, read_header
from sparse_exp.export.state_dict import export_run_state_dict, export_state_dict
from sparse_exp.export.storage import storage_report

COMPRESSED = "compressed.npz"


def export_run(session, out_dir: Path, params: dict) -> dict:
    """Export the early-stopping model (best validation accuracy; the last state if there is none)
    with its mask to <run>/compressed.npz and return the storage report for metrics.json."""
    state = session.best_state or {k: v.detach().cpu() for k, v in session.model.state_dict().items()}
    masks = session.best_mask or session.mask.state()
    enforcer = session.enforcer
    from_seed = getattr(session, "weights_from_seed", True)
    size = export_compressed(
        Path(out_dir) / COMPRESSED, session.model, state, masks, enforcer.mode, enforcer.decay_frozen,
        session.cfg, session.data.num_classes, session.data.input_shape, session.init_seed,
        weights_from_seed=from_seed, normalization=getattr(session.data, "normalization", None),
    )
    if enforcer.mode == "freeze" and enforcer.decay_frozen:
        # FreezeNet-WD's frozen weights moved: every parameter is a stored value and nothing comes back
        # from the seed, so the sparse formats hold every non-zero weight (thesis 3.4.1.3: the early-
        # stopping FreezeNet-WD model "is not sparse"), not just the trained ones.
        nonzero = {name: state[name] != 0 for name in masks}
        report = storage_report(params["total"], params["total"], nonzero, "stored")
    elif enforcer.mode == "freeze" and not from_seed:
        # pre-trained frozen weights never came from the seed: they are stored as values
        report = storage_report(params["total"], params["total"], masks, enforcer.mode)
    else:
        report = storage_report(params["total"], params["trainable"], masks, enforcer.mode)
    report["file_kb"] = size / 1024.0
    return report


__all__ = ["COMPRESSED", "export_compressed", "export_run_state_dict", "export_state_dict", "export_run", "load_compressed", "read_header", "storage_report"]
