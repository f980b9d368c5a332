"""``python -m hw.build``: the command a user types first.

Two forms::

    python -m hw.build --board arty_a7 [--model models/digits] [--out build/arty_a7]
                       [--toolchain auto|vivado|open|none] [--program] [--force] ...
    python -m hw.build MODEL_DIR -o top.v [--lanes N] [--fifo-depth N] [--banks SPEC]
                                          [--name NAME]

The first (no ``-o``) builds a model for an FPGA board: board top with the UART host
link and LEDs, constraints, vendor scripts, ROM images, resource estimate, report, open
place and route, programming (docs/boards.md). That flow lives in :mod:`boards.build`,
because boards are a layer above the hardware generator (``boards`` imports ``hw``,
nothing imports ``boards``): this module is only its documented launcher and runs it
with :mod:`runpy` by name, so ``hw`` has no import dependency on ``boards``.

The second (``-o FILE``) writes only the Verilog of the network top
(:func:`hw.generate.generate`).

Bad input (a broken model directory, a bad parameter, ``--lanes`` or ``--fifo-depth``
beyond :data:`sim.geometry.MAX_LANES` / :data:`sim.geometry.MAX_FIFO_DEPTH`, a ``--name``
that is not a Verilog identifier, an output that is a directory or lies in the model
directory): one line on stderr, exit status 2, nothing written (the file is written to a
temporary name in the target directory and moved into place when complete). The board
build replaces ``--out`` only when it is a previous board build (or with ``--force``;
:mod:`sim.fsutil`).
"""

import re
import sys

from sim.cli import ArgumentParser, CliError, atomic_path, main_guard, run_main
from sim.geometry import MAX_FIFO_DEPTH, MAX_LANES

from .generate import generate

__all__ = ["main", "verilog_main", "board_main", "check_hw_params", "check_module_name",
           "PROG"]

PROG = "python -m hw.build"

#: A plain Verilog identifier (IEEE 1364-2005 3.7.1) without ``$``: Yosys writes a name
#: with ``$`` as an escaped identifier (``\\top$1``), which many tools handle poorly.
_VERILOG_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Verilog keywords that a plain identifier cannot be (the ones a module name might hit).
_VERILOG_KEYWORDS = frozenset("""always and assign begin buf case casex casez cell config
deassign default defparam design disable edge else end endcase endconfig endfunction
endgenerate endmodule endprimitive endspecify endtable endtask event for force forever
fork function generate genvar if ifnone incdir include initial inout input instance
integer join large liblist library localparam macromodule medium module nand negedge nmos
nor not or output parameter pmos posedge primitive pull0 pull1 pulldown pullup rcmos real
realtime reg release repeat rnmos rpmos rtran rtranif0 rtranif1 scalared showcancelled
signed small specify specparam strong0 strong1 supply0 supply1 table task time tran
tranif0 tranif1 tri tri0 tri1 triand trior trireg unsigned use uwire vectored wait wand
weak0 weak1 while wire wor xnor xor logic bit byte int""".split())


def check_hw_params(lanes, fifo_depth):
    """``--lanes`` (None: the default) and ``--fifo-depth`` within their limits
    (:data:`sim.geometry.MAX_LANES`, :data:`sim.geometry.MAX_FIFO_DEPTH`)."""
    if lanes is not None and not 1 <= lanes <= MAX_LANES:
        raise CliError(f"--lanes: {lanes} is outside 1..{MAX_LANES} (MAX_LANES)")
    if not 2 <= fifo_depth <= MAX_FIFO_DEPTH:
        raise CliError(f"--fifo-depth: {fifo_depth} is outside 2..{MAX_FIFO_DEPTH} "
                       f"(MAX_FIFO_DEPTH)")


def parse_banks(text):
    """``--banks``: ``N`` (every layer that can be banked, :func:`sim.geometry.banks_of`)
    or ``LAYER=N[,LAYER=N...]``; ``None`` stays ``None`` (one bank everywhere)."""
    if text is None:
        return None
    try:
        if "=" not in text:
            return int(text)
        out = {}
        for item in text.split(","):
            name, _, n = item.partition("=")
            if not name.strip() or name.strip() in out:
                raise ValueError
            out[name.strip()] = int(n)
        return out
    except ValueError:
        raise CliError(f"--banks: {text!r} is neither N nor LAYER=N[,LAYER=N...]") from None


def check_banks(model, banks):
    """The banks of every layer of ``model`` for ``--banks`` (:func:`parse_banks`), or a
    one-line :class:`sim.cli.CliError` naming the layer and the rule it breaks."""
    from sim.geometry import banks_of
    try:
        return banks_of(model, banks)
    except ValueError as e:
        raise CliError(f"--banks: {e}") from None


def check_module_name(name):
    """``--name`` must be a plain Verilog identifier that is not a keyword."""
    if not _VERILOG_ID.fullmatch(name) or name in _VERILOG_KEYWORDS:
        raise CliError(f"--name: {name!r} is not a Verilog identifier (letters, digits and "
                       f"_, not starting with a digit, not a keyword)")


def _wants_verilog(argv):
    return any(a in ("-o", "--output") or a.startswith("--output=") for a in argv)


def main(argv=None):
    """Dispatch: ``-o FILE`` writes the network's Verilog, anything else is a board build.

    Returns the exit status (bad input: one line on stderr, 2).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if _wants_verilog(argv):
        return main_guard(verilog_main, argv, prog=PROG)
    return board_main(argv)


def board_main(argv):
    """Run ``boards.build`` (loaded by name, see the module docstring); returns its status."""
    import runpy

    ns = runpy.run_module("boards.build", run_name="boards.build")
    return main_guard(ns["main"], argv, prog=ns["PROG"], errors=ns["ERRORS"])


def verilog_main(argv=None):
    """``python -m hw.build MODEL_DIR -o top.v``: the Verilog of the network top.

    Bad input raises :class:`sim.cli.CliError` (and the model's and the file system's
    errors); :func:`main` reports them as one line with exit status 2.
    """
    ap = ArgumentParser(prog=PROG, description="write the Verilog of the network top")
    ap.add_argument("model", help="model directory")
    ap.add_argument("-o", "--output", required=True,
                    help="Verilog file to write (an existing file is replaced)")
    ap.add_argument("--lanes", type=int, default=None,
                    help=f"lanes of every layer (1..{MAX_LANES})")
    ap.add_argument("--fifo-depth", type=int, default=16,
                    help=f"words of every inter-layer FIFO (2..{MAX_FIFO_DEPTH}, default 16)")
    ap.add_argument("--name", default="snn_top", help="Verilog module name (default snn_top)")
    ap.add_argument("--banks", default=None, metavar="N|LAYER=N,...",
                    help="neuron cores per conv/pool layer over interleaved output columns "
                         "(default 1): N for every layer that can be banked, or per layer")
    args = ap.parse_args(argv)
    banks = parse_banks(args.banks)
    check_hw_params(args.lanes, args.fifo_depth)
    check_module_name(args.name)
    from sim.model import load_model
    model = load_model(args.model)
    check_banks(model, banks)
    # checked before the (long) generation, and again by atomic_path
    with atomic_path(args.output, protect=[args.model], what="-o") as tmp:
        text = generate(model, name=args.name, lanes=args.lanes, fifo_depth=args.fifo_depth,
                        banks=banks)
        tmp.write_text(text)
    return 0


if __name__ == "__main__":
    run_main(main, prog=PROG)
