"""Linear (fully connected) engine: an input event at index ``i`` adds column ``i``.

The input may be any tensor: the flatten is implicit, ``i = (c*H + y)*W + x``. The
``N_out`` outputs are held as ``G = ceil(N_out/L)`` state words of ``L`` lanes; the
weight ROM word at ``wa = i*G + g`` holds ``w[g*L + j, i]`` in lane ``j``. An event
issues ``G`` updates ``(sa = g, wa = i*G + g)``.

Pipeline: input -> stage A (``c*H*W*G + y*W*G`` and ``x*G``: constant multiplies and one
add) -> stage B (one add) -> :class:`~hw.synapse.SynapseIterator` -> ``out`` (the stage
handshakes are :class:`~hw.synapse.SynapseEngine`'s).
Throughput: ``G`` cycles per event, one update of ``L`` lanes per cycle, no bubbles
between events; tokens cost one cycle.
"""

from types import SimpleNamespace

from amaranth.hdl import Const, Signal
from amaranth.utils import bits_for

from sim.geometry import KIND_BITS, shape3
from sim.registry import KINDS

from .synapse import SynapseEngine, SynapseIterator

__all__ = ["LinearEngine"]


class LinearEngine(SynapseEngine):
    """Address generator of a ``linear`` layer.

    Parameters
    ----------
    in_shape : tuple
        Shape of the input tensor (``(C, H, W)`` or ``(N,)``).
    groups : int
        ``G = ceil(N_out / lanes)``.
    taps, tap_field
        Taps of the synapse; the input has a ``tap`` field (default: ``taps > 1``).

    Attributes
    ----------
    inp, out, busy
        As :class:`~hw.synapse.SynapseEngine`.
    regs : SimpleNamespace
        Stage registers ``a_valid``, ``a_kind``, ``a_t``, ``a_x`` (stage A) and the
        iterator ``iter`` (stage B is its ``job`` port), for the invariants of the formal
        proofs (``tests/formal``); not an interface.
    """
    def __init__(self, in_shape, groups, taps=1, tap_field=None):
        self.in_shape = shape3(in_shape)
        self.G = groups
        C, H, W = self.in_shape
        self.n_in = C * H * W
        super().__init__(in_shape, groups, self.n_in * groups, taps, tap_field)
        # made here rather than in elaborate() so that a formal harness can name them
        waw = bits_for(self.wa_depth - 1)
        self.regs = SimpleNamespace(
            iter=SynapseIterator(sa_depth=self.sa_depth, wa_depth=self.wa_depth, n_max=1,
                                 groups=groups, col_step=0, row_sa=0, row_wa=0),
            a_valid=Signal(name="a_valid"), a_kind=Signal(KIND_BITS, name="a_kind"),
            a_t=Signal(waw + 1, name="a_t"), a_x=Signal(waw + 1, name="a_x"))

    @classmethod
    def for_synapse(cls, syn, src_shape, out_shape, groups, lanes=None):
        return cls(src_shape, groups, **cls.tap_kw(syn))

    def stage_a(self, p):
        """``c*H*W*G + y*W*G`` and ``x*G``: constant multiplies and one add."""
        C, H, W = self.in_shape
        G = self.G
        r = self.regs
        return [r.a_t.eq(p.c * (H * W * G) + p.y * (W * G)), r.a_x.eq(p.x * G)]

    def stage_b(self):
        """One add; every event is kept (each reaches all ``G`` groups)."""
        r = self.regs
        return Const(1), {"sa": 0, "wa": r.a_t + r.a_x, "ny": 1, "nx": 1}


KINDS["linear"].attach("hw.engine", LinearEngine)
