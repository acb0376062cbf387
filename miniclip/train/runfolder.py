"""A run folder and the run's life in it: its default name, its metrics log, and Ctrl-C."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from miniclip.train.args import TrainArgs


class StopRequest:
    """First Ctrl-C: finish the current step, save a checkpoint, stop. Second: stop at once
    (KeyboardInterrupt), keeping the last checkpoint. Only in the main thread."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: finishing this step and saving a checkpoint (Ctrl-C again to quit "
              "without saving)", file=sys.stderr, flush=True)

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: KeyboardInterrupt is caught instead
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False




def default_out_dir(args: TrainArgs) -> Path:
    base = f"runs/{args.model}" + ("" if args.loss == "clip" else f"-{args.loss}")
    path, n = Path(base), 1
    while path.exists() and any(path.iterdir()):
        n += 1
        path = Path(f"{base}-{n}")
    return path


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def format_duration(seconds: float) -> str:
    """72.4 -> '1m12s'; 9.25 -> '9.2s'."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"
