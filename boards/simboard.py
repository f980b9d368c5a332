"""The board's RTL in simulation behind a pseudo-terminal.

:class:`SimBoard` runs the board's RTL in ``amaranth.sim`` and bridges its UART pins to
a pseudo-terminal: bytes the host writes are bit-banged onto ``rx`` at the UART divisor,
and the bits on ``tx`` are decoded back into bytes for the host. ``python -m boards.host
--port PATH`` then talks to the simulated hardware exactly as to a board.

Two designs can stand behind the pty:

- ``network="rtl"`` (default): the whole board top, :class:`boards.top.BoardTop` (host
  link, the generated network :class:`hw.network.Network`, LEDs, reset logic), exactly
  the design that ``python -m hw.build`` puts on a board;
- ``network="reference"``: only :class:`boards.link.HostLink`, with the bit-exact
  reference (:func:`sim.reference.run` on the words the link delivered) answering a few
  cycles after the end-of-sample token (for tests of the link alone).

Simulated time is much slower than real time (a few thousand cycles per second for a
small network), so use a small divisor, a small model and few samples.
"""

from __future__ import annotations

import collections
import os
import select

import numpy as np
from amaranth.sim import Simulator

from sim.events import BinnedEvents
from sim.geometry import END_SAMPLE
from sim.reference import run as reference_run

from . import protocol as pr
from .emulator import run_on_pty, serve_until_interrupted
from .link import HostLink

__all__ = ["SimBoard"]


