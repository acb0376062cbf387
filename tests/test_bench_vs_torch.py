"""benchmarks/bench_vs_torch.py --quick runs end to end (a tiny model, one repetition) and shows
miniclip and PyTorch computing the same model: the script itself fails (exit 1) when the first
losses or parameter counts differ, and this test checks the table it prints."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_vs_torch.py"
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_step_flops_counts_a_known_model():
    from bench_vs_torch import bench_configs, step_flops

    cfg, batch, _ = bench_configs()["quick"]  # CONFIGS["tiny"] at batch 4
    # vision: 5 tokens, width 16, 1 layer; text: 7 tokens, width 16, 1 layer; 4 px patches of
    # 8 px images (4 patches); embed 16. Forward FLOPs x 3.
    vision = 4 * (2 * 5 * 12 * 16 * 16 + 4 * 5 * 5 * 16)
    text = 4 * (2 * 7 * 12 * 16 * 16 + 4 * 7 * 7 * 16)
    patch = 2 * 4 * 4 * 16 * 3 * 16
    head = 2 * 4 * 32 * 16 + 2 * 4 * 4 * 16
    assert step_flops(cfg, batch) == 3 * (vision + text + patch + head)


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("torch", "transformers")),
                    reason="compares with PyTorch: needs torch==2.13.0 (the CPU wheel) and transformers, "
                           "which .ci/run installs")
def test_quick_run_prints_one_model_in_every_framework(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR",
                                                           str(tmp_path / "numba"))}
    run = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True,
                         text=True, timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1]
            for line in run.stdout.splitlines() if line.startswith("| ") and "step ms" not in line}
    frameworks = ("numpy", "numba-plain", "numba-kernel", "numba", "numba-blas", "torch")
    for framework in frameworks:
        assert framework in rows, run.stdout
    losses = {f: float(rows[f][4]) for f in frameworks}
    assert max(losses.values()) - min(losses.values()) < 1e-4 * losses["numpy"], losses
    assert len({rows[f][5] for f in losses}) == 1  # parameter counts
    assert "matmul (linear ops)" in rows  # the per-op profile
