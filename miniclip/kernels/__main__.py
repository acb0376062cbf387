"""``python -m miniclip.kernels --explain``: which matmul route (hand-written kernel or BLAS) the
numba backend chose for each product it has met on this machine, with the timings behind it."""

import argparse
import sys

from miniclip.kernels.numba import routing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m miniclip.kernels", description=__doc__)
    ap.add_argument("--explain", action="store_true", help="print the measured matmul routes")
    ap.add_argument("--forget", action="store_true",
                    help="delete this machine's routes: every product is measured again")
    args = ap.parse_args(argv)
    if args.forget:
        routing.default_path().unlink(missing_ok=True)
        print(f"removed {routing.default_path()}")
    if args.explain or not args.forget:
        print(routing.routes().explain())
    return 0


if __name__ == "__main__":
    sys.exit(main())
