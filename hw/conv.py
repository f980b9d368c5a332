"""Event-sparse convolution engine: input events to state/weight address updates.

For an input spike at ``(c, y, x)`` the output positions whose receptive field holds it
are ``oy*S - P + ky == y`` and ``ox*S - P + kx == x`` with ``0 <= ky, kx < K`` inside the
output map: a rectangle of ``ny x nx`` positions with ``ny, nx <= ceil(K/S)`` (fewer at
the borders, possibly none). Per-coordinate tables (built at elaboration, LUT ROMs)
give the first output row/column, its kernel offset and the extent, so the start
addresses are two table lookups and an add away:

* state address ``sa = (oy*Wo + ox)*G + g`` (one state word holds ``L`` output
  channels; ``G = ceil(C_out/L)`` words per position);
* weight address ``wa = ((c*K + ky)*K + kx)*G + g`` (one ROM word holds the weights of
  the ``L`` output channels of group ``g``).

Pipeline: input -> stage A (table lookups and one add each: ``sa0``, ``c``/``ky`` part of
``wa0``; registered) -> stage B (the ``kx`` add; registered; events with no output
position are dropped here) -> :class:`~hw.synapse.SynapseIterator`
-> ``out`` (the stage handshakes are :class:`~hw.synapse.SynapseEngine`'s). Throughput: one update (one output position x ``L`` lanes) per cycle with
no bubble between events; an event costs exactly ``ny*nx*G`` cycles of the iterator, an
event with no valid position costs none there (it occupies stages A/B for one cycle
each, hidden while the iterator is busy). Tokens pass through in order and cost one
cycle. Work is proportional to events, never to the frame.

Banks: the engine of bank ``b`` of ``B`` (``bank=(b, B)``, :func:`sim.geometry.banks_of`)
issues only the output columns ``ox = b, b + B, ...`` of each window, at local column
``ox // B`` of a state RAM ``W_b = bank_width(Wo, b, B)`` columns wide: its column table
is :func:`bank_table` of the full one, and one column step moves the kernel column by
``S*B`` (``col_step = 1 - G - S*B*G``). The weight ROM is the unbanked one.
"""

from types import SimpleNamespace

from amaranth.hdl import Array, Const, Signal
from amaranth.utils import bits_for

from sim.geometry import KIND_BITS, SPIKE, axis_range, bank_width
from sim.registry import KINDS

from .synapse import SynapseEngine, SynapseIterator

__all__ = ["ConvEngine", "axis_table", "bank_table"]


def axis_table(size, out_size, K, S, P):
    """Per input coordinate: ``(o0, k0, n)`` = first output index, its kernel offset, count.

    The valid outputs are ``o0 + t`` with kernel offset ``k0 - t*S`` for ``t < n``; a
    coordinate that reaches no output is ``(0, 0, 0)``. The window is
    :func:`sim.geometry.axis_range`.
    """
    lo, hi = axis_range(size, out_size, K, S, P)
    table = []
    for v, (o0, o1) in enumerate(zip(lo.tolist(), hi.tolist())):
        n = o1 - o0 + 1
        table.append((o0, v + P - o0 * S, n) if n > 0 else (0, 0, 0))
    return table


