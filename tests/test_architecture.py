"""The layout is the architecture: the import rules in pyproject.toml hold, no module imports
itself back through others, and no module grows past ~400 lines without saying why.

The rules themselves are import-linter contracts (``[tool.importlinter]`` in pyproject.toml);
docs/architecture.md draws them.
"""

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "miniclip"
MAX_LINES = 400
LONG_REASON = "Longer than 400 lines because"  # what a long module's docstring must say


def test_import_linter_contracts_are_kept():
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command;"
                           " lint_imports_command()"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert "BROKEN" not in proc.stdout and proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "0 broken" in proc.stdout and " kept" in proc.stdout, proc.stdout[-2000:]


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    modules = sorted(graph.modules)
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], [0]

    def visit(start):
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    for module in modules:
        if module not in index:
            visit(module)
    return groups


def test_no_import_cycles():
    graph = grimp.build_graph("miniclip")
    assert import_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for name in ("a", "a.b", "a.c", "a.d"):
        graph.add_module(name)
    graph.add_import(importer="a.b", imported="a.c")
    graph.add_import(importer="a.c", imported="a.b")
    graph.add_import(importer="a.d", imported="a.b")
    assert import_cycles(graph) == [["a.b", "a.c"]]


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_modules_are_short_or_say_why(path):
    text = path.read_text()
    lines = text.count("\n")
    if lines > MAX_LINES:
        head = text[:3000]
        assert LONG_REASON in head, (f"{path.relative_to(ROOT)} has {lines} lines: split it, or say "
                                     f"in its docstring '{LONG_REASON} ...'")


def test_kernels_take_constants_as_arguments():
    """The LayerNorm eps is a model fact: a kernel gets it as an argument, never a default."""
    import inspect

    from miniclip.kernels.numba import ops as numba_ops

    eps = inspect.signature(numba_ops.layernorm_forward).parameters["eps"]
    assert eps.default is inspect.Parameter.empty
