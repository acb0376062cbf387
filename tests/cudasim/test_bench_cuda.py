"""benchmarks/bench_cuda.py runs on tiny shapes in the simulator: its timings mean nothing there,
but every code path it takes on a GPU (kernels, the training-step rows, the copies it counts)
works, so the script is ready for the first machine with a GPU."""

import importlib.util
import sys
from pathlib import Path

import pytest

from miniclip import CONFIGS
from miniclip.kernels.cuda import ops as cuda_backend

from .helpers import use_model_tiles

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(autouse=True, scope="module")
def model_tiles():
    old = use_model_tiles()
    yield
    cuda_backend.configure(**old)


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))  # bench_cuda imports bench_cpu for the PyTorch model
    try:
        spec = importlib.util.spec_from_file_location("bench_cuda", BENCHMARKS / "bench_cuda.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_main_refuses_the_simulator(bench):
    with pytest.raises(SystemExit, match="timings mean nothing"):
        bench.main([])


def test_matmul_and_attention_tables(bench):
    rows = bench.bench_matmul([("t", 5, 3, 7, ("y = x W^T", "dx = dy W", "dW = dy^T x"))], 1)
    assert [r[1] for r in rows] == ["y = x W^T", "dx = dy W", "dW = dy^T x"]
    assert all(float(r[5]) >= 0 for r in rows)  # GFLOP/s (about 0 in the simulator)
    rows = bench.bench_attention([("t", 1, 2, 5, 4, True)], 1)
    assert len(rows) == 1 and float(rows[0][6]) > 0  # ms


def test_training_step_rows_agree_and_count_their_copies(bench):
    rows = bench.bench_training_step(CONFIGS["tiny"], 2, 1, with_torch=False, rows=(
        "cuda, weights on the GPU", "cuda, NumPy weights (copies per op)", "numpy (CPU)"))
    by_label = {r[0]: r for r in rows}
    assert len(by_label) == 3
    losses = {float(r[5]) for r in rows}
    assert max(losses) - min(losses) < 1e-4, rows  # one model, one batch, one loss
    on_gpu, copies = by_label["cuda, weights on the GPU"], by_label[
        "cuda, NumPy weights (copies per op)"]
    assert float(on_gpu[4]) * 1e6 == 4  # back to the host: the float32 loss, nothing else
    assert float(copies[4]) > 100 * float(on_gpu[4])