def bank_table(table, stride, bank, banks):
    """The :func:`axis_table` of one bank: per coordinate ``(o0, k0, n)`` of the output
    columns ``o = bank (mod banks)`` only, ``o0`` as a local column ``o // banks``, ``k0``
    its kernel offset (falling by ``stride*banks`` per local column); ``(0, 0, 0)`` where
    the bank has none."""
    out = []
    for o0, k0, n in table:
        t0 = (bank - o0) % banks
        if n == 0 or t0 >= n:
            out.append((0, 0, 0))
        else:
            out.append(((o0 + t0) // banks, k0 - t0 * stride, len(range(t0, n, banks))))
    return out


def _rom(values):
    width = bits_for(max(values)) if values else 1
    return Array([Const(v, width) for v in values])


class ConvEngine(SynapseEngine):
    """Address generator of a ``conv2d`` (or ``sumpool2d``) layer.

    Parameters
    ----------
    in_shape, out_shape : tuple
        ``(C_in, H, W)`` and ``(C_out, Ho, Wo)``.
    kernel, stride, padding : int
    groups : int
        ``G = ceil(C_out / lanes)``.
    taps, tap_field
        Taps of the synapse; the input has a ``tap`` field (default: ``taps > 1``;
        :class:`~hw.synapse.SynapseEngine`).
    bank : tuple, optional
        ``(b, B)``: the engine of bank ``b`` of ``B`` (see the module docstring);
        ``out_shape`` stays the layer's.

    Attributes
    ----------
    inp, out, busy
        As :class:`~hw.synapse.SynapseEngine`.
    regs : SimpleNamespace
        Stage registers ``a_valid``, ``a_kind``, ``a_sa``, ``a_wa``, ``a_xwa``, ``a_yn``,
        ``a_xn`` (stage A) and the iterator ``iter`` (stage B is its ``job`` port), for
        the invariants of the formal proofs (``tests/formal``); not an interface.
    """
    #: the engine can serve one bank of a banked layer (``bank=``)
    BANKABLE = True

    def __init__(self, in_shape, out_shape, kernel, stride, padding, groups, taps=1,
                 tap_field=None, bank=None):
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.K, self.S, self.P, self.G = kernel, stride, padding, groups
        b, B = (0, 1) if bank is None else bank
        self.bank = (b, B)
        C, H, W = self.in_shape
        Co, Ho, Wo_full = self.out_shape
        Wo = bank_width(Wo_full, b, B)
        #: output columns of this engine's state RAM (all of them unbanked)
        self.Wo = Wo
        self.n_max = -(-kernel // stride)
        super().__init__(self.in_shape, Ho * Wo * groups, C * kernel * kernel * groups, taps,
                         tap_field)
        K, S, P, G = kernel, stride, padding, groups
        self._ytab = axis_table(H, Ho, K, S, P)
        self._xtab = bank_table(axis_table(W, Wo_full, K, S, P), S, b, B)
        # made here rather than in elaborate() so that a formal harness can name them
        saw = len(self.out.payload.sa)
        waw = len(self.out.payload.wa)
        self.regs = SimpleNamespace(
            iter=SynapseIterator(
                sa_depth=self.sa_depth, wa_depth=self.wa_depth, n_max=self.n_max,
                groups=G, col_step=1 - G - S * B * G, row_sa=Wo * G, row_wa=-S * K * G),
            a_valid=Signal(name="a_valid"), a_kind=Signal(KIND_BITS, name="a_kind"),
            a_sa=Signal(saw + 1, name="a_sa"), a_wa=Signal(waw + 1, name="a_wa"),
            a_xwa=Signal(bits_for(max(k * G for o, k, n in self._xtab)), name="a_xwa"),
            a_yn=Signal(bits_for(max(n for o, k, n in self._ytab)), name="a_yn"),
            a_xn=Signal(bits_for(max(n for o, k, n in self._xtab)), name="a_xn"))

    @classmethod
    def for_synapse(cls, syn, src_shape, out_shape, groups, lanes=None, bank=None):
        return cls(src_shape, out_shape, syn.kernel, syn.stride, syn.padding, groups,
                   bank=bank, **cls.tap_kw(syn))

    def stage_a(self, p):
        """Table lookups and the first adds: ``sa0``, the ``c``/``ky`` part of ``wa0``,
        the ``kx`` part and the window extent."""
        C = self.in_shape[0]
        Wo = self.Wo
        K, G = self.K, self.G
        ytab, xtab = self._ytab, self._xtab
        y_sa = _rom([o * Wo * G for o, k, n in ytab])
        y_wa = _rom([k * K * G for o, k, n in ytab])
        y_n = _rom([n for o, k, n in ytab])
        x_sa = _rom([o * G for o, k, n in xtab])
        x_wa = _rom([k * G for o, k, n in xtab])
        x_n = _rom([n for o, k, n in xtab])
        c_wa = _rom([c * K * K * G for c in range(C)])
        r = self.regs
        return [r.a_sa.eq(y_sa[p.y] + x_sa[p.x]), r.a_wa.eq(c_wa[p.c] + y_wa[p.y]),
                r.a_xwa.eq(x_wa[p.x]), r.a_yn.eq(y_n[p.y]), r.a_xn.eq(x_n[p.x])]

    def stage_b(self):
        """The ``kx`` add; a spike with an empty window is dropped."""
        r = self.regs
        keep = (r.a_kind != SPIKE) | ((r.a_yn != 0) & (r.a_xn != 0))
        return keep, {"sa": r.a_sa, "wa": r.a_wa + r.a_xwa, "ny": r.a_yn, "nx": r.a_xn}


KINDS["conv2d"].attach("hw.engine", ConvEngine)
