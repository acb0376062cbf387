"""A run folder and the run's life in it: its default name, its owner (a lock), what killed
writes left behind, its metrics log, and Ctrl-C.

A run folder belongs to one process at a time: ``RunFolderLock`` holds an exclusive lock
(``fcntl.flock``) on ``RUN/.lock`` for the whole run, fresh or resumed, and writes its PID there,
so a second ``python -m miniclip.train`` on the same ``--out`` stops at once, naming the owner.
The kernel drops the lock when the process ends, however it ends (kill -9 included), so a lock
never outlives its run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import warnings
from pathlib import Path

from miniclip.cli import UserError
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


LOCK_FILE = ".lock"


class RunFolderBusy(UserError):
    """Another live process owns this run folder."""


class RunFolderLock:
    """An exclusive lock on a run folder, held until ``release()`` (or the process's end).

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> lock = RunFolderLock(folder)
    >>> RunFolderLock(folder)                                   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    miniclip.train.runfolder.RunFolderBusy: run folder ... is in use by process ...
    >>> lock.release(); RunFolderLock(folder).release()
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd = None
        self.made_file = not self.path.exists()  # so that a failed start can leave no trace
        self._before = None if self.made_file else (self.path.read_bytes(), self.path.stat())
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no flock; the run goes unlocked
            warnings.warn("no fcntl on this system: the run folder is not locked", stacklevel=2)
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_pid(self.path)
            raise RunFolderBusy(
                f"run folder {self.folder} is in use by process {holder or '(unknown PID)'}; "
                "wait for it to end (or stop it), or choose another --out") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def release_and_tidy(self, made_folder: bool = False) -> None:
        """Release after a failed start, removing the lock file (and the folder) if this lock
        made them, so that a run that never started leaves the folder as it found it."""
        if self._fd is not None and self.made_file:
            self.path.unlink(missing_ok=True)
        elif self._fd is not None and self._before is not None:  # put the old PID back, as it was
            content, stat = self._before
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, content, 0)
            os.utime(self.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        self.release()
        if made_folder:
            try:
                self.folder.rmdir()  # only if empty
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.release()
        else:  # a failure leaves the folder as it was found, lock file included
            self.release_and_tidy()
        return False

    def __del__(self):
        self.release()


def _read_pid(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text if text.isdigit() else None


# a run's own files, whatever the weights' format (checkpoint.npz, model.safetensors, ...)
RUN_FILES = ("checkpoint.*", "model.*", "metrics.jsonl", "metrics.json", "curves.png",
             "confusion.png", "similarity.png")


def claim_run_folder(folder, fresh: bool, log=print) -> tuple[RunFolderLock, bool]:
    """Lock a run folder for this process -> (lock, whether the folder was made here).

    fresh: a new run, which must not write over another run's files (FileExistsError saying how
    to continue it). Either way the temporary files of killed writes are removed (under the lock,
    so no live writer owns them)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"run folder {folder} is a file, not a folder; choose another "
                                 "--out")
    made_folder = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        lock = RunFolderLock(folder)
    except BaseException:
        if made_folder:
            folder.rmdir()
        raise
    try:
        if fresh:
            taken = sorted({p.name for pattern in RUN_FILES for p in folder.glob(pattern)
                            if p.is_file() and p.stat().st_size > 0  # empty: nothing to lose
                            and not p.name.endswith(".tmp")})
            checkpoints = [name for name in taken if name.startswith("checkpoint.")]
            if taken:
                hint = (f"continue it with --resume {folder / checkpoints[0]}, " if checkpoints
                        else "it has no checkpoint to resume: delete the folder to start over, ")
                raise FileExistsError(f"run folder {folder} already holds a run ({', '.join(taken)})"
                                      f"; {hint}or choose another --out")
        remove_stale_temp_files(folder, log)
    except BaseException:
        lock.release_and_tidy(made_folder)
        raise
    return lock, made_folder


def remove_stale_temp_files(folder, log=print) -> list[Path]:
    """Delete what killed writes left in a run folder: the temporary files of atomic writes
    (``.checkpoint.npz.*.tmp``, ``model.npz.*.tmp``, ``*.tmp``). Call it only while holding the
    folder's lock: then no live writer owns them. -> the paths removed."""
    removed = []
    for path in sorted(Path(folder).glob("*.tmp")) + sorted(Path(folder).glob(".*.tmp")):
        if path.is_file() and path not in removed:
            path.unlink()
            removed.append(path)
    if removed:
        log(f"removed {len(removed)} temporary file(s) left by an interrupted write in "
            f"{folder}: {', '.join(p.name for p in removed)}")
    return removed


def read_jsonl(path, torn_ok: bool = False) -> list[dict]:
    """The records of a JSON-lines file ([] if there is none).

    A last line without its newline is a write that a kill interrupted: with ``torn_ok`` it is
    dropped with a warning, otherwise it is read like the others. Any other unreadable line is a
    ValueError naming the file and the line number."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text(errors="replace")
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
        except ValueError as e:
            torn = number == len(lines) and not text.endswith("\n")
            if torn and torn_ok:
                warnings.warn(f"{path}: dropped its last line, cut short by an interrupted write "
                              f"({line[:40]!r}...)", stacklevel=2)
                continue
            raise ValueError(f"{path}, line {number}: not a JSON object ({e}); remove or fix "
                             "that line") from e
        records.append(record)
    return records


def write_text_atomic(path, text: str) -> None:
    """Replace a file's contents whole: a temporary sibling, then a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def format_duration(seconds: float) -> str:
    """72.4 -> '1m12s'; 9.25 -> '9.2s'."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"
