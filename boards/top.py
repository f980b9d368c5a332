"""The board top: host link, network, LEDs and a reset button.

Data flow::

    uart rx -> HostLink (UART, deframer, input checks) -> Network (hw.network) -> done
    uart tx <- HostLink (answers RESULT / STATUS / VERSION) <- prediction, scores, overflow

:class:`BoardTop` is a :class:`wiring.Component` whose ports are the board's pins
(``rx``, ``tx``, ``leds``, ``button``), so the same design runs in simulation
(``platform=None``: the ports are driven by a testbench, see :mod:`boards.simboard`) and
on a board (the ports are connected to the resources named in :mod:`boards.platforms`:
the UART, the LEDs and a button).

Reset
    A ``RESET`` frame from the host (the link's ``net_reset`` pulse) or the button
    (synchronised, active while held) resets every register of the network (one cycle
    later: the reset is registered); the button
    also resets the link (its flags, counters and buffers). The state RAMs keep whatever
    an interrupted sample had accumulated, so after a reset the top sends one
    end-of-sample token into the network (the layers' clear phase zeroes every state
    word) and swallows the result of that flush; words from the host wait in the link's
    buffer meanwhile (a few hundred cycles at most: one clear pass per layer).

LEDs
    The first ``ceil(log2(n_classes))`` LEDs show the last prediction in binary (LED 0
    is the least significant bit); the remaining LEDs show the link's sticky error flags:
    the first one any input error (event out of range, dropped events, bad frame, UART,
    token sequence), the next one a state overflow, the next one "a result was sent since
    the last reset". On a board with too few LEDs for all of this (Arty A7: 4 LEDs for 10
    classes) the error indication moves to the red channel of the first RGB LED and the
    overflow to its blue channel when the board has RGB LEDs.

Timing: the network's cycle counts are those of :mod:`hw.network` (the cycle model
:mod:`sim.cycles` predicts them); the link adds the UART time of the words.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.build import ResourceError
from amaranth.hdl import ResetInserter
from amaranth.lib import data, io, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from sim.model import Model, load_model

from sim.geometry import END_SAMPLE

from hw.network import Network

from . import protocol as pr
from .link import HostLink
from .protocol_rtl import WORD_LAYOUT
from .uart import pin_members

__all__ = ["BoardTop", "led_plan", "COORD_BITS"]

#: Width of the network's input coordinates: the protocol's event word fields (14 bits).
COORD_BITS = pr.X_BITS



def led_plan(n_classes, n_leds):
    """What each LED shows: a list of ``"pred0"``, ``"pred1"``..., ``"error"``,
    ``"overflow"``, ``"result"`` (as many entries as fit in ``n_leds``)."""
    bits = max(1, ceil_log2(max(2, n_classes)))
    plan = [f"pred{i}" for i in range(min(bits, n_leds))]
    for what in ("error", "overflow", "result"):
        if len(plan) < n_leds:
            plan.append(what)
    return plan


def _raw(platform, name, number):
    """``dir`` for requesting every subsignal of a resource as a raw port."""
    return {sub.name: "-" for sub in platform.lookup(name, number).ios}


class BoardTop(wiring.Component):
    """Host link + network + LEDs + reset button (see the module docstring).

    Parameters
    ----------
    model : sim.model.Model or path
    divisor : int
        UART clock cycles per bit (``Board.uart_divisor()``).
    board : boards.platforms.Board, optional
        When given, :meth:`elaborate` with a platform connects the ports to the board's
        UART, LEDs and button resources.
    n_leds : int, optional
        Width of ``leds`` (default: the board's LED count, else 8).
    lanes, fifo_depth :
        Passed to :class:`hw.network.Network`.
    link_depth : int
        Event buffer depth of the link in words.

    Attributes
    ----------
    rx : In(1), tx : Out(1)
        UART pins (idle high).
    leds : Out(n_leds)
    button : In(1)
        Active high (amaranth inverts active-low buttons when it requests them).
    rgb_error, rgb_overflow : Out(1)
        What the first RGB LED shows on boards that have one.
    """

    def __init__(self, model, divisor, *, board=None, n_leds=None, lanes=None, fifo_depth=16,
                 link_depth=256, banks=None):
        if not isinstance(model, Model):
            model = load_model(model)
        self.model = model
        self.board = board
        self.divisor = divisor
        if n_leds is None:
            n_leds = len(board.leds) if board is not None else 8
        self.n_leds = n_leds
        self.network = Network(model, lanes=lanes, fifo_depth=fifo_depth, coord_bits=COORD_BITS,
                               banks=banks)
        self.version = pr.VersionAnswer.for_model(model)
        self.link = HostLink(divisor, self.version, score_width=32, depth=link_depth)
        self.plan = led_plan(self.network.n_classes, n_leds)
        super().__init__({
            **pin_members(),
            "leds": Out(n_leds),
            "button": In(1),
            "rgb_error": Out(1),
            "rgb_overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        net, link = self.network, self.link

        # -- reset sources
        button = Signal()
        m.submodules.button_sync = FFSynchronizer(self.button, button)
        # registered: the reset of the whole network fans out from a flip-flop
        net_rst = Signal()
        m.d.sync += net_rst.eq(link.net_reset | button)
        m.submodules.link = ResetInserter(button)(link)
        m.submodules.network = ResetInserter(net_rst)(net)

        # -- flush after a reset: one end-of-sample token, its result swallowed
        flush = Signal()      # token still to send
        discard = Signal()    # the next `done` is the flush's
        with m.If(net_rst):
            m.d.sync += [flush.eq(1), discard.eq(1)]
        with m.Elif(flush & net.inp.ready):
            m.d.sync += flush.eq(0)

        word = data.View(WORD_LAYOUT, link.events.payload)
        with m.If(flush & ~net_rst):
            m.d.comb += [net.inp.valid.eq(1), net.inp.payload.kind.eq(END_SAMPLE)]
        with m.Else():
            m.d.comb += [
                net.inp.valid.eq(link.events.valid & ~net_rst),
                net.inp.payload.kind.eq(word.kind),
                net.inp.payload.p.eq(word.p),
                net.inp.payload.y.eq(word.y),
                net.inp.payload.x.eq(word.x),
                link.events.ready.eq(net.inp.ready & ~net_rst),
            ]

        # `done` strobes in the cycle the arg-max ends; `prediction` is registered then,
        # so the link takes the outcome one cycle later
        done = Signal()
        m.d.sync += done.eq(net.done & ~net_rst)
        result = Signal()
        with m.If(done & ~net_rst):
            with m.If(discard):
                m.d.sync += discard.eq(0)
            with m.Else():
                m.d.comb += result.eq(1)
        m.d.comb += [
            link.result_valid.eq(result),
            link.prediction.eq(net.prediction),
            link.state_overflow.eq(net.ovf_sticky.as_value().any()),
        ]
        for c in range(net.n_classes):
            m.d.comb += link.scores[c].eq(net.scores[c])

        # -- pins
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx)]

        # -- LEDs
        pred = Signal(16)
        seen = Signal()
        with m.If(net_rst):
            m.d.sync += [pred.eq(0), seen.eq(0)]
        with m.Elif(result):
            m.d.sync += [pred.eq(net.prediction), seen.eq(1)]
        error = (link.flags & pr.LINK_ERROR_FLAGS).any()
        overflow = (link.flags & pr.FLAG_STATE_OVERFLOW).any()
        bits = []
        for what in self.plan:
            if what.startswith("pred"):
                bits.append(pred[int(what[4:])])
            else:
                bits.append({"error": error, "overflow": overflow, "result": seen}[what])
        if bits:
            m.d.comb += self.leds.eq(Cat(*bits))
        m.d.comb += [self.rgb_error.eq(error), self.rgb_overflow.eq(overflow)]

        if platform is not None and self.board is not None:
            self._connect(m, platform)
        return m

    def _connect(self, m, platform):
        """Connect the ports to the board's resources (through I/O buffers)."""
        b = self.board
        uart = platform.request(*b.uart, dir=_raw(platform, *b.uart))
        m.submodules.rx_buf = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx = io.Buffer("o", uart.tx)
        m.d.comb += [self.rx.eq(rx.i), tx.o.eq(self.tx)]
        for i, (name, number) in enumerate(b.leds[:self.n_leds]):
            m.submodules[f"led_buf{i}"] = led = io.Buffer("o", platform.request(name, number,
                                                                              dir="-"))
            m.d.comb += led.o.eq(self.leds[i])
        m.submodules.button_buf = btn = io.Buffer("i", platform.request(*b.button, dir="-"))
        m.d.comb += self.button.eq(btn.i)
        if "error" not in self.plan:
            try:
                rgb = platform.request("rgb_led", 0, dir=_raw(platform, "rgb_led", 0))
            except ResourceError:   # the board has no RGB LED
                rgb = None
            if rgb is not None:
                m.submodules.rgb_r = r = io.Buffer("o", rgb.r)
                m.submodules.rgb_b = bl = io.Buffer("o", rgb.b)
                m.d.comb += [r.o.eq(self.rgb_error), bl.o.eq(self.rgb_overflow)]
