"""A small 8N1 UART (receiver and transmitter) with byte streams.

The board's link to the host: 8 data bits, no parity, 1 stop bit, least significant
bit first, line idle high. Both directions use one ``divisor = clk_freq / baud`` (clock
cycles per bit); :func:`baud_divisor` computes it and refuses a baud rate that the
clock does not divide closely enough.

Receiver (:class:`UARTRx`)
    - the ``rx`` pin goes through a two-flop synchronizer (:class:`~amaranth.lib.cdc.FFSynchronizer`);
    - a falling edge starts a frame; the start bit is checked again in its middle
      (``divisor // 2`` cycles later; a glitch shorter than half a bit is ignored);
    - every data bit and the stop bit are sampled in their middle, ``divisor`` cycles apart;
    - a low stop bit is a *framing error*: the byte is dropped, ``framing_errors``
      counts it (saturating) and the sticky ``framing_error`` flag rises; the receiver
      then waits for the line to go idle (high) before it looks for a new start bit,
      so a held-low line (break) counts once;
    - a received byte waits in an output register until the ``stream`` consumer takes
      it; a byte that completes while the previous one is still waiting is dropped
      and counted in ``overruns`` (any stall shorter than one character time is safe).

Transmitter (:class:`UARTTx`)
    takes one byte from ``stream`` when idle and shifts out start bit, 8 data bits and
    stop bit, one bit per ``divisor`` cycles; back-to-back bytes leave no idle gap.

Baud rate tolerance: a UART link works while the receiver's sampling point stays
inside every bit of the character, i.e. while the total rate mismatch of both ends
stays below about 5 % (half a bit over ten bits); the usual design budget is 2 % per
side. :func:`baud_divisor` defaults to exact division (``tolerance=0``) and accepts
up to 2 % when asked.
"""

from amaranth import Module, Signal, Cat, Const
from amaranth.lib import wiring, stream
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTError", "baud_divisor", "pin_members", "UARTRx", "UARTTx", "UART",
           "MIN_DIVISOR", "MAX_TOLERANCE"]

#: Smallest divisor accepted: mid-bit sampling needs a few clock cycles per bit.
MIN_DIVISOR = 4
#: Largest relative baud rate error :func:`baud_divisor` may be asked to accept.
MAX_TOLERANCE = 0.02


class UARTError(ValueError):
    """A baud rate or divisor that the UART cannot use."""


def baud_divisor(clk_freq, baud, tolerance=0.0):
    """Clock cycles per bit for ``baud`` at ``clk_freq``.

    Parameters
    ----------
    clk_freq : int or float
        Clock frequency in Hz.
    baud : int
        Bits per second.
    tolerance : float
        Largest accepted relative error of the resulting bit rate, ``0`` (default)
        for exact division, at most :data:`MAX_TOLERANCE`.

    Returns
    -------
    int

    Raises
    ------
    UARTError
        When the nearest divisor misses ``baud`` by more than ``tolerance`` or is
        smaller than :data:`MIN_DIVISOR`.
    """
    if not 0 <= tolerance <= MAX_TOLERANCE:
        raise UARTError(f"baud tolerance {tolerance} is outside 0..{MAX_TOLERANCE}")
    if baud <= 0 or clk_freq <= 0:
        raise UARTError(f"baud rate {baud} and clock {clk_freq} Hz must be positive")
    divisor = max(1, round(clk_freq / baud))
    actual = clk_freq / divisor
    error = abs(actual - baud) / baud
    if error > tolerance + 1e-12:
        raise UARTError(
            f"{clk_freq / 1e6:g} MHz does not divide {baud} baud "
            f"(nearest divisor {divisor} gives {actual:.0f} baud, {error:.2%} off; "
            f"allowed {tolerance:.2%}); pick a baud rate with an integer divisor")
    if divisor < MIN_DIVISOR:
        raise UARTError(f"{baud} baud at {clk_freq / 1e6:g} MHz gives divisor {divisor}, "
                        f"below the minimum {MIN_DIVISOR}")
    return divisor


def pin_members():
    """The UART pins as signature members: ``rx`` (``In``) and ``tx`` (``Out``), idle high."""
    return {"rx": In(1, init=1), "tx": Out(1, init=1)}


def _rx_status_members(counter_width):
    return {"framing_error": Out(1), "framing_errors": Out(counter_width),
            "overruns": Out(counter_width), "clear": In(1)}


