"""The board registry against the amaranth-boards platform descriptions."""

import pytest

from boards.platforms import BOARDS, DEFAULT_BOARD, BoardError, board_names, get_board
from boards.uart import UARTError


def test_default_and_known_names():
    assert DEFAULT_BOARD == "arty_a7"
    assert get_board().name == "arty_a7"
    assert {"arty_a7", "arty_a7_100", "ulx3s_85f"} <= set(board_names())


def test_unknown_board_lists_known_ones():
    with pytest.raises(BoardError) as e:
        get_board("arty_z9")
    msg = str(e.value)
    assert "arty_z9" in msg and all(n in msg for n in board_names())


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_entry_agrees_with_platform(name):
    board = get_board(name)
    platform = board.platform()
    # the clock the registry states is the platform's default clock
    assert platform.default_clk_frequency == board.clk_freq
    assert board.part.lower().startswith(platform.device.lower())
    # the resources the board top uses exist
    uart = platform.lookup(*board.uart)
    assert {"rx", "tx"} <= {sub.name for sub in uart.ios}
    for led in board.leds:
        platform.lookup(*led)
    platform.lookup(*board.button)
    # the default baud rate divides the clock exactly
    div = board.uart_divisor()
    assert div * board.default_baud == board.clk_freq


def test_capacities_from_data_sheets():
    a35, a100, ecp5 = get_board("arty_a7"), get_board("arty_a7_100"), get_board("ulx3s_85f")
    assert (a35.capacity.lut, a35.capacity.ff, a35.capacity.bram36, a35.capacity.dsp) == \
        (20_800, 41_600, 50, 90)
    assert (a100.capacity.lut, a100.capacity.ff, a100.capacity.bram36, a100.capacity.dsp) == \
        (63_400, 126_800, 135, 240)
    assert (ecp5.capacity.lut, ecp5.capacity.bram_blocks, ecp5.capacity.dsp) == (83_640, 208, 156)
    assert ecp5.capacity.bram_kbits_total == 208 * 18 and ecp5.capacity.bram36 == 104
    assert a35.toolchain == "vivado" and ecp5.toolchain == "open"


def test_divisors():
    assert get_board("arty_a7").uart_divisor() == 50
    assert get_board("ulx3s_85f").uart_divisor() == 25
    with pytest.raises(UARTError):
        get_board("ulx3s_85f").uart_divisor(2_000_000)


def test_fit_check():
    board = get_board("arty_a7")
    fit = board.fit(lut=10_400, ff=1000, bram36=50, dsp=0)
    assert fit["fits"] and fit["lut"] == (10_400, 20_800, 0.5)
    fit = board.fit(lut=100, bram36=50.5)
    assert not fit["fits"] and fit["bram36"][2] > 1
