"""Linear (fully connected) engine: an input event at index ``i`` adds column ``i``.

The input may be any tensor: the flatten is implicit, ``i = (c*H + y)*W + x``. The
``N_out`` outputs are held as ``G = ceil(N_out/L)`` state words of ``L`` lanes; the
weight ROM word at ``wa = i*G + g`` holds ``w[g*L + j, i]`` in lane ``j``. An event
issues ``G`` updates ``(sa = g, wa = i*G + g)``.

Pipeline: input -> stage A (``c*H*W*G + y*W*G`` and ``x*G``: constant multiplies and one
add) -> stage B (one add) -> :class:`~hw.synapse.SynapseIterator` -> ``out``.
Throughput: ``G`` cycles per event, one update of ``L`` lanes per cycle, no bubbles
between events; tokens cost one cycle.
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from sim.geometry import KIND_BITS, shape3

from .stream import event_signature
from .synapse import SynapseIterator, UpdateLayout

__all__ = ["LinearEngine"]


class LinearEngine(wiring.Component):
    """Address generator of a ``linear`` layer.

    Parameters
    ----------
    in_shape : tuple
        Shape of the input tensor (``(C, H, W)`` or ``(N,)``).
    groups : int
        ``G = ceil(N_out / lanes)``.

    Attributes
    ----------
    inp : In(event stream of ``in_shape``)
    out : Out(stream of :class:`~hw.synapse.UpdateLayout`)
    busy : Out(1)
        An event or token is inside the engine.
    regs : SimpleNamespace
        Stage registers ``a_valid``, ``a_kind``, ``a_t``, ``a_x`` (stage A) and the
        iterator ``iter`` (stage B is its ``job`` port), for the invariants of the formal
        proofs (``tests/formal``); not an interface.
    """
    def __init__(self, in_shape, groups):
        self.in_shape = shape3(in_shape)
        self.G = groups
        C, H, W = self.in_shape
        self.n_in = C * H * W
        self.sa_depth = groups
        self.wa_depth = self.n_in * groups
        super().__init__({
            "inp": In(event_signature(in_shape)),
            "out": Out(stream.Signature(UpdateLayout(self.sa_depth, self.wa_depth))),
            "busy": Out(1),
        })
        # made here rather than in elaborate() so that a formal harness can name them
        waw = bits_for(self.wa_depth - 1)
        self.regs = SimpleNamespace(
            iter=SynapseIterator(sa_depth=self.sa_depth, wa_depth=self.wa_depth, n_max=1,
                                 groups=groups, col_step=0, row_sa=0, row_wa=0),
            a_valid=Signal(name="a_valid"), a_kind=Signal(KIND_BITS, name="a_kind"),
            a_t=Signal(waw + 1, name="a_t"), a_x=Signal(waw + 1, name="a_x"))

    def elaborate(self, platform):
        m = Module()
        C, H, W = self.in_shape
        G = self.G
        r = self.regs
        it = m.submodules.iter = r.iter
        wiring.connect(m, wiring.flipped(self.out), it.out)
        a_valid, a_kind, a_t, a_x = r.a_valid, r.a_kind, r.a_t, r.a_x
        b_valid = Signal()
        job = it.job
        b_ready = ~b_valid | job.ready

        p = self.inp.payload
        m.d.comb += self.inp.ready.eq(~a_valid | b_ready)
        with m.If(self.inp.valid & self.inp.ready):
            m.d.sync += [
                a_valid.eq(1), a_kind.eq(p.kind),
                a_t.eq(p.c * (H * W * G) + p.y * (W * G)),
                a_x.eq(p.x * G),
            ]
        with m.Elif(b_ready):
            m.d.sync += a_valid.eq(0)

        with m.If(a_valid & b_ready):
            m.d.sync += [
                b_valid.eq(1),
                job.payload.kind.eq(a_kind),
                job.payload.sa.eq(0),
                job.payload.wa.eq(a_t + a_x),
                job.payload.ny.eq(1),
                job.payload.nx.eq(1),
            ]
        with m.Elif(job.ready):
            m.d.sync += b_valid.eq(0)
        m.d.comb += [job.valid.eq(b_valid), self.busy.eq(a_valid | b_valid | it.out.valid)]
        return m
