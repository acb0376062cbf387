"""Where the training metrics go: ``metrics.jsonl`` always (one JSON line per logged step), and
with ``--report-to tensorboard`` also TensorBoard event files in ``RUN/tensorboard/``, written
by ``tensorboardX`` (no torch, no TensorFlow):

    python -m miniclip.train --report-to tensorboard
    tensorboard --logdir runs/toy/tensorboard

Every number of a record becomes a scalar at its step ("loss", "lr", "temperature",
"zeroshot_top1_seen", ...); the final evaluation is written at the last step under "final/".
"""

from __future__ import annotations

import atexit
from numbers import Real

REPORT_TO = ("jsonl", "tensorboard")


class TensorBoardReport:
    def __init__(self, out_dir):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise ValueError("--report-to tensorboard needs tensorboardX: pip install "
                             "'miniclip[logging]'") from e
        self.writer = SummaryWriter(logdir=str(out_dir / "tensorboard"), flush_secs=10)
        atexit.register(self.close)  # tensorboardX writes from a queue: drain it at exit too

    def __call__(self, record: dict, prefix: str = "") -> None:
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, Real) and not isinstance(value, bool):
                self.writer.add_scalar(prefix + key, float(value), step)

    def close(self) -> None:
        """Write what is queued and close the file (``finish`` calls it; so does exit)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            atexit.unregister(self.close)


def open_report(report_to: str, out_dir):
    """--report-to -> a callable taking each metrics record, or None (JSONL only)."""
    if report_to not in REPORT_TO:
        raise ValueError(f"report_to must be one of {REPORT_TO}, got {report_to!r}")
    return TensorBoardReport(out_dir) if report_to == "tensorboard" else None
