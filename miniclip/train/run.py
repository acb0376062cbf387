"""``Run``: everything a training run holds from one step to the next, and how it is saved."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from miniclip.datasets.folder import data_identity
from miniclip.model.clip import CLIP
from miniclip.model.config import CLIPConfig
from miniclip.pretrained.checkpoint import CHECKPOINT_FILE, save_checkpoint
from miniclip.pretrained.preprocess import Preprocess
from miniclip.text.tokenizer import ModelTokenizer
from miniclip.train.args import TrainArgs
from miniclip.train.data import CurveProbe
from miniclip.train.optim import AdamW


@dataclass
class Run:
    """Everything a run holds from one step to the next."""

    args: TrainArgs
    out_dir: Path
    meta: dict  # the dataset's meta.json
    train_split: object  # miniclip.datasets.Split: uint8 images, captions, labels
    tokens: np.ndarray  # (n_pairs, T) int64: the captions, tokenized once
    tokenizer: ModelTokenizer
    cfg: CLIPConfig
    model: CLIP
    optimizer: AdamW
    preprocess: Preprocess  # ToyPreprocess for the toy world
    aug_rng: np.random.Generator
    total_steps: int
    probe: CurveProbe | None
    log_path: Path
    records: list  # metrics.jsonl's lines so far
    source: object = None  # your own data (train/owndata.py); None: the toy world
    report: object = None  # --report-to tensorboard (train/report.py); None: JSONL only
    step: int = 0
    start_step: int = 0  # the step this process started at (0, or the resumed checkpoint's)
    seconds_before: float = 0.0  # training time of the earlier processes of this run
    precision: object = None  # train.precision.MixedPrecision for --precision bf16/fp16
    world: object = None  # train/distributed.World under --distributed; None: one process
    lock: object = None  # runfolder.RunFolderLock: this process owns out_dir until release
    negatives: object = None  # train/hardneg.HardNegatives with --hard-negatives, else None
    shape_groups: object = None  # train/shapegroups.ShapeGroups with --shape-groups F > 0

    @property
    def is_root(self) -> bool:
        """Whether this process writes (always, but for processes 1.. of a distributed run)."""
        return self.world is None or self.world.is_root

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_FILE

    def save(self, path: Path, seconds: float, with_optimizer: bool = True) -> None:
        """A checkpoint (with the optimizer and RNG state) or the final model (without)."""
        if not self.is_root:
            return
        state = dict(optimizer=self.optimizer.state_dict(),
                     rng_state=self.aug_rng.bit_generator.state) if with_optimizer else {}
        extra = {"train_seconds": seconds}
        if self.source is not None:  # own data: what it is, and how far its stream got
            data, extra["data_position"] = self.meta, self.source.position()
        else:
            data = data_identity(self.meta, self.args.data)
        params = self.model.params
        if self.precision is not None:  # the float32 masters are the weights; the scale too
            params, extra["precision"] = self.precision.master, self.precision.state_dict()
        save_checkpoint(path, self.cfg, params, step=self.step,
                        tokenizer=self.tokenizer.to_dict(), data=data,
                        train_args=asdict(self.args), extra=extra, **state)
