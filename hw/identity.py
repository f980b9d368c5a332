"""Identity synapse engine: an input event at ``(c, y, x)`` adds ``w[c]`` to neuron
``(c, y, x)`` of a layer of the same shape, and to nothing else.

One event makes exactly one update:

* state address ``sa = (y*W + x)*G + c // L`` (the word of channel ``c`` at ``(y, x)``;
  ``G = ceil(C/L)`` words per position);
* weight address ``wa = c`` (``+ tap*C`` with taps): ROM word ``c`` holds ``w[c]`` in
  lane ``c % L`` and 0 in every other lane (:meth:`IdentityEngine.lane_rom`), so the
  core's read-modify-write adds the weight to the one neuron and 0 to the other lanes of
  the word: no special case in the core.

Pipeline: input -> stage A (``y*W*G + x*G``: constant multiplies and one add; ``c // L``
from a table) -> stage B (one add) -> :class:`~hw.synapse.SynapseIterator` (one update
per job) -> ``out`` (the stage handshakes are :class:`~hw.synapse.SynapseEngine`'s).
Throughput: one update (one event) per cycle, no bubbles between events; tokens cost one
cycle.
"""

from types import SimpleNamespace

from amaranth.hdl import Array, Const, Signal

from sim.geometry import KIND_BITS, lane_groups, shape3
from sim.registry import KINDS

from .synapse import SynapseEngine, SynapseIterator

__all__ = ["IdentityEngine"]


class IdentityEngine(SynapseEngine):
    """Address generator of an ``identity`` synapse (see the module docstring).

    Parameters
    ----------
    shape : tuple
        Shape of the input events and of the layer (``(C, H, W)`` or ``(N,)``).
    groups : int
        ``G = ceil(C / lanes)``.
    lanes : int
        ``L``, channels per state word.
    taps, tap_field
        As :class:`~hw.conv.ConvEngine`.

    Attributes
    ----------
    inp, out, busy
        As :class:`~hw.synapse.SynapseEngine`.
    regs : SimpleNamespace
        Stage registers ``a_valid``, ``a_kind``, ``a_pos`` (``(y*W + x)*G``), ``a_g``
        (``c // L``), ``a_c`` (stage A) and the iterator ``iter``; not an interface.
    """
    def __init__(self, shape, groups, lanes, taps=1, tap_field=None):
        self.shape = shape3(shape)
        self.G, self.L = groups, lanes
        C, H, W = self.shape
        super().__init__(shape, H * W * groups, C, taps, tap_field)
        saw = len(self.out.payload.sa)
        self.regs = SimpleNamespace(
            iter=SynapseIterator(sa_depth=self.sa_depth, wa_depth=self.wa_depth, n_max=1,
                                 groups=1, col_step=0, row_sa=0, row_wa=0),
            a_valid=Signal(name="a_valid"), a_kind=Signal(KIND_BITS, name="a_kind"),
            a_pos=Signal(saw + 1, name="a_pos"),
            a_g=Signal(range(max(2, groups)), name="a_g"),
            a_c=Signal(range(max(2, C)), name="a_c"))

    @classmethod
    def for_synapse(cls, syn, src_shape, out_shape, groups, lanes=None):
        if lanes is None:
            raise ValueError("an identity synapse's engine needs the layer's lanes")
        return cls(out_shape, groups, lanes, **cls.tap_kw(syn))

    @classmethod
    def lane_rom(cls, syn, src_shape, out_shape, lanes):
        """``C`` words per tap (tap-major): word ``c`` holds ``w[c]`` in lane ``c % L``
        and 0 elsewhere; lane width ``weight_bits``."""
        C = shape3(out_shape)[0]
        lane_groups(C, lanes)                       # checks lanes
        words = []
        for t in range(syn.taps):
            w, wbits = cls.rom_weights(syn, src_shape, t)
            for c in range(C):
                word = [0] * lanes
                word[c % lanes] = int(w[c])
                words.append(word)
        return words, wbits

    def stage_a(self, p):
        """``(y*W + x)*G`` (constant multiplies and one add) and ``c // L`` (a table)."""
        C, H, W = self.shape
        G, L = self.G, self.L
        r = self.regs
        group = Array(Const(c // L, len(r.a_g)) for c in range(C))
        return [r.a_pos.eq(p.y * (W * G) + p.x * G), r.a_g.eq(group[p.c]), r.a_c.eq(p.c)]

    def stage_b(self):
        """One add; every event is kept (it reaches exactly its own neuron)."""
        r = self.regs
        return Const(1), {"sa": r.a_pos + r.a_g, "wa": r.a_c, "ny": 1, "nx": 1}


KINDS["identity"].attach("hw.engine", IdentityEngine)
