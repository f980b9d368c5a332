"""Synaptic address iterator and the pipeline front shared by the convolution, pooling and
linear engines.

A *job* describes the work of one input event: the first state address ``sa0``, the
first weight address ``wa0`` and the extent ``ny x nx`` of its output window. The
iterator walks the window, ``G`` lane groups per output position, and issues one
*update* ``(sa, wa)`` per cycle on a valid/ready stream. Tokens (``kind != SPIKE``)
pass through as a single update item.

Address arithmetic (constants fixed at elaboration; ``G`` = lane groups):

* inner loop ``g = 0..G-1``: ``sa += 1``, ``wa += 1``;
* next column (``tx += 1``): ``sa += 1``, ``wa += col_step`` (``col_step = 1 - G - S*G``
  for a convolution: the kernel column falls by the stride);
* next row (``ty += 1``): ``sa = sa_row + row_sa``, ``wa = wa_row + row_wa`` with
  ``row_sa = Wo*G`` and ``row_wa = -S*K*G``.

Throughput: exactly one update per cycle while ``out.ready`` is high; a new job is
taken in the same cycle as the last update of the previous one, so back-to-back jobs
have no bubble. ``job.ready`` is ``~busy | (out.ready & last)``; ``out.valid`` is the
registered ``busy`` flag and never depends on ``out.ready``.

Every engine is ``inp -> stage A -> stage B -> iterator -> out``
(:class:`SynapseEngine`): stage A registers what the engine looks up for an input event,
stage B is the job register (it drops a spike that reaches no output position). The
handshakes of the two stages are written once, in :class:`SynapseEngine`; an engine
supplies only what its stages compute.

Taps: the weight ROM of a synapse with ``D`` taps holds the ``D`` single-tap images one
after another (tap-major: ``wa = tap*tap_depth + base_wa``, ``tap_depth`` the depth of
one tap's image). Its engine takes events with a ``tap`` field; stage A looks up
``tap*tap_depth`` and stage B adds it to the job's ``wa``. A single-tap engine has no
add, and no ``tap`` field unless asked (``tap_field``: the input of a delayed synapse
comes from a delay line, :func:`hw.stream.synapse_input_signature`; its ``tap`` is 0).

Every kind's engine is found through the registry of synapse kinds:
``KINDS[type].part("hw.engine")`` is the engine class (attached in its module), built
with :meth:`SynapseEngine.for_synapse`; its :meth:`SynapseEngine.lane_rom` packs the
synapse's weight ROM (:func:`lane_words` packs one weight matrix into lanes).
"""

from types import SimpleNamespace

import numpy as np

from amaranth.hdl import Array, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from sim.geometry import KIND_BITS, SPIKE, lane_groups, shape3

from .stream import synapse_input_signature

__all__ = ["UpdateLayout", "JobLayout", "SynapseIterator", "SynapseEngine", "lane_words"]


def lane_words(cols, channels, lanes):
    """ROM words of a weight matrix ``cols`` (``(base, C_out)``): word ``base*G + g``
    holds ``cols[base, g*L + j]`` in lane ``j`` (0 for padding lanes), ``G =
    ceil(C_out/L)``. A list of lists of int."""
    cols = np.asarray(cols, dtype=np.int64)
    G = lane_groups(channels, lanes)
    pad = np.zeros((cols.shape[0], G * lanes), dtype=np.int64)
    pad[:, :channels] = cols
    return pad.reshape(cols.shape[0] * G, lanes).tolist()


class UpdateLayout(data.StructLayout):
    """One state/weight address pair (or a token, ``kind != SPIKE``)."""
    def __init__(self, sa_depth, wa_depth):
        super().__init__({
            "kind": unsigned(KIND_BITS),
            "sa": unsigned(bits_for(max(0, sa_depth - 1))),
            "wa": unsigned(bits_for(max(0, wa_depth - 1))),
        })


