"""A dataset folder as a whole: written into a hidden sibling and renamed into place, never
over a dataset unless asked, and recognised by a hash of its contents.

    out/                        the dataset, always whole (or absent)
    .out.partial-<pid>/         a generation in progress (a dead one's is removed by the next)
    .out.old-<pid>/             the dataset being replaced by --regenerate, for a moment

``content_hash`` digests a split's arrays, not the .npz bytes (a zip holds timestamps), so the
same dataset drawn twice has the same hashes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from miniclip.digest import array_digest

SPLIT_FILES = ("train.npz", "val.npz", "test.npz", "heldout.npz")


class DatasetError(ValueError):
    """A dataset folder that cannot be used as it is (missing files, edited, of another version);
    the message says how to regenerate it."""


def regenerate_hint(data_dir) -> str:
    return (f"regenerate it with `python -m miniclip.datasets generate --out {data_dir} "
            "--regenerate` (or pass --regenerate to `python -m miniclip.train`), or point to "
            "another folder")


def content_hash(arrays: dict) -> str:
    """SHA-256 of a split's arrays (names, dtypes, shapes and bytes, in name order): the same
    for the same content, whatever the zip's timestamps."""
    return array_digest(arrays)


DATASET_FILES = ("meta.json", *SPLIT_FILES)


def check_destination(out_dir: Path, regenerate: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir {out_dir} is a file, not a folder")
    present = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if not present:
        return
    foreign = [name for name in present if name not in DATASET_FILES and not name.endswith(".tmp")
               and not name.endswith(".tmp.npz")]
    if foreign:
        raise FileExistsError(f"out_dir {out_dir} holds files that are not a toy dataset's "
                              f"({foreign[:5]}); it is never written over: choose another folder")
    if not regenerate:
        raise FileExistsError(f"out_dir {out_dir} already holds a dataset ({', '.join(present)}); "
                              "it is never written over: use it, choose another folder, or pass "
                              "regenerate=True (--regenerate) to replace it")


def partial_dir(out_dir: Path) -> Path:
    """A fresh hidden sibling to write into; those of dead generations are removed first."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.parent.glob(f".{out_dir.name}.partial-*"),
                  *out_dir.parent.glob(f".{out_dir.name}.old-*")]:
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    return partial


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def move_into_place(partial: Path, out_dir: Path, regenerate: bool = False) -> None:
    """Rename the finished dataset into place; a dataset there before (regenerate) is moved
    aside first and deleted after, so ``out_dir`` is always one whole dataset or absent. One
    that appeared while this one was drawn (another process) is kept unless ``regenerate``."""
    old = None
    if not regenerate and not is_empty_folder(out_dir):
        raise FileExistsError(f"out_dir {out_dir}: another dataset was written there while this "
                              "one was drawn; it is kept, and this one discarded")
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
    os.replace(partial, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def is_empty_folder(path) -> bool:
    """True for a missing folder or one with nothing in it: where a dataset may be generated."""
    path = Path(path)
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def discard(partial: Path) -> None:
    """Remove a generation's partial folder (after a failure: nothing half-written stays)."""
    shutil.rmtree(partial, ignore_errors=True)


def data_identity(meta: dict, data_dir) -> dict:
    """What a checkpoint records about its dataset: enough to recognise it (split sizes and each
    file's content hash) and to preprocess (mean, std)."""
    keys = ("version", "seed", "resolution", "split_sizes", "mean", "std")
    files = {name: info["sha256"] for name, info in (meta.get("files") or {}).items()}
    return {"dir": str(Path(data_dir).resolve()), **{k: meta.get(k) for k in keys},
            "files": files}


def same_dataset(a: dict, b: dict) -> bool:
    """Equal identities, wherever the folder is now."""
    return {k: v for k, v in a.items() if k != "dir"} == {k: v for k, v in b.items() if k != "dir"}


def check_fits_in_memory(counts: dict, resolution: int) -> None:
    """The splits are held in memory as uint8 (N, R, R, 3) before they are written: refuse sizes
    that cannot fit, before drawing for hours. ValueError naming the sizes."""
    need = sum(counts.values()) * resolution * resolution * 3
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not on every system
        return
    if need > have:
        raise ValueError(f"n_train/n_val/n_test/n_heldout {counts} at resolution {resolution} "
                         f"need {need / 2**30:,.1f} GiB of memory; this machine has "
                         f"{have / 2**30:,.1f} GiB")
