"""Safe, atomic file-system writes shared by the model format and the command-line tools.

Outputs are written next to their final place and renamed into it only when complete,
so that a failure (bad input, an exception, Ctrl-C) leaves nothing half-written.

A command that writes a *directory* replaces the target whole. So that it never deletes
what it did not write, :func:`check_output_dir` is the one rule every such command
follows (through :func:`sim.cli.atomic_dir`):

- a missing target or an empty directory is written;
- a directory that holds the marker file :data:`MARKER` naming the same command (every
  output directory gets one) is a previous output of that command and is replaced;
- anything else (a regular file, a symbolic link, a directory without the marker or
  with another command's marker) is refused, unless the user passes ``--force``;
- never, not even with ``--force``: the current directory or one of its parents
  (``--out .``, ``--out ..``, ``--out /``), an input of the command (the model
  directory, a checkpoint), a directory that holds one, or something inside an input
  directory that is not the command's own output.

Files (:func:`check_output_file`) may replace an existing regular file (the usual
meaning of ``-o FILE``) but never an input of the command, a file inside an input
directory, or a directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["MARKER", "OutputError", "check_output_dir", "check_output_file", "write_marker",
           "read_marker", "replace_dir"]

#: Name of the file that marks a directory as the output of one command; its first line
#: is the command (``python -m hw.build``).
MARKER = ".snn-fpga-output"


class OutputError(ValueError):
    """An output path that a command must not write (one line, names the path)."""


def _resolved(path):
    return Path(os.path.abspath(os.path.realpath(path)))


def read_marker(path):
    """The command named by the marker of directory ``path``, or ``None`` without one."""
    marker = Path(path) / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        lines = marker.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return lines[0].strip() if lines else ""


def write_marker(path, command):
    """Mark directory ``path`` as an output of ``command`` (see :func:`check_output_dir`)."""
    (Path(path) / MARKER).write_text(
        f"{command}\n# this directory was written by `{command}`; the next run of that "
        f"command with the same output replaces it whole\n", encoding="utf-8")


def _check_not_input(path, what, protect):
    """Refuse the cwd, its parents, an input and a parent of one; return the input
    directory that holds ``path``, if any."""
    real = _resolved(path)
    cwd = _resolved(os.getcwd())
    if real == cwd or real in cwd.parents:
        raise OutputError(f"{what}: {path} is the current directory or one of its parents; "
                          f"refusing to replace it (not even with --force)")
    for p in protect:
        if p is None:
            continue
        rp = _resolved(p)
        if real == rp or real in rp.parents:
            raise OutputError(f"{what}: {path} is or holds the input {p}; refusing to replace "
                              f"it (not even with --force)")
        if rp in real.parents:
            return p
    return None


def check_output_dir(path, command, *, force=False, protect=(), what="--out"):
    """Refuse an output directory that the command must not replace.

    Parameters
    ----------
    path : str or Path
        The directory the command is about to write (replacing it whole).
    command : str
        The command (``python -m hw.build``): a directory with its marker is replaced.
    force : bool
        ``--force``: replace a file or a foreign directory too (never the current
        directory, its parents or an input).
    protect : iterable of str or Path
        The command's inputs (model directory, checkpoint, source file): neither they
        nor a directory that holds one may be the output.
    what : str
        The option that named ``path``, at the head of the message.

    Raises
    ------
    OutputError
        With a one-line message naming the path and the way out.
    """
    path = Path(path)
    holder = _check_not_input(path, what, protect)
    if not os.path.lexists(path):
        return
    if holder is not None and read_marker(path) != command:
        raise OutputError(f"{what}: {path} lies in the input {holder} and was not written by "
                          f"{command}; refusing to replace it (not even with --force)")
    if force:
        return
    if path.is_symlink() or not path.is_dir():
        kind = "a symbolic link" if path.is_symlink() else "a file"
        raise OutputError(f"{what}: {path} is {kind}, not a directory written by {command}; "
                          f"pass --force to replace it")
    if not any(os.scandir(path)):
        return
    owner = read_marker(path)
    if owner == command:
        return
    if owner:
        raise OutputError(f"{what}: {path} is the output of {owner}, not of {command}; "
                          f"pass --force to replace it")
    raise OutputError(f"{what}: {path} exists and was not written by {command} (no {MARKER} "
                      f"marker); choose a new directory or pass --force to replace it and "
                      f"everything in it")


def check_output_file(path, *, protect=(), what="--out"):
    """Refuse an output file that is a directory, an input, or inside an input directory.

    Replacing an existing regular file is allowed (``-o top.v`` rewrites ``top.v``).
    """
    path = Path(path)
    if os.path.lexists(path) and path.is_dir():
        raise OutputError(f"{what}: {path} is a directory, expected a file name")
    real = _resolved(path)
    for p in protect:
        if p is None:
            continue
        rp = _resolved(p)
        if real == rp or (rp.is_dir() and rp in real.parents and os.path.lexists(path)):
            raise OutputError(f"{what}: {path} is or lies in the input {p}; refusing to "
                              f"overwrite it")


def replace_dir(tmp, path):
    """Move the finished directory ``tmp`` to ``path``, replacing what is there.

    An existing ``path`` is first renamed aside (within the same parent, so every rename
    is atomic) and deleted only after ``tmp`` took its place. This function does not
    judge whether ``path`` may be replaced: callers check with :func:`check_output_dir`
    first (:func:`sim.cli.atomic_dir` does).
    """
    tmp, path = Path(tmp), Path(path)
    if os.path.lexists(path):
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
        os.rename(path, old / "x")
        os.rename(tmp, path)
        shutil.rmtree(old)
    else:
        os.rename(tmp, path)