class JobLayout(data.StructLayout):
    """The work of one input event: start addresses and window extent."""
    def __init__(self, sa_depth, wa_depth, n_max):
        super().__init__({
            "kind": unsigned(KIND_BITS),
            "sa": unsigned(bits_for(max(0, sa_depth - 1))),
            "wa": unsigned(bits_for(max(0, wa_depth - 1))),
            "ny": unsigned(bits_for(n_max)),
            "nx": unsigned(bits_for(n_max)),
        })


class SynapseIterator(wiring.Component):
    """Walk the output window of each job, one update per cycle.

    Parameters
    ----------
    sa_depth, wa_depth : int
        Depths of the state RAM and the weight ROM (address ranges).
    n_max : int
        Largest ``ny`` / ``nx`` of a job (``ceil(K/S)``, 1 for linear layers).
    groups : int
        Lane groups ``G`` per output position.
    col_step, row_sa, row_wa : int
        Address steps (see the module docstring); may be negative.

    Attributes
    ----------
    job : In(stream JobLayout)
        Jobs with ``ny, nx >= 1`` (tokens: any extent).
    out : Out(stream UpdateLayout)
        Updates.
    regs : SimpleNamespace
        The internal registers (``busy``, ``kind``, ``sa``, ``wa``, ``sa_row``,
        ``wa_row``, ``ny``, ``nx``, ``ty``, ``tx``, ``g``), for the invariants of the
        formal proofs (``tests/formal``); not an interface.
    """
    def __init__(self, *, sa_depth, wa_depth, n_max, groups, col_step, row_sa, row_wa):
        self.sa_depth, self.wa_depth = sa_depth, wa_depth
        self.n_max, self.groups = n_max, groups
        self.col_step, self.row_sa, self.row_wa = col_step, row_sa, row_wa
        super().__init__({
            "job": In(stream.Signature(JobLayout(sa_depth, wa_depth, n_max))),
            "out": Out(stream.Signature(UpdateLayout(sa_depth, wa_depth))),
        })
        # made here rather than in elaborate() so that a formal harness can name them
        saw = len(self.out.payload.sa)
        waw = len(self.out.payload.wa)
        nb = bits_for(self.n_max)
        # address registers are kept one bit wider and signed so that negative steps
        # wrap harmlessly; only in-range values are ever issued
        self.regs = SimpleNamespace(
            busy=Signal(name="busy"), kind=Signal(KIND_BITS, name="kind"),
            sa=Signal(signed(saw + 2), name="sa"), wa=Signal(signed(waw + 2), name="wa"),
            sa_row=Signal(signed(saw + 2), name="sa_row"),
            wa_row=Signal(signed(waw + 2), name="wa_row"),
            ny=Signal(nb, name="ny"), nx=Signal(nb, name="nx"),
            ty=Signal(nb, name="ty"), tx=Signal(nb, name="tx"),
            g=Signal(range(max(2, groups)), name="g"))

    def elaborate(self, platform):
        m = Module()
        G = self.groups
        r = self.regs
        busy, kind, sa, wa, sa_row, wa_row = r.busy, r.kind, r.sa, r.wa, r.sa_row, r.wa_row
        ny, nx, ty, tx, g = r.ny, r.nx, r.ty, r.tx, r.g
        saw = len(self.out.payload.sa)
        waw = len(self.out.payload.wa)

        last_g = (g == G - 1)
        last_x = (tx == nx - 1)
        last_y = (ty == ny - 1)
        last = (kind != SPIKE) | (last_g & last_x & last_y)

        m.d.comb += [
            self.out.valid.eq(busy),
            self.out.payload.kind.eq(kind),
            self.out.payload.sa.eq(sa[:saw]),
            self.out.payload.wa.eq(wa[:waw]),
            self.job.ready.eq(~busy | (self.out.ready & last)),
        ]
        with m.If(self.job.valid & self.job.ready):
            p = self.job.payload
            m.d.sync += [
                busy.eq(1), kind.eq(p.kind),
                sa.eq(p.sa), wa.eq(p.wa), sa_row.eq(p.sa), wa_row.eq(p.wa),
                ny.eq(p.ny), nx.eq(p.nx), ty.eq(0), tx.eq(0), g.eq(0),
            ]
        with m.Elif(busy & self.out.ready):
            with m.If(last):
                m.d.sync += busy.eq(0)
            with m.Elif(~last_g):
                m.d.sync += [g.eq(g + 1), sa.eq(sa + 1), wa.eq(wa + 1)]
            with m.Elif(~last_x):
                m.d.sync += [g.eq(0), tx.eq(tx + 1), sa.eq(sa + 1), wa.eq(wa + self.col_step)]
            with m.Else():
                m.d.sync += [
                    g.eq(0), tx.eq(0), ty.eq(ty + 1),
                    sa_row.eq(sa_row + self.row_sa), wa_row.eq(wa_row + self.row_wa),
                    sa.eq(sa_row + self.row_sa), wa.eq(wa_row + self.row_wa),
                ]
        return m


