"""``python -m hw.build``: write the Verilog of the network top for a model directory.

Usage::

    python -m hw.build MODEL_DIR -o top.v [--lanes N] [--fifo-depth N] [--name NAME]

Bad input (a broken model directory, a bad parameter): one line on stderr, exit status 2,
nothing written (the file is written to a temporary name in the target directory and
moved into place when complete).
"""

import argparse
import os
import sys
import tempfile

from .generate import generate

__all__ = ["main"]


def main(argv=None):
    from sim.model import ModelError
    ap = argparse.ArgumentParser(prog="python -m hw.build", description=__doc__.split("\n")[0])
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
