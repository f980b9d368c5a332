"""``python -m hw.build``: build a model for an FPGA board (launcher).

This is the command a user types first::

    python -m hw.build --board arty_a7 [--model models/digits] [--out build/arty_a7]
                       [--toolchain auto|vivado|open|none] [--program]

The board flow (board top with the UART host link and LEDs, constraints, vendor
scripts, resource estimate, report, open place and route, programming) lives in
:mod:`boards.build`, because boards are a layer above the hardware generator: the
package rule is that ``boards`` imports ``hw`` and nothing imports ``boards``. This
module is therefore only a documented launcher: it runs ``boards.build`` as a program
(it does not import it), so ``hw`` itself never depends on ``boards``. See
``python -m hw.build --help`` and docs/boards.md.
"""

import runpy
import sys


def main():
    sys.argv[0] = "python -m hw.build"
    runpy.run_module("boards.build", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