class SynapseEngine(wiring.Component):
    """Base of the address generators: input event -> stage A -> stage B -> iterator.

    * stage A (``regs.a_valid``, ``regs.a_kind`` and the engine's own registers) loads
      on an input transfer and empties when stage B takes its event;
      ``inp.ready = ~a_valid | b_ready``;
    * stage B is the iterator's job register: it loads from stage A when it is empty or
      the iterator takes its job (``b_ready = ~b_valid | job.ready``), and holds the job
      only when :meth:`stage_b` says to keep it;
    * ``busy = a_valid | b_valid | iterator busy``.

    Throughput: with the iterator's own (one update per cycle, no bubble between jobs),
    an event costs the iterator cycles of its window; an event without work occupies
    stages A and B for a cycle each, hidden while the iterator is busy.

    A subclass calls ``super().__init__(in_shape, sa_depth, tap_depth, taps)``, then sets
    ``self.regs`` (a namespace holding at least ``iter``, a :class:`SynapseIterator`
    over ``self.wa_depth``, ``a_valid`` and ``a_kind``) and defines :meth:`stage_a` and
    :meth:`stage_b` (whose ``wa`` is the address within one tap's image).

    With ``taps > 1`` the input events carry a ``tap`` field: stage A loads
    ``a_tap_wa = tap*tap_depth`` (a table of ``taps`` constants) and stage B adds it to
    the job's ``wa`` (see the module docstring); no added cycle.

    Parameters
    ----------
    in_shape : tuple
        Shape of the input events.
    sa_depth, wa_depth : int
        Depths of the state RAM and of one tap's weight ROM image.
    taps : int
        ``D >= 1``; the ROM depth is ``taps * wa_depth``.
    tap_field : bool, optional
        The input has a ``tap`` field (:class:`~hw.stream.TapEventLayout`); default
        ``taps > 1``. Only ``taps > 1`` uses it.

    Attributes
    ----------
    inp : In(event stream of ``in_shape``)
    out : Out(stream of :class:`UpdateLayout`)
    busy : Out(1)
        An event or token is inside the engine.
    """
    def __init__(self, in_shape, sa_depth, wa_depth, taps=1, tap_field=None):
        if taps < 1:
            raise ValueError(f"taps: {taps!r} must be at least 1")
        self.taps, self.tap_depth = taps, wa_depth
        self.sa_depth, self.wa_depth = sa_depth, wa_depth * taps
        tap_field = taps > 1 if tap_field is None else tap_field
        super().__init__({
            "inp": In(synapse_input_signature(in_shape, taps, int(tap_field))),
            "out": Out(stream.Signature(UpdateLayout(sa_depth, self.wa_depth))),
            "busy": Out(1),
        })
        #: stage A's ``tap*tap_depth`` (``taps > 1`` only)
        self.a_tap_wa = Signal(range(self.wa_depth), name="a_tap_wa") if taps > 1 else None

    @classmethod
    def for_synapse(cls, syn, src_shape, out_shape, groups, lanes=None):
        """The engine of synapse ``syn`` (a :class:`sim.model.Synapse` of this engine's
        kind) reading events of ``src_shape`` (its source's ``out_shape``, or the input
        shape) into a layer of ``out_shape`` with ``groups`` lane groups of ``lanes``
        (needed by the engines whose addresses depend on it). Its taps are the
        synapse's; its input has a ``tap`` field when ``taps > 1`` or ``delay > 0``
        (:func:`hw.stream.synapse_input_signature`). The hardware part of a kind is this
        class, attached to it in the engine's module
        (``KINDS[kind].attach("hw.engine", cls)``)."""
        raise NotImplementedError

    @staticmethod
    def tap_kw(syn):
        """The ``taps`` and ``tap_field`` arguments for synapse ``syn``."""
        return {"taps": syn.taps, "tap_field": syn.taps > 1 or syn.delay > 0}

    @classmethod
    def lane_rom(cls, syn, src_shape, out_shape, lanes):
        """The weight ROM of ``syn`` for ``L = lanes``: ``(words, wbits)``.

        Per tap ``t`` (tap-major: tap ``t`` at ``t*tap_depth``)
        ``words[base*G + g][j] = w[g*L + j, base]`` (0 for padding lanes) with ``w``,
        ``wbits`` from :meth:`rom_weights`; ``base`` is ``(c*K + ky)*K + kx`` for a conv
        or pool, the input index for a linear synapse (:func:`lane_words`). An engine
        with another address rule overrides this."""
        C = shape3(out_shape)[0]
        words, wbits = [], None
        for t in range(syn.taps):
            w, wbits = cls.rom_weights(syn, src_shape, t)
            words += lane_words(w.reshape(C, -1).T, C, lanes)
        return words, wbits

    @classmethod
    def rom_weights(cls, syn, src_shape, tap=0):
        """``(w, wbits)``: the weights of tap ``tap`` the ROM holds, ``(C_out, *base)``
        int64 with ``base`` in weight-address order (before the lane groups), and the
        lane width."""
        return syn.tap_weights(tap).astype(np.int64), syn.weight_bits

    def stage_a(self, payload):
        """Statements (``sync``) that load the engine's stage A registers from the
        input event ``payload`` (``a_valid`` and ``a_kind`` are loaded by the base)."""
        raise NotImplementedError

    def stage_b(self):
        """``(keep, fields)``: whether the event in stage A becomes a job, and the
        values of the job's ``sa``, ``wa``, ``ny``, ``nx`` (``kind`` is ``a_kind``)."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        r = self.regs
        it = m.submodules.iter = r.iter
        wiring.connect(m, wiring.flipped(self.out), it.out)

        b_valid = Signal()
        job = it.job
        b_ready = ~b_valid | job.ready

        m.d.comb += self.inp.ready.eq(~r.a_valid | b_ready)
        with m.If(self.inp.valid & self.inp.ready):
            m.d.sync += [r.a_valid.eq(1), r.a_kind.eq(self.inp.payload.kind),
                         *self.stage_a(self.inp.payload)]
            if self.taps > 1:
                offsets = Array(Const(t * self.tap_depth, len(self.a_tap_wa))
                                for t in range(self.taps))
                m.d.sync += self.a_tap_wa.eq(offsets[self.inp.payload.tap])
        with m.Elif(b_ready):
            m.d.sync += r.a_valid.eq(0)

        keep, fields = self.stage_b()
        if self.taps > 1:
            fields = {**fields, "wa": fields["wa"] + self.a_tap_wa}
        with m.If(r.a_valid & b_ready):
            m.d.sync += [b_valid.eq(keep), job.payload.kind.eq(r.a_kind)]
            m.d.sync += [getattr(job.payload, name).eq(v) for name, v in fields.items()]
        with m.Elif(job.ready):
            m.d.sync += b_valid.eq(0)
        m.d.comb += [job.valid.eq(b_valid), self.busy.eq(r.a_valid | b_valid | it.out.valid)]
        return m
