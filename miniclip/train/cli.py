"""The training command: ``python -m miniclip.train`` and the ``miniclip-train`` script."""

import dataclasses
import os
import sys


def thread_settings(argv) -> None:
    """BLAS on every core, with idle threads that sleep at once.

    The numba backend runs each product on its own kernel or on BLAS, whichever it measured
    faster (kernels/numba/routing.py), and between two BLAS calls it runs Numba kernels on the
    same cores. OpenBLAS's threads spin for a while after each call, waiting for the next
    one, and take the cores from the Numba kernel that follows; OPENBLAS_THREAD_TIMEOUT=4 (its
    shortest wait, 2^4 cycles) puts them to sleep at once, as OMP_WAIT_POLICY=PASSIVE does for
    OpenMP threads. Measured on the 2-core machine of benchmarks/README.md (200 toy steps,
    quiet, 2026-11-29): OpenBLAS at 1 thread 41.0 and 39.1 s, at 2 threads spinning 39.1 and
    39.0 s, at 2 threads sleeping 35.9 and 35.2 s.
    With --distributed, the processes on this machine share its cores (MPI_LOCALNRANKS:
    MPICH's mpiexec says how many run here), rather than each starting a pool per core.
    Only for the command, only if the user has not chosen, and only before NumPy starts (it
    reads these once)."""
    if "numpy" in sys.modules:
        return
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "--distributed" in argv and "MPI_LOCALNRANKS" in os.environ:
        share = str(max(1, (os.cpu_count() or 1) // max(1, int(os.environ["MPI_LOCALNRANKS"]))))
        for var in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                    "MKL_NUM_THREADS"):
            os.environ.setdefault(var, share)


def main(argv=None, after_step=None) -> int:
    """The command line. Expected failures are one line and exit code 2 (``miniclip.cli``); a
    run stopped by Ctrl-C (checkpoint saved) exits with 130, a diverged one with 1."""
    thread_settings(sys.argv[1:] if argv is None else argv)
    from miniclip.cli import run_main

    return run_main(lambda args: _main(args, after_step), argv)


def _main(argv, after_step) -> int:
    from miniclip.cli import EXIT_INTERRUPTED
    from miniclip.kernels.memory import keep_freed_memory
    from miniclip.train.args import TrainArgs, build_parser, with_world_defaults
    from miniclip.train.finetune import FINETUNE_DEFAULTS
    from miniclip.train.loop import train
    from miniclip.train.step import TrainingDiverged

    ap = build_parser()
    ns = ap.parse_args(argv)
    keep_freed_memory()  # every step's arrays reuse the last step's pages (kernels/memory.py)
    given = {f.name: getattr(ns, f.name) for f in dataclasses.fields(TrainArgs)
             if getattr(ns, f.name) is not None}
    if ns.resume and given:
        ap.error(f"--resume continues a run with the settings saved in its checkpoint; drop "
                 f"{', '.join('--' + k.replace('_', '-') for k in given)}")
    if ns.init is not None:  # fine-tuning: gentler defaults for what was not given
        given = {**FINETUNE_DEFAULTS, **given}
    given = with_world_defaults(given, distributed=ns.distributed)  # --world varied's recipe
    if ns.distributed:  # every process runs this; train/distributed.py
        from miniclip.train.distributed import main_distributed

        return main_distributed(lambda world, log: train(
            TrainArgs(**given), resume=ns.resume, progress=not ns.no_progress,
            after_step=after_step, log=log, world=world, regenerate=ns.regenerate))
    try:
        summary = train(TrainArgs(**given), resume=ns.resume, progress=not ns.no_progress,
                        after_step=after_step, regenerate=ns.regenerate)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: train() has said what was kept
        return EXIT_INTERRUPTED
    return EXIT_INTERRUPTED if summary.get("stopped") else 0
