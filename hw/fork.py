"""Eager broadcast fork: one event stream to ``n`` consumers, lossless under
back-pressure from any of them.

Handshake (verilog-axis ``axis_broadcast`` style, per output ``i`` a registered flag
``sent[i]``: output ``i`` has taken the word now on ``inp``)::

    out[i].valid   = inp.valid & ~sent[i]
    out[i].payload = inp.payload
    inp.ready      = AND_i (sent[i] | out[i].ready)

    at the edge:  inp.valid & inp.ready        -> sent[i] <= 0 for every i
                  else                         -> sent[i] <= sent[i] | (out[i].valid & out[i].ready)

Every consumer takes every word exactly once, in order: the word leaves ``inp`` in the
cycle in which the last consumer that had not yet taken it does (all in the same cycle
when every ``out[i].ready`` is high: no bubble, one word per cycle). A consumer that is
not ready only holds back the words after the current one; the others take the current
word as soon as they are ready (eager), so no consumer waits for another one's
*later* words (no starvation, no deadlock that the consumers do not have alone).

``out[i].valid`` depends on ``inp.valid`` and ``sent`` only, never on a ``ready``
(the stream rules of :mod:`hw.stream` hold on every output); ``inp.ready`` depends
combinationally on the ``out[i].ready``. A 1-output fork is a wire (no register).

The plain Python model of this block is :class:`sim.cycles.ForkModel`.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .stream import event_signature

__all__ = ["Fork"]


class Fork(wiring.Component):
    """Broadcast ``inp`` to ``n`` outputs (see the module docstring).

    Parameters
    ----------
    n : int
        Number of outputs, ``>= 1``.
    shape : tuple
        Tensor shape of the events (:func:`hw.stream.event_signature`).

    Attributes
    ----------
    inp : In(event stream of ``shape``)
    out : Out(event stream of ``shape``), an array of ``n``
    sent : list of Signal
        The ``sent[i]`` registers (empty for ``n == 1``); for the formal harness and
        waveforms, not an interface.
    """
    def __new__(cls, n, shape, *, src_loc_at=0):
        # checked before the object exists (no "created but never used" warning)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Fork: n = {n!r} must be an integer >= 1")
        return super().__new__(cls, src_loc_at=1 + src_loc_at)

    def __init__(self, n, shape):
        self.n = n
        self.shape = tuple(shape)
        super().__init__({
            "inp": In(event_signature(self.shape)),
            "out": Out(event_signature(self.shape)).array(n),
        })
        self.sent = [Signal(name=f"sent{i}") for i in range(n)] if n > 1 else []

    def elaborate(self, platform):
        m = Module()
        if self.n == 1:
            wiring.connect(m, wiring.flipped(self.inp), wiring.flipped(self.out[0]))
            return m
        ready = 1
        for i, (o, sent) in enumerate(zip(self.out, self.sent)):
            m.d.comb += [o.valid.eq(self.inp.valid & ~sent), o.payload.eq(self.inp.payload)]
            ready = ready & (sent | o.ready)
        m.d.comb += self.inp.ready.eq(ready)
        with m.If(self.inp.valid & self.inp.ready):
            m.d.sync += [sent.eq(0) for sent in self.sent]
        with m.Else():
            m.d.sync += [sent.eq(sent | (o.valid & o.ready))
                         for o, sent in zip(self.out, self.sent)]
        return m
