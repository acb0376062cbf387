"""Every lesson notebook runs top to bottom, and is stored without outputs.

The notebooks are found by globbing ``lessons/*.ipynb``, so a new lesson is tested as soon as it
is committed. Each runs in a fresh ``python3`` kernel whose working directory is ``lessons/``.
The kernel inherits this process's environment (``NUMBA_CACHE_DIR`` and ``MINICLIP_BPE_PATH``
from conftest.py), with two additions so it runs the same code as the tests: the checkout's root
first on ``PYTHONPATH`` (this checkout's ``miniclip``, installed or not), and the directory of
this Python first on ``PATH`` (the kernel spec launches ``python`` from PATH).

A lesson with exercises (cells tagged ``exercise``, each followed by a cell tagged ``check``;
lessons/README.md) runs twice:

* "solutions": each exercise cell's source is replaced by its section of
  ``lessons/solutions/NN_name.py``; every cell must run and every check pass;
* "learner": as stored, up to its last check cell, errors allowed; every check cell must end in
  ``ExerciseNotDone`` or ``ExerciseIncorrect``, and no cell may raise anything but those and
  ``NotImplementedError``: a starter fails its check cleanly, never as a crash elsewhere.
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
SOLUTIONS = LESSONS / "solutions"
NOTEBOOKS = sorted(LESSONS.glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]
CELL_TIMEOUT_S = 300
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in kernel tracebacks
SECTION = re.compile(r"^# %% exercise: *(\S+) *$", re.MULTILINE)
LEARNER_ERRORS = {"NotImplementedError", "ExerciseNotDone", "ExerciseIncorrect"}


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def exercise_cells(nb):
    return [c for c in nb.cells if "exercise" in tags(c)]


def read_solutions(path):
    """lessons/solutions/NN_name.py -> {exercise id: source}, in file order."""
    text = path.read_text(encoding="utf-8")
    parts = SECTION.split(text)          # [preamble, id1, body1, id2, body2, ...]
    solutions = {}
    for ex_id, body in zip(parts[1::2], parts[2::2], strict=True):
        assert ex_id not in solutions, f"{path.name}: exercise {ex_id!r} twice"
        solutions[ex_id] = expand_uses(body.strip("\n") + "\n")
    return solutions


# ---- solutions that reuse earlier ones (the capstone, lesson 20) ------------------------------
USE = re.compile(r"^# %% use: *(\d\d_[a-z0-9_]+) +(\S+) *$", re.MULTILINE)


def expand_uses(source):
    """Each line '# %% use: NN_name <id>' -> section <id> of solutions/NN_name.py, so that a
    lesson asking for earlier answers (20_capstone) reuses them instead of copying them."""
    def section(match):
        path = SOLUTIONS / f"{match[1]}.py"
        found = read_solutions(path)
        assert match[2] in found, f"{path.name}: no section {match[2]!r} (asked for by a '# %% use:' line)"
        return found[match[2]].rstrip("\n")
    return USE.sub(section, source)


def solutions_path(path):
    return SOLUTIONS / (path.stem + ".py")


def with_exercises(paths):
    return [p for p in paths if exercise_cells(nbformat.read(p, as_version=4))]


def execute(nb, monkeypatch, allow_errors=False):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    monkeypatch.setenv("PATH", os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            allow_errors=allow_errors,
                            resources={"metadata": {"path": str(LESSONS)}})
    failure = None
    try:
        client.execute()
    except CellExecutionError as err:  # carries the failing cell's source and traceback
        failure = ANSI.sub("", str(err))
    return failure


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


@pytest.mark.parametrize("path", with_exercises(NOTEBOOKS), ids=lambda p: p.name)
def test_lesson_exercises_are_well_formed(path):
    """2-4 exercises, each a starter followed by its check, with a solution kept apart; questions
    with hidden answers at the end; links to the previous and next lesson."""
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    ids = []
    for i, cell in enumerate(cells):
        if "exercise" not in tags(cell):
            continue
        ex_id = cell.metadata.get("exercise")
        assert ex_id, f"{path.name} cell {i}: tagged exercise but no metadata 'exercise' id"
        ids.append(ex_id)
        assert "NotImplementedError" in cell.source or re.search(r"^\s+\.\.\.\s*$", cell.source,
                                                                 re.MULTILINE), (
            f"{path.name} exercise {ex_id}: the starter holds no NotImplementedError or `...`")
        following = next((c for c in cells[i + 1:] if c.cell_type == "code"), None)
        assert following is not None and "check" in tags(following), (
            f"{path.name} exercise {ex_id}: the next code cell is not tagged check")
        assert "check_" in following.source
    assert 2 <= len(ids) <= 4, f"{path.name}: {len(ids)} exercises, expected 2-4"
    solutions = read_solutions(solutions_path(path))
    assert sorted(solutions) == sorted(ids), (
        f"{path.name}: exercises {ids}, solutions {list(solutions)} in {solutions_path(path)}")
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "<details>" in text and re.search(r"^## Questions", text, re.MULTILINE), (
        f"{path.name}: no '## Questions' section with answers in <details>")
    n = int(path.name[:2])
    for other in (n - 1, n + 1):
        if any(p.name.startswith(f"{other:02d}_") for p in NOTEBOOKS):
            assert re.search(rf"\(\s*{other:02d}_[a-z0-9_]+\.ipynb\s*\)", text), (
                f"{path.name}: no link to lesson {other:02d}")
    assert re.match(rf"# {n:02d} · ", cells[0].source), f"{path.name}: title is not '# {n:02d} · ...'"


def solved(path):
    nb = nbformat.read(path, as_version=4)
    solutions = read_solutions(solutions_path(path)) if exercise_cells(nb) else {}
    for cell in exercise_cells(nb):
        cell.source = solutions[cell.metadata["exercise"]]
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_lesson_runs(path, monkeypatch):
    """Lessons with exercises run with their solutions filled in; every check must pass."""
    failure = execute(solved(path), monkeypatch)
    if failure is not None:  # outside the except: no chained, colour-coded copy of the error
        pytest.fail(f"{path.name} failed:\n{failure}", pytrace=False)


@pytest.mark.parametrize("path", with_exercises(NOTEBOOKS), ids=lambda p: p.name)
def test_lesson_as_the_learner_gets_it(path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    last_check = max(i for i, c in enumerate(nb.cells) if "check" in tags(c))
    nb.cells = nb.cells[:last_check + 1]
    execute(nb, monkeypatch, allow_errors=True)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        names = {e.ename for e in errors}
        if names - LEARNER_ERRORS:
            tb = ANSI.sub("", "\n".join(errors[0].traceback))[-1500:]
            problems.append(f"cell {i} raised {names}:\n{cell.source[:300]}\n{tb}")
        if "check" in tags(cell) and not names & {"ExerciseNotDone", "ExerciseIncorrect"}:
            problems.append(f"check cell {i} passed (or did not fail cleanly) on the starter:\n"
                            f"{cell.source[:300]}")
    assert not problems, f"{path.name}:\n" + "\n\n".join(problems)
