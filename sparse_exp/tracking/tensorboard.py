"""TensorBoard writer of a run (only rank 0 writes; other ranks get a no-op tracker)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

log = logging.getLogger("sparse_exp")


class Tracker:
    """Scalars to TensorBoard under <run>/tb, prefixed with the training phase when there are several."""

    def __init__(self, out_dir: Path, purge_step: int | None = None, enabled: bool = True):
        self.enabled = enabled
        self.prefix = ""
        self._writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run wrote after its last checkpoint.
            self._writer = SummaryWriter(str(Path(out_dir) / "tb"), purge_step=purge_step)

    def set_phase(self, phase: str | None) -> None:
        self.prefix = f"{phase}/" if phase and phase != "train" else ""

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        if self._writer is None:
            return
        for key, value in values.items():
            if value is None:
                continue
            self._writer.add_scalar(self.prefix + key, float(value), step)

    def text(self, tag: str, text: str) -> None:
        if self._writer is not None:
            self._writer.add_text(tag, text)

    def hparams(self, hparams: Mapping[str, object], metrics: Mapping[str, float]) -> None:
        """Final figures in TensorBoard's HParams view (one row per run), so sweeps compare in the browser.

        Only the session summaries are written, not an experiment summary: TensorBoard takes the columns
        of the view from the first experiment summary it finds, so per-run ones would hide every key that
        the first run lacks; without one it builds the union of all runs' hyperparameters."""
        if self._writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hp_summary

        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        metric_vals = {f"hparam/{k}": float(v) for k, v in metrics.items() if v is not None}
        _experiment, session_start, session_end = hp_summary(clean, metric_vals)
        fw = self._writer._get_file_writer()
        fw.add_summary(session_start)
        fw.add_summary(session_end)
        for k, v in metric_vals.items():
            self._writer.add_scalar(k, v)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
