"""Atomic file-system writes shared by the model format and the command-line tools.

Outputs are written next to their final place and renamed into it only when complete,
so that a failure (bad input, an exception, Ctrl-C) leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["replace_dir"]


def replace_dir(tmp, path):
    """Move the finished directory ``tmp`` to ``path``, replacing what is there.

    An existing ``path`` is first renamed aside (within the same parent, so every rename
    is atomic) and deleted only after ``tmp`` took its place.
    """
    tmp, path = Path(tmp), Path(path)
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
        os.rename(path, old / "x")
        os.rename(tmp, path)
        shutil.rmtree(old)
    else:
        os.rename(tmp, path)
