"""``python -m miniclip.train``: train a CLIP (see ``--help``)."""

import os
import sys

if "numpy" not in sys.modules:
    # One BLAS thread. The model's matrices are small and many (a (T, D) @ (D, T) per image and
    # head): OpenBLAS splits each across threads, and on a 2-core machine that other programs
    # also use, the threads wait for each other. Measured on the 2-core machine this was written
    # on: the same with 1 or 2 threads when idle, up to 5-20x slower with 2 threads under load.
    # Only for `python -m miniclip.train`, only if the user has not chosen, and only before NumPy
    # starts (it reads these once).
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    # --distributed: the processes on this machine share its cores (MPI_LOCALNRANKS: MPICH's
    # mpiexec says how many run here), rather than each starting one Numba thread per core
    if "--distributed" in sys.argv[1:] and "MPI_LOCALNRANKS" in os.environ:
        os.environ.setdefault("NUMBA_NUM_THREADS", str(max(
            1, (os.cpu_count() or 1) // max(1, int(os.environ["MPI_LOCALNRANKS"])))))

from miniclip.train.loop import main  # noqa: E402  (after the thread settings)

sys.exit(main())
