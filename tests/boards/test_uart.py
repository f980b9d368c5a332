"""The UART: divisor rules, loopback, framing errors, back-to-back bytes, stalls."""

import random

import pytest
from amaranth import Module
from amaranth.hdl import Elaboratable

from boards.uart import UART, UARTError, UARTRx, UARTTx, baud_divisor
from tests.boards.simutil import run_sim, stream_recv, stream_send, uart_drive


# -- divisor --------------------------------------------------------------------------

def test_divisor_exact():
    assert baud_divisor(100e6, 2_000_000) == 50
    assert baud_divisor(12e6, 2_000_000) == 6
    assert baud_divisor(25e6, 1_000_000) == 25


def test_divisor_not_exact_is_an_error():
    with pytest.raises(UARTError, match="does not divide"):
        baud_divisor(25e6, 2_000_000)          # 12.5 cycles per bit
    with pytest.raises(UARTError, match="does not divide"):
        baud_divisor(100e6, 3_000_000)         # 33.3


def test_divisor_tolerance():
    # 100 MHz / 115200 = 868.06 -> 868 is 0.007 % off
    assert baud_divisor(100e6, 115200, tolerance=0.001) == 868
    with pytest.raises(UARTError):
        baud_divisor(100e6, 115200)
    with pytest.raises(UARTError, match="outside"):
        baud_divisor(100e6, 115200, tolerance=0.1)
    with pytest.raises(UARTError, match="minimum"):
        baud_divisor(12e6, 4_000_000)           # divisor 3


def test_bad_divisor_argument():
    with pytest.raises(UARTError):
        UART(2)


# -- simulation -----------------------------------------------------------------------

class Loopback(Elaboratable):
    def __init__(self, divisor):
        self.uart = UART(divisor)

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = self.uart
        m.d.comb += self.uart.rx.eq(self.uart.tx)
        return m


@pytest.mark.parametrize("divisor,n,seed", [(4, 120, 1), (7, 60, 2), (50, 12, 3)])
def test_loopback_random_bytes_with_stalls(divisor, n, seed):
    rng = random.Random(seed)
    data = [rng.randrange(256) for _ in range(n)] + [0x00, 0xFF, 0x55, 0xAA]
    dut = Loopback(divisor)
    got = []

    async def sender(ctx):
        await stream_send(ctx, dut.uart.tx_stream, data, rng=rng, p_idle=0.3)

    async def receiver(ctx):
        # stalls shorter than one character time (10 bits) never lose a byte
        got.extend(await stream_recv(ctx, dut.uart.rx_stream, len(data), rng=rng, p_stall=0.5,
                                     max_stall=5 * divisor, timeout=40 * divisor))
        assert ctx.get(dut.uart.framing_errors) == 0
        assert ctx.get(dut.uart.overruns) == 0
        assert ctx.get(dut.uart.framing_error) == 0

    run_sim(dut, sender, receiver)
    assert got == data


