"""``python -m hw.build``: the command a user types first.

Two forms::

    python -m hw.build --board arty_a7 [--model models/digits] [--out build/arty_a7]
                       [--toolchain auto|vivado|open|none] [--program] ...
    python -m hw.build MODEL_DIR -o top.v [--lanes N] [--fifo-depth N] [--name NAME]

The first (no ``-o``) builds a model for an FPGA board: board top with the UART host
link and LEDs, constraints, vendor scripts, ROM images, resource estimate, report, open
place and route, programming (docs/boards.md). That flow lives in :mod:`boards.build`,
because boards are a layer above the hardware generator (``boards`` imports ``hw``,
nothing imports ``boards``): this module is only its documented launcher and runs it
with :mod:`runpy` by name, so ``hw`` has no import dependency on ``boards``.

The second (``-o FILE``) writes only the Verilog of the network top
(:func:`hw.generate.generate`).

Bad input (a broken model directory, a bad parameter): one line on stderr, exit status 2,
nothing written (the file is written to a temporary name in the target directory and
moved into place when complete).
"""

import argparse
import os
import sys
import tempfile

from .generate import generate

__all__ = ["main", "verilog_main", "board_main"]


def _wants_verilog(argv):
    return any(a in ("-o", "--output") or a.startswith("--output=") for a in argv)


def main(argv=None):
    """Dispatch: ``-o FILE`` writes the network's Verilog, anything else is a board build."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if _wants_verilog(argv):
        return verilog_main(argv)
    return board_main(argv)


def board_main(argv):
    """Run ``boards.build`` (loaded by name, see the module docstring); returns its status."""
    import runpy

    from sim.cli import main_guard
    ns = runpy.run_module("boards.build", run_name="boards.build")
    return main_guard(ns["main"], argv, prog=ns["PROG"], errors=ns["ERRORS"])


def verilog_main(argv=None):
    """``python -m hw.build MODEL_DIR -o top.v``: the Verilog of the network top."""
    from sim.model import ModelError
    ap = argparse.ArgumentParser(prog="python -m hw.build",
                                 description="write the Verilog of the network top")
    ap.add_argument("model", help="model directory")
    ap.add_argument("-o", "--output", required=True, help="Verilog file to write")
    ap.add_argument("--lanes", type=int, default=None, help="lanes of every layer")
    ap.add_argument("--fifo-depth", type=int, default=16)
    ap.add_argument("--name", default="snn_top")
    args = ap.parse_args(argv)
    if args.lanes is not None and args.lanes < 1:
        print(f"--lanes: {args.lanes} must be at least 1", file=sys.stderr)
        return 2
    if args.fifo_depth < 2:
        print(f"--fifo-depth: {args.fifo_depth} must be at least 2", file=sys.stderr)
        return 2
    try:
        text = generate(args.model, name=args.name, lanes=args.lanes, fifo_depth=args.fifo_depth)
    except ModelError as e:
        print(str(e), file=sys.stderr)
        return 2
    out = os.path.abspath(args.output)
    d = os.path.dirname(out)
    if not os.path.isdir(d):
        print(f"{args.output}: directory {d} does not exist", file=sys.stderr)
        return 2
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".gen.", suffix=".v")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