class SimBoard:
    """The board's RTL in simulation on a pty (see the module docstring).

    Parameters
    ----------
    model : sim.model.Model
    divisor : int
        UART clock cycles per bit in the simulation.
    latency : int
        ``network="reference"`` only: cycles between the end-of-sample token and
        ``result_valid``.
    network : {"rtl", "reference"}
    **top_params
        ``network="rtl"``: passed to :class:`boards.top.BoardTop` (``lanes``,
        ``fifo_depth``, ``link_depth``).

    Attributes
    ----------
    cycles : int
        Clock cycles simulated so far.
    leds : int
        ``network="rtl"``: the LED pins at the last check (see :class:`BoardTop`).
    """

    def __init__(self, model, divisor=4, latency=10, network="rtl", **top_params):
        if network not in ("rtl", "reference"):
            raise ValueError(f"network must be 'rtl' or 'reference', not {network!r}")
        self.model = model
        self.divisor = divisor
        self.latency = latency
        self.network = network
        self.version = pr.VersionAnswer.for_model(model)
        if network == "rtl":
            from .top import BoardTop
            self.top = BoardTop(model, divisor, **top_params)
            self.link = None
        else:
            self.top = None
            self.link = HostLink(divisor, self.version, score_width=32, depth=256)
        self.cycles = 0
        self.leds = 0

    def _network_outcome(self, words):
        inp = self.model.input
        counts = pr.words_to_counts(words, inp.shape, inp.timesteps)
        res = reference_run(self.model, BinnedEvents.from_frames(counts), record=False)
        overflow = any(bool(np.any(o)) for o in res.overflow.values())
        return res.prediction, [int(s) for s in res.scores], overflow

    def serve(self):
        """Start the simulation on a new pty in a daemon thread; returns ``(path, stop)``."""
        def worker(master, stopping):
            if self.network == "rtl":
                return self._rtl_sim(master, stopping).run
            return self._reference_sim(master, stopping).run

        return run_on_pty(worker, join_timeout=5.0)

    def _rtl_sim(self, master, stopping):
        dut = self.top
        div = self.divisor

        async def rx_driver(ctx):
            # host -> rx pin: poll the pty every 64 cycles, send its bytes bit by bit
            while not stopping.is_set():
                data = _poll(master)
                if data is None:
                    return
                for b in data:
                    for level in _uart_levels(b):
                        ctx.set(dut.rx, level)
                        await ctx.tick().repeat(div)
                        self.cycles += div
                if not data:
                    await ctx.tick().repeat(64)
                    self.cycles += 64
                self.leds = ctx.get(dut.leds)

        async def tx_monitor(ctx):
            # tx pin -> host: wait for a start bit, sample every bit in its middle
            while True:
                await ctx.negedge(dut.tx)
                await ctx.tick().repeat(div + div // 2)
                byte = 0
                for i in range(8):
                    byte |= ctx.get(dut.tx) << i
                    await ctx.tick().repeat(div)
                try:
                    os.write(master, bytes([byte]))
                except OSError:
                    return

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(rx_driver)
        sim.add_testbench(tx_monitor, background=True)
        return sim

    def _reference_sim(self, master, stopping):
        dut = self.link
        div = self.divisor

        async def bench(ctx):
            rx_levels = collections.deque()
            tx_state, tx_timer, tx_bits, tx_byte = "idle", 0, 0, 0
            words = []
            answer_at = None
            outcome = None
            ctx.set(dut.events.ready, 1)
            cycle = 0
            while not stopping.is_set():
                # host -> rx pin
                if not rx_levels and cycle % 64 == 0:
                    data = _poll(master)
                    if data is None:
                        return
                    for b in data:
                        for level in _uart_levels(b):
                            rx_levels.extend([level] * div)
                ctx.set(dut.rx, rx_levels.popleft() if rx_levels else 1)
                # the network: collect words, answer after `latency` cycles
                if ctx.get(dut.events.valid):
                    w = ctx.get(dut.events.payload)
                    words.append(w)
                    if pr.decode_word(w)[0] == END_SAMPLE:
                        outcome = self._network_outcome(words)
                        words = []
                        answer_at = cycle + self.latency
                ctx.set(dut.result_valid, 0)
                if answer_at is not None and cycle >= answer_at:
                    pred, scores, overflow = outcome
                    ctx.set(dut.prediction, pred)
                    ctx.set(dut.scores, scores)
                    ctx.set(dut.state_overflow, int(overflow))
                    ctx.set(dut.result_valid, 1)
                    answer_at = None
                elif answer_at is None:
                    ctx.set(dut.state_overflow, 0)
                if ctx.get(dut.net_reset):
                    words, answer_at = [], None
                # tx pin -> host
                tx = ctx.get(dut.tx)
                if tx_state == "idle":
                    if not tx:
                        tx_state, tx_timer, tx_bits, tx_byte = "data", div // 2 + div, 0, 0
                else:
                    tx_timer -= 1
                    if tx_timer == 0:
                        if tx_bits < 8:
                            tx_byte |= tx << tx_bits
                            tx_bits += 1
                            tx_timer = div
                        else:
                            os.write(master, bytes([tx_byte]))
                            tx_state = "idle"
                await ctx.tick()
                cycle += 1
                self.cycles = cycle

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        return sim


def _poll(master):
    """The bytes the host has written to the pty so far (``b""`` for none), or ``None``
    once the pty is closed."""
    r, _, _ = select.select([master], [], [], 0)
    if not r:
        return b""
    try:
        return os.read(master, 256)
    except OSError:
        return None


def _uart_levels(b):
    """The rx pin levels of one 8N1 byte: start bit, 8 data bits LSB first, stop bit."""
    return [0] + [(b >> i) & 1 for i in range(8)] + [1]


def main(argv=None):
    """``python -m boards.simboard --model DIR [--divisor N] [--reference]``: serve the
    simulated board on a new pty and print its path (Ctrl-C stops)."""
    from sim.cli import ArgumentParser, CliError
    from sim.model import load_model

    ap = ArgumentParser(prog="python -m boards.simboard", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model directory")
    ap.add_argument("--divisor", type=int, default=4, help="UART cycles per bit (default 4)")
    ap.add_argument("--reference", action="store_true",
                    help="the link alone with the reference as the network")
    args = ap.parse_args(argv)
    if args.divisor < 2:
        raise CliError(f"--divisor: {args.divisor} must be at least 2")
    model = load_model(args.model)
    board = SimBoard(model, args.divisor, network="reference" if args.reference else "rtl")
    return serve_until_interrupted(*board.serve())


if __name__ == "__main__":
    from sim.cli import run_main
    run_main(main, prog="python -m boards.simboard")