def test_tx_back_to_back_has_no_gaps():
    divisor = 5
    data = [0x00, 0xFF, 0x81, 0x3C, 0x00]
    dut = UARTTx(divisor)
    line = []

    async def sender(ctx):
        await stream_send(ctx, dut.stream, data)

    async def monitor(ctx):
        # wait for the start bit, then record exactly 10 bits per byte
        while ctx.get(dut.tx):
            await ctx.tick()
        for _ in range(10 * len(data) * divisor):
            line.append(ctx.get(dut.tx))
            await ctx.tick()
        assert ctx.get(dut.tx) == 1 and not ctx.get(dut.busy)

    run_sim(dut, sender, monitor)
    bits = line[divisor // 2::divisor]                 # mid-bit samples
    expect = []
    for byte in data:
        expect += [0] + [(byte >> k) & 1 for k in range(8)] + [1]
    assert bits == expect
    # every bit is held exactly `divisor` cycles
    assert all(line[i] == line[i - i % divisor] for i in range(len(line)))


def test_rx_back_to_back_and_framing_error():
    divisor = 8
    data = [0x12, 0xF0, 0x0F, 0x99, 0x42, 0x00]
    stops = [1, 1, 0, 1, 1, 1]                       # byte 2 has a low stop bit
    dut = UARTRx(divisor)
    got = []

    async def line(ctx):
        await ctx.tick().repeat(5)
        await uart_drive(ctx, dut.rx, data[:3], divisor, stop_bits=stops[:3])
        # after a low stop bit the receiver needs the line high to find the next start
        # bit; a real sender's line idles at least one bit time after a broken character
        await ctx.tick().repeat(divisor)
        await uart_drive(ctx, dut.rx, data[3:], divisor)

    async def receiver(ctx):
        got.extend(await stream_recv(ctx, dut.stream, len(data), timeout=30 * divisor))
        assert ctx.get(dut.framing_error) == 1
        assert ctx.get(dut.framing_errors) == 1
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert ctx.get(dut.framing_error) == 0 and ctx.get(dut.framing_errors) == 0

    run_sim(dut, line, receiver)
    # the byte with the bad stop bit is dropped, the others arrive back to back
    assert got == [0x12, 0xF0, 0x99, 0x42, 0x00]


def test_rx_break_counts_once_and_glitch_is_ignored():
    divisor = 8
    dut = UARTRx(divisor)
    got = []

    async def line(ctx):
        await ctx.tick().repeat(5)
        ctx.set(dut.rx, 0)                            # a glitch of 2 cycles: no start bit
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        ctx.set(dut.rx, 0)                            # a break of 40 bit times
        await ctx.tick().repeat(40 * divisor)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * divisor)
        await uart_drive(ctx, dut.rx, [0xA7], divisor)

    async def receiver(ctx):
        got.extend(await stream_recv(ctx, dut.stream, 2, timeout=60 * divisor))
        assert ctx.get(dut.framing_errors) == 1

    run_sim(dut, line, receiver)
    assert got == [0xA7]


@pytest.mark.parametrize("ratio", [0.97, 1.03])
def test_rx_tolerates_rate_mismatch(ratio):
    divisor = 50
    data = [0x00, 0xFF, 0x5A, 0x80, 0x01]
    dut = UARTRx(divisor)
    got = []

    async def line(ctx):
        await ctx.tick().repeat(5)
        await uart_drive(ctx, dut.rx, data, divisor, bit_cycles=round(divisor * ratio))

    async def receiver(ctx):
        got.extend(await stream_recv(ctx, dut.stream, len(data), timeout=30 * divisor))
        assert ctx.get(dut.framing_errors) == 0

    run_sim(dut, line, receiver)
    assert got == data


def test_rx_overrun_when_consumer_stalls_too_long():
    divisor = 6
    data = [1, 2, 3, 4]
    dut = UARTRx(divisor)
    got = []

    async def line(ctx):
        await ctx.tick().repeat(3)
        await uart_drive(ctx, dut.rx, data, divisor)

    async def receiver(ctx):
        ctx.set(dut.stream.ready, 0)
        await ctx.tick().repeat(int(10 * divisor * 3.5))    # bytes 2 and 3 complete meanwhile
        got.extend(await stream_recv(ctx, dut.stream, 4, timeout=30 * divisor))
        assert ctx.get(dut.overruns) == 2

    run_sim(dut, line, receiver)
    assert got == [1, 4]


def test_refused_divisor_leaves_no_unused_design():
    # a refused component must not exist half-built: Amaranth would warn at exit that it
    # was "created but never used", after the one-line error of a command-line tool
    import subprocess
    import sys
    code = ("from amaranth.back import rtlil\n"
            "from boards.uart import UART, UARTRx, UARTTx, UARTError\n"
            "for ok in (UART(4), UARTRx(5, 8), UARTTx(6)):\n"
            "    rtlil.convert(ok)   # Amaranth reports unused designs after an elaboration\n"
            "for c in (UART, UARTRx, UARTTx):\n"
            "    for bad in (2, 4.5, True, None):\n"
            "        try:\n"
            "            c(bad)\n"
            "        except UARTError:\n"
            "            pass\n"
            "        else:\n"
            "            raise SystemExit(f'{c.__name__}({bad!r}) was accepted')\n"
            "import gc; gc.collect()\n")
    res = subprocess.run([sys.executable, "-X", "dev", "-c", code], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    assert "UnusedElaboratable" not in res.stderr, res.stderr
