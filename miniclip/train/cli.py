"""The training command: ``python -m miniclip.train`` and the ``miniclip-train`` script."""

import dataclasses
import os
import sys


def thread_settings(argv) -> None:
    """One BLAS thread. The model's matrices are small and many (a (T, D) @ (D, T) per image and
    head): OpenBLAS splits each across threads, and on a 2-core machine that other programs
    also use, the threads wait for each other. Measured on the 2-core machine this was written
    on: the same with 1 or 2 threads when idle, up to 5-20x slower with 2 threads under load.
    With --distributed, the processes on this machine share its cores (MPI_LOCALNRANKS: MPICH's
    mpiexec says how many run here), rather than each starting one Numba thread per core.
    Only for the command, only if the user has not chosen, and only before NumPy starts (it
    reads these once)."""
    if "numpy" in sys.modules:
        return
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if "--distributed" in argv and "MPI_LOCALNRANKS" in os.environ:
        os.environ.setdefault("NUMBA_NUM_THREADS", str(max(
            1, (os.cpu_count() or 1) // max(1, int(os.environ["MPI_LOCALNRANKS"])))))


def main(argv=None, after_step=None) -> int:
    """The command line. Expected failures are one line and exit code 2 (``miniclip.cli``); a
    run stopped by Ctrl-C (checkpoint saved) exits with 130, a diverged one with 1."""
    thread_settings(sys.argv[1:] if argv is None else argv)
    from miniclip.cli import run_main

    return run_main(lambda args: _main(args, after_step), argv)


def _main(argv, after_step) -> int:
    from miniclip.cli import EXIT_INTERRUPTED
    from miniclip.kernels.memory import keep_freed_memory
    from miniclip.train.args import TrainArgs, build_parser
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
