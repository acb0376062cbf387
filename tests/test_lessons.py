"""Every lesson notebook runs top to bottom, and is stored without outputs.

The notebooks are found by globbing ``lessons/*.ipynb``, so a new lesson is tested as soon as it
is committed. Each runs in a fresh ``python3`` kernel whose working directory is ``lessons/``.
The kernel inherits this process's environment (``NUMBA_CACHE_DIR`` and ``MINICLIP_BPE_PATH``
from conftest.py), with two additions so it runs the same code as the tests: the checkout's root
first on ``PYTHONPATH`` (this checkout's ``miniclip``, installed or not), and the directory of
this Python first on ``PATH`` (the kernel spec launches ``python`` from PATH).
"""

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]
CELL_TIMEOUT_S = 300
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in kernel tracebacks


def test_lessons_exist():
    assert NOTEBOOKS, f"no notebooks found in {LESSONS}"
    for path in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), (
            f"lesson file names look like NN_name.ipynb, got {path.name}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_lesson_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} have outputs or execution counts; "
                       "store the notebook cleared (e.g. jupyter nbconvert --clear-output)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_lesson_runs(path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    monkeypatch.setenv("PATH", os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(LESSONS)}})
    failure = None
    try:
        client.execute()
    except CellExecutionError as err:  # carries the failing cell's source and traceback
        failure = ANSI.sub("", str(err))
    if failure is not None:  # outside the except: no chained, colour-coded copy of the error
        pytest.fail(f"{path.name} failed:\n{failure}", pytrace=False)
