"""``python -m miniclip.train``'s main under mpiexec, with two test hooks (tests/test_distributed.py):

    MINICLIP_TEST_RAISE_AT=K   the process of rank 1 raises after step K (its checkpoint saved)
    MINICLIP_TEST_PID_DIR=dir  each process writes its pid to dir/rank<r>.pid after step 1
"""

import os
import sys
from pathlib import Path

from miniclip.train.cli import main

RANK = int(os.environ.get("PMI_RANK", "0"))


def after_step(step):
    pid_dir = os.environ.get("MINICLIP_TEST_PID_DIR")
    if pid_dir and step == 1:
        Path(pid_dir, f"rank{RANK}.pid").write_text(str(os.getpid()))
    if RANK == 1 and step == int(os.environ.get("MINICLIP_TEST_RAISE_AT", "-1")):
        raise RuntimeError(f"rank 1 fails on purpose after step {step}")


sys.exit(main(sys.argv[1:], after_step=after_step))
