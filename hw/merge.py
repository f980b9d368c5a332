"""Token-synchronous merge: the spike streams of the banks of one layer into one stream.

The ``n`` inputs come from cores that take the same tokens in the same order (the banks
of a layer, :mod:`hw.layer`), so each input's stream is spikes, then a token
(:data:`~hw.stream.END_STEP` or :data:`~hw.stream.END_SAMPLE`), spikes, a token, ... with
the same token sequence on every input. The output carries every spike once, and each
token once, after the spikes of that step of every input.

Handshake (per input ``spk[i] = inp[i].valid & (kind == SPIKE)``; ``tok = AND_i
(inp[i].valid & (kind != SPIKE))``: every input offers its token; ``lock``: the input whose
spike was offered and not taken in the previous cycle)::

    pick          = lock if held, else the lowest i with spk[i]
    out.valid     = OR_i spk[i] | tok
    out.payload   = inp[pick].payload (a spike), else inp[0].payload (the token)
    inp[i].ready  = out.ready & (pick == i   if some spk[i]
                                 else tok)

    at the edge:  lock <= pick  when a spike is offered and out.ready is low, else none

So an input that offers its token waits (its core holds it) until every input offers
one; then they all move in the one cycle in which the token leaves. ``out.valid`` never
depends on ``out.ready``, and an offered spike stays offered (the ``lock``), so the
stream rules of :mod:`hw.stream` hold on ``out`` when they hold on every input. A
1-input merge is a wire.

Cycles: a spike passes in the cycle it is offered when ``out.ready`` is high (no
register on the path); the token leaves in the first cycle in which every input offers
it and no spike is offered.

The plain Python model of this block is :class:`sim.cycles.MergeModel`.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sim.geometry import SPIKE

from .stream import event_signature

__all__ = ["Merge"]


class Merge(wiring.Component):
    """Merge ``n`` token-synchronous event streams (see the module docstring).

    Parameters
    ----------
    n : int
        Number of inputs, ``>= 1``.
    shape : tuple
        Tensor shape of the events (:func:`hw.stream.event_signature`).

    Attributes
    ----------
    inp : In(event stream of ``shape``), an array of ``n``
    out : Out(event stream of ``shape``)
    locked, lock : Signal
        The lock register (for the formal harness and waveforms, not an interface).
    """
    def __new__(cls, n, shape, *, src_loc_at=0):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Merge: n = {n!r} must be an integer >= 1")
        return super().__new__(cls, src_loc_at=1 + src_loc_at)

    def __init__(self, n, shape):
        self.n = n
        self.shape = tuple(shape)
        super().__init__({
            "inp": In(event_signature(self.shape)).array(n),
            "out": Out(event_signature(self.shape)),
        })
        self.locked = Signal(name="locked")
        self.lock = Signal(range(max(2, n)), name="lock")

    def elaborate(self, platform):
        m = Module()
        n = self.n
        if n == 1:
            wiring.connect(m, wiring.flipped(self.inp[0]), wiring.flipped(self.out))
            return m
        spk = [i.valid & (i.payload.kind == SPIKE) for i in self.inp]
        tok = 1
        for i in self.inp:
            tok = tok & i.valid & (i.payload.kind != SPIKE)
        any_spk = Signal()
        m.d.comb += any_spk.eq(Cat(*spk).any())
        pick = Signal.like(self.lock)
        with m.If(self.locked):
            m.d.comb += pick.eq(self.lock)
        with m.Else():
            for i in reversed(range(n)):
                with m.If(spk[i]):
                    m.d.comb += pick.eq(i)
        m.d.comb += [self.out.valid.eq(any_spk | tok),
                     self.out.payload.eq(self.inp[0].payload)]
        with m.If(any_spk):
            with m.Switch(pick):
                for i in range(n):
                    with m.Case(i):
                        m.d.comb += self.out.payload.eq(self.inp[i].payload)
        for i, inp in enumerate(self.inp):
            m.d.comb += inp.ready.eq(self.out.ready & (any_spk & (pick == i) | ~any_spk & tok))
        m.d.sync += [self.locked.eq(any_spk & ~self.out.ready), self.lock.eq(pick)]
        return m