class _DivisorChecked(wiring.Component):
    """A component whose first parameter is the divisor, refused before the object exists.

    Checking in ``__new__`` rather than ``__init__`` means that no half-built component
    is left behind, so Amaranth does not warn that a refused design was "created but
    never used" (that warning would follow the one-line error of a command-line tool).
    """

    def __new__(cls, divisor, *args, **kwargs):
        if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
            raise UARTError(f"divisor must be an integer >= {MIN_DIVISOR}, not {divisor!r}")
        return super().__new__(cls, divisor, *args, **kwargs)


class UARTRx(_DivisorChecked):
    """8N1 receiver.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= :data:`MIN_DIVISOR`).
    counter_width : int
        Width of the saturating error counters.

    Attributes
    ----------
    rx : In(1)
        The line (asynchronous; synchronized inside). Idle high.
    stream : Out(stream.Signature(8))
        Received bytes.
    framing_error : Out(1)
        Sticky: some character had a low stop bit. Cleared by ``clear``.
    framing_errors : Out(counter_width)
        Number of characters dropped for a low stop bit (saturating).
    overruns : Out(counter_width)
        Number of bytes dropped because the previous one was not taken in time.
    clear : In(1)
        Clears the flag and both counters.
    """

    def __init__(self, divisor, counter_width=16):
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "stream": Out(stream.Signature(8)),
            **_rx_status_members(counter_width),
        })

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(self.divisor))
        bit = Signal(range(9))
        shreg = Signal(8)
        full = Signal()
        m.d.comb += [self.stream.valid.eq(full)]
        with m.If(self.stream.ready):
            m.d.sync += full.eq(0)

        def saturating_inc(counter):
            with m.If(counter != (1 << len(counter)) - 1):
                m.d.sync += counter.eq(counter + 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):                      # glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), bit.eq(bit + 1),
                                 timer.eq(self.divisor - 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    with m.If(full & ~self.stream.ready):
                        saturating_inc(self.overruns)
                    with m.Else():
                        m.d.sync += [self.stream.payload.eq(shreg), full.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += self.framing_error.eq(1)
                    saturating_inc(self.framing_errors)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"

        with m.If(self.clear):
            m.d.sync += [self.framing_error.eq(0), self.framing_errors.eq(0),
                         self.overruns.eq(0)]
        return m


class UARTTx(_DivisorChecked):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= :data:`MIN_DIVISOR`).

    Attributes
    ----------
    stream : In(stream.Signature(8))
        Bytes to send; taken one at a time when the transmitter is idle.
    tx : Out(1)
        The line, idle high.
    busy : Out(1)
        A character is on the line.
    """

    def __init__(self, divisor):
        self.divisor = divisor
        super().__init__({
            "stream": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        shreg = Signal(10, init=(1 << 10) - 1)     # stop, data[7:0], start (sent LSB first)
        left = Signal(range(11))
        # ready in the last cycle of the stop bit, so that back-to-back bytes leave no gap
        last = (left == 0) | ((left == 1) & (timer == 0))
        m.d.comb += [self.tx.eq(shreg[0]), self.busy.eq(left != 0),
                     self.stream.ready.eq(last)]
        with m.If(last & self.stream.valid):
            m.d.sync += [shreg.eq(Cat(Const(0, 1), self.stream.payload, Const(1, 1))),
                         left.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(left == 0):
            pass
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [shreg.eq(Cat(shreg[1:], Const(1, 1))), left.eq(left - 1),
                         timer.eq(self.divisor - 1)]
        return m


class UART(_DivisorChecked):
    """Receiver and transmitter sharing one divisor.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, usually from :func:`baud_divisor`.

    Attributes
    ----------
    rx : In(1)
    tx : Out(1)
    rx_stream : Out(stream.Signature(8))
    tx_stream : In(stream.Signature(8))
    framing_error, framing_errors, overruns, clear
        As in :class:`UARTRx`.
    """

    def __init__(self, divisor, counter_width=16):
        self.divisor = divisor
        self.counter_width = counter_width
        super().__init__({
            **pin_members(),
            "rx_stream": Out(stream.Signature(8)),
            "tx_stream": In(stream.Signature(8)),
            **_rx_status_members(counter_width),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UARTRx(self.divisor, self.counter_width)
        m.submodules.tx = tx = UARTTx(self.divisor)
        wiring.connect(m, wiring.flipped(self.rx_stream), rx.stream)
        wiring.connect(m, tx.stream, wiring.flipped(self.tx_stream))
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx), rx.clear.eq(self.clear)]
        for name, member in _rx_status_members(self.counter_width).items():
            if member.flow == Out:
                m.d.comb += getattr(self, name).eq(getattr(rx, name))
        return m
