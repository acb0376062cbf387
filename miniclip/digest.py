"""One fingerprint of a dict of arrays, for files that must be recognised or checked later
(dataset splits, checkpoints). Imports nothing of miniclip, so any layer may use it.

    >>> import numpy as np
    >>> array_digest({"a": np.zeros(2)}) == array_digest({"a": np.zeros(2)})
    True
    >>> array_digest({"a": np.zeros(2)}) == array_digest({"a": np.zeros(2, np.float32)})
    False
"""

import hashlib

import numpy as np


def array_digest(arrays: dict) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order: the same for the
    same content, whatever file it was stored in (a zip's timestamps do not count)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()
