"""``python -m miniclip.evaluate``: kept as a command; the code is in miniclip/train/evaluate.py."""

import os
import sys

if __name__ == "__main__" and "numpy" not in sys.modules:  # one BLAS thread: see train/__main__.py
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

from miniclip.train.evaluate import main  # noqa: E402  (after the thread settings)

if __name__ == "__main__":
    sys.exit(main())
