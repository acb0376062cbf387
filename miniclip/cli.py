"""What every ``python -m miniclip...`` command does with a failure it expected.

A user error (a missing file, a bad flag value, a corrupt checkpoint, a full disk, a read-only
folder) is reported as one line, ``error: ...``, and exit code 2, like argparse's own errors. A
traceback is kept for what nobody expected: a bug.

    def main(argv=None):
        return run_main(_main, argv)

Imports nothing of miniclip, so every layer may use it.
"""

from __future__ import annotations

import errno
import sys

EXIT_USER_ERROR = 2  # argparse's code for a bad command line; ours for any expected failure
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a run stopped by Ctrl-C

# OSErrors that come from the environment, not from a bug: the message names the file
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT,
                       errno.ENOENT, errno.EEXIST, errno.EISDIR, errno.ENOTDIR, errno.EIO,
                       errno.EFBIG, errno.ENAMETOOLONG, errno.ENOTEMPTY, errno.EBUSY}


class UserError(Exception):
    """A failure the user can fix (their input, their files, their machine); the message says
    how. Raise ValueError/TypeError for bad arguments; this is for the rest."""


def describe(error: BaseException) -> str | None:
    """The one-line message for an expected failure, or None for a bug (keep its traceback)."""
    if isinstance(error, OSError):
        if error.errno in _ENVIRONMENT_ERRNOS or error.errno is None:
            if error.errno == errno.ENOSPC:
                return f"no space left on the device writing {error.filename or 'a file'}"
            if error.errno == errno.EROFS:
                return f"read-only file system: cannot write {error.filename or 'a file'}"
            if error.filename is not None and error.strerror:
                return f"{error.strerror}: {error.filename}"
            return str(error)
        return None
    if isinstance(error, MemoryError):
        return f"out of memory ({error or 'no details'}); ask for less: smaller sizes or batches"
    if isinstance(error, (ValueError, UserError, ImportError)):
        return str(error)
    return None


def run_main(main, argv=None) -> int:
    """Call ``main(argv)``; an expected failure becomes ``error: <message>`` on stderr and exit
    code 2, Ctrl-C exit code 130; anything else propagates (a bug: its traceback is the useful
    output)."""
    try:
        code = main(argv)
    except KeyboardInterrupt:  # Ctrl-C: the user knows; no traceback
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - sorted into expected and not just below
        message = describe(error)
        if message is None:
            raise
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0 if code is None else int(code)
