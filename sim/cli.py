"""Shared command-line plumbing: one-line errors, exit status 2, atomic outputs.

Every command-line tool of the project (``python -m sim.run``, ``hw.build``,
``quant.export``, ``boards.host``) treats bad input the same way: one line on stderr
naming the file, field or value at fault, exit status 2, no traceback, and nothing
half-written (outputs are written next to their target and moved into place when
complete). This module gives them the pieces::

    from sim.cli import ArgumentParser, CliError, atomic_path, run_main

    def main(argv=None):
        args = ArgumentParser(prog="python -m hw.build").parse_args(argv)
        if args.board not in BOARDS:
            raise CliError(f"--board: unknown board {args.board!r}")
        with atomic_path(args.out) as tmp:
            tmp.write_text(...)

    if __name__ == "__main__":
        run_main(main, prog="python -m hw.build", errors=(MyDomainError,))

:class:`~sim.model.ModelError`, :class:`~sim.events.EventError`, :class:`CliError`,
:class:`~sim.fsutil.OutputError` (an output that must not be replaced) and
:class:`OSError` (a missing or unwritable file) are always treated as bad input; a tool
adds its own exception types with ``errors=``. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .events import EventError
from .fsutil import OutputError, check_output_dir, check_output_file, replace_dir, write_marker
from .model import ModelError

__all__ = ["EXIT_BAD_INPUT", "CliError", "ArgumentParser", "one_line", "main_guard",
           "run_main", "atomic_path", "atomic_dir", "add_force_option"]

#: Exit status for bad input (the same as argparse's usage errors).
EXIT_BAD_INPUT = 2


class CliError(Exception):
    """Bad input noticed by a tool itself; the message names the file, field or value."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line (exit status 2)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def one_line(exc):
    """The message of ``exc`` as one line (``OSError`` as ``file: reason``)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        msg = f"{exc.filename}: {exc.strerror or exc}"
    else:
        msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())


def main_guard(main, argv=None, *, prog=None, errors=()):
    """Call ``main(argv)``; turn bad-input exceptions into one line on stderr.

    Parameters
    ----------
    main : callable
        Takes ``argv`` (list of str or None); returns an exit status or None (0).
    argv : list of str, optional
    prog : str, optional
        Prefix of the error line (default: ``sys.argv[0]``'s name).
    errors : tuple of exception types
        Extra exception types that mean bad input for this tool.

    Returns
    -------
    int
        ``main``'s status, :data:`EXIT_BAD_INPUT` on bad input, 130 on Ctrl-C.
    """
    prog = prog or Path(sys.argv[0]).name
    bad_input = (CliError, ModelError, EventError, OutputError, OSError) + tuple(errors)
    try:
        rc = main(argv)
    except bad_input as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0 if rc is None else int(rc)


def run_main(main, argv=None, *, prog=None, errors=()):
    """:func:`main_guard`, then exit with its status (for ``if __name__ == "__main__"``)."""
    sys.exit(main_guard(main, argv, prog=prog, errors=errors))


def add_force_option(parser):
    """Add ``--force`` (replace an output that is not a previous output of the command)."""
    parser.add_argument("--force", action="store_true",
                        help="replace the output even if it is a file or a directory this "
                             "command did not write (never the current directory, its "
                             "parents or an input)")
    return parser


def _unwritable(path, what, exc):
    return CliError(f"{what}: cannot write {path}: the directory {path.parent} is not "
                    f"writable ({exc.strerror or exc})")


def _parent(path):
    parent = path.parent
    if not parent.is_dir():
        raise CliError(f"{path}: the directory {parent} does not exist")
    return parent


@contextlib.contextmanager
def atomic_path(path, *, suffix=None, protect=(), what=None):
    """Write a file atomically: yield a temporary path next to ``path``.

    When the ``with`` block ends normally the temporary file gets the usual permissions
    (``0o666`` less the umask) and replaces ``path``; on any exception it is removed and
    ``path`` is left as it was. ``path`` may be an existing regular file, never a
    directory or one of the command's inputs (:func:`sim.fsutil.check_output_file`).

    Parameters
    ----------
    path : str or Path
        The final file.
    suffix : str, optional
        Suffix of the temporary name (default: ``path``'s). Writers that append a
        suffix themselves (``np.savez`` adds ``.npz``) need it to match.
    protect : iterable of str or Path
        The command's inputs (files or directories): never overwritten.
    what : str, optional
        The option that named ``path`` (head of the error message; default the path).
    """
    path = Path(path)
    check_output_file(path, protect=protect, what=what or "output")
    parent = _parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix if suffix is None
                                   else suffix, dir=parent)
    except OSError as e:
        raise _unwritable(path, what or "output", e) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path, *, command, force=False, protect=(), what="--out"):
    """Write a directory atomically: yield an empty temporary directory next to ``path``.

    ``path`` is first checked with :func:`sim.fsutil.check_output_dir` (a file, or a
    directory that is not a previous output of ``command``, is refused unless ``force``;
    the current directory, its parents, the inputs in ``protect`` and their parents are
    always refused). When the block ends normally the marker naming ``command`` is
    written, the directory gets the usual permissions (``0o777`` less the umask) and
    takes the place of ``path``; on any exception it is removed and ``path`` is
    untouched.

    Parameters
    ----------
    path : str or Path
        The output directory.
    command : str
        The command that writes it (``python -m hw.build``), recorded in the marker.
    force : bool
        The command's ``--force``.
    protect : iterable of str or Path
        The command's inputs.
    what : str
        The option that named ``path`` (head of the error message).
    """
    path = Path(path)
    check_output_dir(path, command, force=force, protect=protect, what=what)
    parent = _parent(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=parent))
    except OSError as e:
        raise _unwritable(path, what, e) from None
    try:
        yield tmp
        write_marker(tmp, command)
        os.chmod(tmp, 0o777 & ~_umask())
        # checked again: the target may have changed during a long build
        check_output_dir(path, command, force=force, protect=protect, what=what)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
