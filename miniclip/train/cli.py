"""The training command: ``python -m miniclip.train`` and the ``miniclip-train`` script."""

import os
import sys


def one_blas_thread() -> None:
    """One BLAS thread. The model's matrices are small and many (a (T, D) @ (D, T) per image and
    head): OpenBLAS splits each across threads, and on a 2-core machine that other programs
    also use, the threads wait for each other. Measured on the 2-core machine this was written
    on: the same with 1 or 2 threads when idle, up to 5-20x slower with 2 threads under load.
    Only for the command, only if the user has not chosen, and only before NumPy starts (it
    reads these once)."""
    if "numpy" not in sys.modules:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")


def main(argv=None) -> int:
    one_blas_thread()
    from miniclip.train.loop import main as train_main

    return train_main(argv)
