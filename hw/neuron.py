"""LIF neuron core array: the state RAM of one layer, its read-modify-write
accumulator and the end-of-step sweep (steps 1-5 of the contract, versions 1 and 2:
spike counts up to ``spike_limit``, the ``v_min`` bound, current-based neurons).

State RAM
    ``D = positions x G`` words of ``L`` lanes, each lane an ``acc_bits`` two's-complement
    accumulator (an ordinary :class:`amaranth.lib.memory.Memory` with one synchronous
    read port and one write port: block RAM or LUT RAM, never one register per neuron).
    Word ``a = pos*G + g`` holds output channels ``g*L .. g*L+L-1`` at position ``pos``
    (``pos = y*Wo + x``; a linear layer has one position). Between steps a lane holds the
    stored state ``v``; during a step it accumulates exactly (no wrap: ``acc_bits`` is the
    contract's worst case).

    A current-based layer keeps both states of a neuron in the same word: ``L`` state
    lanes ``v`` of ``state_bits`` (bits ``j*state_bits ..``), then ``L`` current lanes
    ``i`` of ``acc_bits`` (from bit ``L*state_bits`` on; :meth:`NeuronCore.split_word`).
    The updates of a step accumulate into the current lanes; the stored ``v`` always
    lies in the state range, so its lanes need no accumulator width. One RAM rather than
    a second one for the currents: the read-modify-write and the sweep already move one
    word per address with one read and one write port, forwarding included, so the wider
    word costs nothing but its bits, while a second RAM would need its own ports,
    forwarding and clear, and would read ``v`` and ``i`` of a neuron in different
    cycles.

Accumulate phase (``ACCUM``)
    ``upd`` (valid/ready, ``ready = 1`` in this phase) carries state addresses; the weight
    word of an update arrives on ``wdata`` one cycle after its transfer (the layer's ROM
    has a registered output). Cycle ``n``: read the state word; cycle ``n+1``: register
    the RAM output (and the weights); cycle ``n+2``: add the ``L`` sign-extended weights
    lane by lane (to the current lanes of a current-based layer) and write back. The RAM
    output never feeds the adder directly (it is the slowest signal of the design).
    Updates of one address in consecutive cycles, or one cycle apart, are exact: the word
    written in the previous cycle is forwarded (compare and mux) over the stale RAM
    output when it is registered, and again over the register when it is added.
    Throughput: one update (``L`` synaptic operations) per cycle, never a stall.

Sweep (``SWEEP``, on an end-of-step token)
    Reads every word once (dense) or every listed word once (sparse, below), ``L``
    neurons per cycle, through a
    6-stage pipeline: P0 read; P1 register the RAM output (forwarding the word the last
    update wrote in the previous cycle); P2 ``acc + bias`` (current-based: ``a = i +
    bias``); P3 (current-based: ``i' = clamp(a)`` to the current's width and ``acc = v +
    i'``) clamp to ``state_bits`` (overflow flag; either clamp sets it), then ``u =
    max(u, v_min)`` when the layer has a bound (not a flag), and ``s > 0`` as ``acc >=
    threshold`` (the same as ``u >= threshold``, as ``1 <= threshold <= state max`` and
    ``v_min <= 0``); P4 the leak product ``u * num`` (shifts and adds, :mod:`hw.arith`),
    the current's leak product, and with ``spike_limit`` ``M > 1`` the spike count ``s =
    min(M, u // threshold)``; P5 ``v = (u*num >> frac)`` with the reset rule (subtract
    ``s * threshold``, or zero when ``s > 0``), the stored current ``leak_c(i')`` beside
    it, write back, and emission.

    ``u // threshold`` (``M > 1``) is a restoring division in P4: ``bits_for(M)``
    compare-and-add steps in series, each against the running ``q * threshold`` (no
    divider, exact for any threshold, also one that varies by lane group), plus one
    parallel compare ``u >= M * threshold`` that saturates the count when ``M + 1`` is
    not a power of two (see :meth:`NeuronCore._spike_count`). A core with ``M = 1`` has
    none of it.

    The spikes of a word are emitted one per cycle, lowest lane first, as events
    ``(c = g*L + lane, y, x)``; a lane with count ``s`` is emitted ``s`` times in a row
    (identical events). The pipeline advances when P5 is empty, holds no spike, or emits
    its last spike in this cycle (``out.ready``), so a word with ``p`` spikes in total
    (counts summed over its lanes) occupies P5 for ``max(1, p)`` cycles when
    ``out.ready`` stays high.

Sparse sweep (``sweep="sparse"``, issue 15)
    A word that no update reached in a step and whose lanes all sit at a fixed point of
    the no-input step (:mod:`sim.liveness`: ``v = 0``, ``-n0 <= v <= 0`` under the floor
    leak, any ``v`` below the threshold without leak) would come out of the sweep
    unchanged, with no spike and no overflow; the sparse core does not read it. Each RAM
    word carries a ``listed`` bit above its lanes, and a ring of word addresses
    (:class:`hw.livelist.ListSequencer`) holds every listed word once. An update whose
    old word (forwarded like the lanes) is not listed sets the bit and appends the
    address in its stage C; the sweep reads exactly the entries present when the token
    arrived, in list order, and writes each back with ``listed = ~quiet``, appending it
    again when not quiet (P4 -> P5 decides ``quiet``: no lane fired and every ``u`` is in
    :func:`sim.liveness.quiet_u_range`). Spikes leave in list order, not address order
    (accumulation and spike counts do not depend on it). A layer with a bias or a current
    state, or the output layer of a membrane readout (the readout needs every ``u``), is
    swept densely: :func:`sim.liveness.sparse_ok`. The end-of-sample clear stays dense
    (quiet words may hold ``-1``) and also empties the list.

Token (``TOKEN``)
    When the sweep pipeline is empty the token is offered on ``out``; its transfer
    strobes ``step_done`` (``sample_done`` for the end-of-sample token) and returns to
    ``ACCUM``. An end-of-sample token first clears every word (``CLEAR``, one word per
    cycle) so the next sample starts from ``v = 0``.

Exact cycle counts (no back-pressure on ``out``), counted from the cycle in which the
token is accepted on ``upd`` (cycle 0): the sweep issues word ``a`` in cycle ``1 + a +
extra(a)``, where ``extra(a)`` is the sum of ``max(0, p_b - 1)`` over the words ``b < a``
(``p_b`` = spikes of word ``b``, counts summed); the token is offered in cycle
``D + 7 + extra(D)`` and transfers in that cycle when ``out.ready``. A clear: token
offered in cycle ``D + 1``. The same for every kind of layer (plain, multi-spike,
``v_min``, current-based): the stages are the same six.

Timing paths added by the version-2 options (none in a plain core): a current-based P3
clamps ``a``, adds ``v`` and clamps again in one stage; a multi-spike P4 has
``bits_for(M)`` compare-and-add steps in series. A build that needs a faster clock with
such a layer would split those stages; the cycle rule above would then grow by one
cycle per added stage.

Sparse: the list sequencer reads the list ahead (:mod:`hw.livelist`): an entry is read
from the ring in the first cycle in which it is there (appended in cycle ``t``: from
``t + 1``) and ``Q1`` can move, outside a sweep or in the sweep's cycles 0-2, and
reaches ``P0`` three cycles after its read. When the first entries were waiting in ``P0``,
``Q2``, ``Q1`` as the token came (the previous sweep ended four or more cycles before and
they were appended before that), the ``i``-th word of the list is issued in cycle
``1 + i + extra(i)`` and the token is offered in cycle ``N + 7 + extra(N)`` (``N``
listed words); an empty list offers it in cycle 4. Otherwise the words start later, as
:class:`sim.cycles.CoreModel` computes register by register (tests/hw/test_neuron.py
checks both rules, tests/hw/test_network_cycles.py the model against this RTL).

Readback
    ``rb_addr`` drives the read port while ``idle`` (accumulate phase, no update
    offered); ``rb_data`` is the word one cycle later. Used by tests and status readout.

Membrane tap
    ``tap_valid`` / ``tap_addr`` / ``tap_u`` show the clamped ``u`` (before leak) of each
    swept word once, for a membrane readout.

Signal names (as a waveform shows them)
    ``word_q`` the registered read word (accumulate stage B, sweep P1 -> P2);
    ``wr_last_*`` the write of the previous cycle (forwarding); ``upd_b_*``, ``upd_c_*``
    an update in accumulate stage B, C; ``p0.*`` the sweep sequencer
    (:class:`SweepSequencer`); ``pk_*`` what sweep stage ``Pk`` holds (``pk_valid``,
    ``pk_addr``, ``pk_g``, ``pk_x``, ``pk_y``, ``pk_cbase`` say which word); ``adv`` the
    sweep pipeline advances; ``phase`` (:class:`Phase`).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory, MemoryData
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from sim.geometry import END_SAMPLE, END_STEP, KIND_BITS, SPIKE, lane_groups, shape3

from sim.liveness import SWEEPS, quiet_u_range, sparse_ok

from .arith import count_upto, mul_const
from .livelist import ListSequencer
from .stream import event_signature

__all__ = ["NeuronCore", "SweepSequencer", "Phase", "CoreUpdateLayout", "lane_params"]


class Phase(enum.Enum, shape=2):
    """What the core does (see the module docstring)."""
    ACCUM = 0
    SWEEP = 1
    CLEAR = 2
    TOKEN = 3


class CoreUpdateLayout(data.StructLayout):
    """One update on ``upd``: a token ``kind`` and, for a spike, the state address ``sa``."""
    def __init__(self, depth):
        super().__init__({"kind": unsigned(KIND_BITS), "sa": unsigned(bits_for(max(0, depth - 1)))})


def lane_params(layer, lanes):
    """Per group ``g`` and lane ``j``: ``(threshold, bias)`` lists of length ``G``.

    Padding lanes (``g*L + j >= C``) get threshold ``state_max`` and bias 0: their
    accumulator stays 0, so they never fire nor overflow.
    """
    C = shape3(layer.out_shape)[0]
    thr, bias = [], []
    for g in range(lane_groups(C, lanes)):
        t, b = [], []
        for j in range(lanes):
            c = g * lanes + j
            if c < C:
                t.append(int(layer.threshold[c]))
                b.append(int(layer.bias[c]) if layer.bias is not None else 0)
            else:
                t.append(layer.state_max)
                b.append(0)
        thr.append(t)
        bias.append(b)
    return thr, bias


class SweepSequencer(wiring.Component):
    """P0 of the sweep: the state word offered to the pipeline, in address order.

    Word ``a = (y*Wo + x)*G + g`` holds channels ``g*L .. g*L+L-1`` at ``(y, x)``.

    Parameters
    ----------
    ho, wo : int
        Output rows and columns.
    groups : int
        ``G``, lane groups per position.
    lanes : int
        ``L``, channels per word.

    Attributes
    ----------
    start : In(1)
        The sweep starts: from the next cycle on word 0 is offered.
    step : In(1)
        The pipeline advances: P1 takes the word offered, and from the next cycle on
        the next word is offered (none after word ``D-1``).
    valid : Out(1)
        A word is offered.
    addr, g, x, y : Out
        Its address, lane group and position.
    cbase : Out
        Its first channel, ``g*L``.
    """
    def __init__(self, ho, wo, groups, lanes):
        self.ho, self.wo, self.groups, self.lanes = ho, wo, groups, lanes
        depth = ho * wo * groups
        super().__init__({
            "start": In(1),
            "step": In(1),
            "valid": Out(1),
            "addr": Out(range(max(2, depth))),
            "g": Out(range(max(2, groups))),
            "x": Out(range(max(2, wo))),
            "y": Out(range(max(2, ho))),
            "cbase": Out(range(max(2, groups * lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        last_addr = self.ho * self.wo * self.groups - 1
        with m.If(self.start):
            m.d.sync += [self.valid.eq(1), self.addr.eq(0), self.g.eq(0), self.x.eq(0),
                         self.y.eq(0), self.cbase.eq(0)]
        with m.Elif(self.step & self.valid):
            m.d.sync += self.addr.eq(self.addr + 1)
            with m.If(self.addr == last_addr):
                m.d.sync += self.valid.eq(0)
            with m.If(self.g == self.groups - 1):
                m.d.sync += [self.g.eq(0), self.cbase.eq(0)]
                with m.If(self.x == self.wo - 1):
                    m.d.sync += [self.x.eq(0), self.y.eq(self.y + 1)]
                with m.Else():
                    m.d.sync += self.x.eq(self.x + 1)
            with m.Else():
                m.d.sync += [self.g.eq(self.g + 1), self.cbase.eq(self.cbase + self.lanes)]
        return m


def _signed_field(word, offset, width):
    v = (word >> offset) & ((1 << width) - 1)
    return v - (1 << width) if v >> (width - 1) else v


class _Tag:
    """Which word a sweep stage ``Pk`` holds: ``valid``, ``addr``, ``g``, ``x``, ``y``,
    ``cbase`` (the fields of :class:`SweepSequencer`), as registers ``pk_<field>``."""
    FIELDS = ("valid", "addr", "g", "x", "y", "cbase")

    def __init__(self, stage, like):
        for f in self.FIELDS:
            setattr(self, f, Signal.like(getattr(like, f), name=f"{stage}_{f}"))

    def eq(self, src):
        return [getattr(self, f).eq(getattr(src, f)) for f in self.FIELDS]


class NeuronCore(wiring.Component):
    """State RAM, accumulator and neuron sweep of one layer (see the module docstring).

    Parameters
    ----------
    layer : sim.model.Layer
        Integer parameters (widths, thresholds, bias, leak, reset) and output shape.
    lanes : int
        ``L``, neurons per state word and per sweep cycle.
    wbits : int
        Width of one lane's weight in ``wdata``.
    fire : bool
        ``False`` for the output layer of a membrane readout (never fires).
    sweep : str
        ``"dense"`` (every word each step) or ``"sparse"`` (the listed words only, see
        "Sparse sweep" in the module docstring). A layer that :func:`sim.liveness.sparse_ok`
        refuses is swept densely whatever is asked; :attr:`sweep` says which it is.

    Attributes
    ----------
    upd : In(stream of :class:`CoreUpdateLayout`)
    wdata : In(wbits * L), lane ``j`` (signed) in bits ``j*wbits .. j*wbits+wbits-1``
    out : Out(event stream of the layer's output shape)
    idle, step_done, sample_done, ovf_step : Out(1)
    rb_addr : In, rb_data : Out(word)
        ``word``: ``ArrayLayout(signed(acc_bits), L)``; for a current-based layer a
        ``StructLayout`` of ``v`` (``ArrayLayout(signed(state_bits), L)``) and ``i``
        (``ArrayLayout(signed(acc_bits), L)``); :meth:`split_word` reads either.
    tap_valid : Out(1), tap_addr : Out, tap_u : Out(ArrayLayout(signed(state_bits), L))
    """
    #: The ports a layer passes through from its core as they are: the status strobes,
    #: the readback of the state RAM and the membrane tap.
    STATUS_PORTS = ("step_done", "sample_done", "ovf_step", "rb_addr", "rb_data",
                    "tap_valid", "tap_addr", "tap_u")

    def __init__(self, layer, lanes, *, wbits, fire=True, sweep="dense"):
        if sweep not in SWEEPS:
            raise ValueError(f"sweep: {sweep!r} is not one of {', '.join(SWEEPS)}")
        self.layer = layer
        self.L = lanes
        self.wbits = wbits
        self.fire = fire
        self.C, self.Ho, self.Wo = shape3(layer.out_shape)
        self.G = lane_groups(self.C, lanes)
        self.D = self.Ho * self.Wo * self.G
        A, Sb = layer.acc_bits, layer.state_bits
        #: the most spikes one neuron emits per step (1 for a core that never fires)
        self.spike_limit = layer.spike_limit if fire else 1
        #: the current state of a current-based layer (``None``: a plain LIF layer)
        self.current = layer.current
        #: width of a state lane ``v`` in the RAM word: a plain layer accumulates into it
        #: (``acc_bits``); a current-based layer accumulates into its current lane and its
        #: stored ``v`` always lies in the state range (``state_bits``)
        self.v_bits = A if self.current is None else Sb
        thr, _ = lane_params(layer, lanes)
        #: the lane thresholds when every lane group has the same (``None``: they vary,
        #: and a small ROM holds them)
        self.thr_lanes = thr[0] if len({tuple(t) for t in thr}) == 1 else None
        if self.current is None:
            self.word = data.ArrayLayout(signed(A), lanes)
        else:
            self.word = data.StructLayout({"v": data.ArrayLayout(signed(Sb), lanes),
                                           "i": data.ArrayLayout(signed(A), lanes)})
        self.sweep = "sparse" if sweep == "sparse" and sparse_ok(layer, fire) else "dense"
        self.sparse = self.sweep == "sparse"
        #: bits of a RAM word: the lanes, and in a sparse core the ``listed`` bit above them
        self.word_bits = self.word.size + int(self.sparse)
        self.state_data = MemoryData(shape=unsigned(self.word_bits) if self.sparse else self.word,
                                     depth=self.D, init=[])
        super().__init__({
            "upd": In(stream.Signature(CoreUpdateLayout(self.D))),
            # flat (lane j in bits j*wbits..): an array-view port here gives Yosys both
            # "wdata" and "wdata[j]" names for the nets that feed the weight register,
            # and its abc9 pass then fails on a duplicate wire name (ECP5 flow)
            "wdata": In(wbits * lanes),
            "out": Out(event_signature(layer.out_shape)),
            "idle": Out(1),
            "step_done": Out(1),
            "sample_done": Out(1),
            "ovf_step": Out(1),
            "rb_addr": In(range(max(2, self.D))),
            "rb_data": Out(self.word),
            "tap_valid": Out(1),
            "tap_addr": Out(range(max(2, self.D))),
            "tap_u": Out(data.ArrayLayout(signed(Sb), lanes)),
        })

    def split_word(self, word):
        """The lanes of a state word read as an integer (from the RAM or ``rb_data``):
        ``(v, i)``, lists of ``L`` signed lane values, the stored states and (for a
        current-based layer, else ``None``) the stored currents."""
        word = int(word)
        A, L = self.layer.acc_bits, self.L
        v = [_signed_field(word, j * self.v_bits, self.v_bits) for j in range(L)]
        if self.current is None:
            return v, None
        base = L * self.v_bits
        return v, [_signed_field(word, base + j * A, A) for j in range(L)]

    def elaborate(self, platform):
        m = Module()
        mem = m.submodules.state = Memory(data=self.state_data)
        rd = mem.read_port()
        wr = mem.write_port()
        m.d.comb += self.rb_data.as_value().eq(Value.cast(rd.data)[:self.word.size])

        phase = Signal(Phase)
        accum, in_sweep = phase == Phase.ACCUM, phase == Phase.SWEEP
        m.d.comb += [self.idle.eq(accum), self.upd.ready.eq(accum)]
        accepted = self.upd.valid & self.upd.ready
        kind = self.upd.payload.kind
        start_sweep = Signal()
        start_clear = Signal()
        m.d.comb += [start_sweep.eq(accepted & (kind == END_STEP)),
                     start_clear.eq(accepted & (kind == END_SAMPLE))]
        adv = Signal()                       # the sweep pipeline advances
        step = in_sweep & adv
        emitted = in_sweep & self.out.valid & self.out.ready

        # the registered read word, shared by accumulate stage B and sweep P1
        word_q, wr_last_data = self._read_register(m, rd, wr, load=accum | step)
        # accumulate: stages B and C
        upd_c_valid, upd_c_addr, upd_c_new, upd_c_listed = self._accumulate(
            m, accepted & (kind == SPIKE), word_q, wr_last_data, wr)

        # sweep: P0 (sequencer), P1 .. P5
        if self.sparse:
            p0 = m.submodules.p0 = ListSequencer(self.Ho, self.Wo, self.G, self.L)
        else:
            p0 = m.submodules.p0 = SweepSequencer(self.Ho, self.Wo, self.G, self.L)
        m.d.comb += [p0.start.eq(start_sweep), p0.step.eq(step)]
        p1, p2, p3, p4, p5 = tags = self._sweep_tags(m, step, p0)
        p2_bias = self._bias_rom(m, adv, p1)
        p3_thr, thr_varies = self._threshold_rom(m, adv, p2)
        p3_acc, p3_v = self._add_bias(m, step, word_q, p2_bias)
        p4_u, p4_fired, p4_thr, sweep_ovf, p4_ge2, p4_i = self._clamp_compare(
            m, step, start_sweep, p3, p3_acc, p3_thr, thr_varies, p3_v)
        p4_count, p4_sub = self._spike_count(m, p4_u, p4_thr)
        p5_leak, p5_sub, p5_i = self._leak(m, step, p4_u, p4_sub, p4_i)
        p5_spikes, p5_fired, p5_max1, p5_none = self._spike_mask(
            m, step, emitted, p4_fired, p4_count, p4_ge2)
        p5_vnew = self._reset_rule(m, p5_leak, p5_sub, p5_fired, p5_i)
        m.d.comb += adv.eq(~p5.valid | (p5_max1 & (p5_none | self.out.ready)))
        p5_quiet = self._quiet(m, step, p4_u, p4_fired) if self.sparse else None
        m.d.comb += [self.tap_valid.eq(step & p4.valid),
                     self.tap_addr.eq(p4.addr), self.tap_u.eq(p4_u)]

        # phases; the read port (accumulate stage A, sweep P0), out, the write port
        busy = [s.valid for s in [p0, *tags]] + ([p0.busy] if self.sparse else [])
        if self.sparse:
            m.d.comb += p0.end.eq(in_sweep & ~Cat(busy).any())
        token_kind, clear_addr = self._phases(m, phase, start_sweep, start_clear,
                                              busy, sweep_ovf)
        with m.Switch(phase):
            with m.Case(Phase.ACCUM):
                m.d.comb += [rd.addr.eq(Mux(self.upd.valid, self.upd.payload.sa, self.rb_addr)),
                             rd.en.eq(1)]
            with m.Case(Phase.SWEEP):
                m.d.comb += [rd.addr.eq(p0.addr), rd.en.eq(adv)]
        self._emit(m, phase, token_kind, p5, p5_spikes, p5_none)
        # write port: clear (first: a clear starting while the last update of the sample
        # is still in stage C makes that update moot), accumulate, sweep write-back
        # (a sparse word carries its listed bit: set by an update, kept by a loud sweep)
        with m.If(phase == Phase.CLEAR):
            m.d.comb += [wr.addr.eq(clear_addr), Value.cast(wr.data).eq(0), wr.en.eq(1)]
        with m.Elif(upd_c_valid):
            m.d.comb += [wr.addr.eq(upd_c_addr), wr.en.eq(1),
                         Value.cast(wr.data).eq(self._stored(upd_c_new, 1))]
        with m.Elif(in_sweep & p5.valid):
            m.d.comb += [wr.addr.eq(p5.addr), wr.en.eq(1),
                         Value.cast(wr.data).eq(self._stored(
                             p5_vnew, ~p5_quiet if self.sparse else 0))]
        if self.sparse:
            self._list_appends(m, p0, phase, upd_c_valid, upd_c_addr, upd_c_listed,
                               step & p5.valid, p5.addr, p5_quiet)
        return m

    # ------------------------------------------------------------------ live list
    def _stored(self, lanes, listed):
        """The RAM word of ``lanes``: with the ``listed`` bit on top in a sparse core."""
        if self.sparse:
            return Cat(lanes.as_value(), listed)
        return lanes.as_value()

    def _quiet(self, m, step, p4_u, p4_fired):
        """P4 -> P5: ``p5_quiet``, no lane of the word fired and every lane's
        ``v = leak(u)`` is a fixed point of the no-input step (:func:`sim.liveness.quiet_u_range`:
        two compares on ``u``, none where a bound always holds)."""
        u_lo, u_hi = quiet_u_range(self.layer)
        ok = [~p4_fired.any()]
        for j in range(self.L):
            if u_lo is not None:
                ok.append(p4_u[j] >= u_lo)
            if u_hi is not None:
                ok.append(p4_u[j] <= u_hi)
        p5_quiet = Signal()
        with m.If(step):
            m.d.sync += p5_quiet.eq(Cat(ok).all())
        return p5_quiet

    def _list_appends(self, m, p0, phase, upd_c_valid, upd_c_addr, upd_c_listed,
                      p5_leaves, p5_addr, p5_quiet):
        """Appends to the live list: an update that writes a word not yet listed
        (accumulate stage C; ``upd_c_listed`` is its old bit, forwarded like the lanes), or
        a word leaving P5 that is not quiet. The end-of-sample clear empties the list."""
        with m.If(upd_c_valid):
            m.d.comb += [p0.push.eq(~upd_c_listed), p0.push_addr.eq(upd_c_addr)]
        with m.Elif((phase == Phase.SWEEP) & p5_leaves):
            m.d.comb += [p0.push.eq(~p5_quiet), p0.push_addr.eq(p5_addr)]
        m.d.comb += p0.clear.eq(phase == Phase.CLEAR)

    # ------------------------------------------------------------------ read side
    def _read_register(self, m, rd, wr, *, load):
        """``word_q``: the state word read in the previous cycle, registered when ``load``.

        The RAM output feeds nothing but this register (block RAM clock-to-out is the
        slowest start of a path on the ECP5). A read issued in cycle ``n`` misses the
        write of cycle ``n``; in ``n+1`` that write is held in ``wr_last_*`` and replaces
        ``rd.data`` when its address is ``rdata_addr`` (the address of the read whose data
        is on ``rd.data``). So in ``n+2`` ``word_q`` holds the word after every write up
        to cycle ``n``.

        (Flat signals, not array views: the per-lane debug names of a view register make
        Yosys's abc9 fail with a duplicate wire name on the ECP5.)

        Returns ``(word_q, wr_last_data)``.
        """
        width = self.word_bits
        rdata_addr = Signal(range(max(2, self.D)))
        wr_last_en = Signal()
        wr_last_addr = Signal(range(max(2, self.D)))
        wr_last_data = Signal(width)
        word_q = Signal(width)
        m.d.sync += [wr_last_en.eq(wr.en), wr_last_addr.eq(wr.addr),
                     wr_last_data.eq(Value.cast(wr.data))]
        with m.If(rd.en):
            m.d.sync += rdata_addr.eq(rd.addr)
        hit = wr_last_en & (wr_last_addr == rdata_addr)
        with m.If(load):
            m.d.sync += word_q.eq(Mux(hit, wr_last_data, Value.cast(rd.data)))
        return word_q, wr_last_data

    # ------------------------------------------------------------------ accumulate
    def _accumulate(self, m, spike, word_q, wr_last_data, wr):
        """Stages B and C of an update accepted in cycle ``n`` (its read, stage A, is
        issued in ``n`` by the read-port mux).

        ``upd_b_*`` (cycle ``n+1``): the update, valid when it is a spike (``spike`` in
        ``n``). ``upd_c_*`` (cycle ``n+2``): the same update and its weights (``wdata`` of
        ``n+1``); ``upd_c_fwd``: the write of ``n+1`` was to this word, which ``word_q``
        missed, so ``wr_last_data`` replaces it. ``upd_c_new``, the old word plus the
        ``L`` sign-extended weights, is written in ``n+2``: added to the state lanes of a
        plain layer, to the current lanes of a current-based one (its state lanes pass
        through unchanged).

        In a sparse core ``upd_c_listed`` is the ``listed`` bit of the old word (else 0).

        Returns ``(upd_c_valid, upd_c_addr, upd_c_new, upd_c_listed)``.
        """
        A, L, wbits = self.layer.acc_bits, self.L, self.wbits
        upd_b_valid = Signal()
        upd_b_addr = Signal.like(self.upd.payload.sa)
        upd_c_valid = Signal()
        upd_c_addr = Signal.like(self.upd.payload.sa)
        upd_c_w = Signal(wbits * L)
        upd_c_fwd = Signal()
        m.d.sync += [upd_b_valid.eq(spike), upd_b_addr.eq(self.upd.payload.sa),
                     upd_c_valid.eq(upd_b_valid), upd_c_addr.eq(upd_b_addr),
                     upd_c_w.eq(self.wdata), upd_c_fwd.eq(wr.en & (wr.addr == upd_b_addr))]
        upd_c_old = Signal(self.word_bits)
        upd_c_new = Signal(self.word)
        m.d.comb += upd_c_old.eq(Mux(upd_c_fwd, wr_last_data, word_q))
        acc_lanes = upd_c_new if self.current is None else upd_c_new.i
        base = 0 if self.current is None else self.v_bits * L
        if self.current is not None:
            m.d.comb += upd_c_new.v.eq(upd_c_old[:base])
        for j in range(L):
            m.d.comb += acc_lanes[j].eq(upd_c_old[base:].word_select(j, A).as_signed()
                                        + upd_c_w.word_select(j, wbits).as_signed())
        upd_c_listed = upd_c_old[self.word.size] if self.sparse else 0
        return upd_c_valid, upd_c_addr, upd_c_new, upd_c_listed

    # ------------------------------------------------------------------ sweep
    def _sweep_tags(self, m, step, p0):
        """``p1 .. p5``: which word each stage holds; all shift by one stage on ``step``."""
        tags = [_Tag(f"p{k}", p0) for k in range(1, 6)]
        with m.If(step):
            for dst, src in zip(tags, [p0, *tags]):
                m.d.sync += dst.eq(src)
        return tags

    def _bias_rom(self, m, adv, p1):
        """``p2_bias``: the bias of the word in P2 (a ROM read in P1 when ``G > 1``, else
        a constant); ``None`` for a layer without bias."""
        if self.layer.bias is None:
            return None
        _, bias = lane_params(self.layer, self.L)
        layout = data.ArrayLayout(signed(self.layer.state_bits), self.L)
        p2_bias = Signal(layout)
        if self.G > 1:
            rom = m.submodules.bias = Memory(shape=layout, depth=self.G, init=bias)
            bias_rd = rom.read_port()
            m.d.comb += [bias_rd.addr.eq(p1.g), bias_rd.en.eq(adv), p2_bias.eq(bias_rd.data)]
        else:
            m.d.comb += p2_bias.eq(Const.cast(layout.const(bias[0])))
        return p2_bias

    def _threshold_rom(self, m, adv, p2):
        """``p3_thr``: the threshold of the word in P3 (a ROM read in P2 when it varies by
        group, else a constant). Returns ``(p3_thr, varies)``."""
        thr, _ = lane_params(self.layer, self.L)
        layout = data.ArrayLayout(unsigned(self.layer.state_bits), self.L)
        p3_thr = Signal(layout)
        varies = self.thr_lanes is None
        if varies:
            rom = m.submodules.thr = Memory(shape=layout, depth=self.G, init=thr)
            thr_rd = rom.read_port()
            m.d.comb += [thr_rd.addr.eq(p2.g), thr_rd.en.eq(adv), p3_thr.eq(thr_rd.data)]
        else:
            m.d.comb += p3_thr.eq(Const.cast(layout.const(thr[0])))
        return p3_thr, varies

    def _add_bias(self, m, step, word_q, p2_bias):
        """P2 -> P3: ``p3_acc = acc + bias`` of the word in P2 (its state is ``word_q``).

        A current-based layer: ``p3_acc = a = i + bias`` (the bias enters the current)
        and ``p3_v``, the stored state ``v``. Returns ``(p3_acc, p3_v)`` (``p3_v`` is
        ``None`` for a plain layer)."""
        A, L = self.layer.acc_bits, self.L
        p3_acc = Signal(data.ArrayLayout(signed(A), L))
        p3_v = None
        base = 0
        if self.current is not None:
            base = self.v_bits * L
            p3_v = Signal(data.ArrayLayout(signed(self.v_bits), L))
            with m.If(step):
                m.d.sync += p3_v.eq(word_q[:base])
        with m.If(step):
            for j in range(L):
                acc = word_q[base:].word_select(j, A).as_signed()
                m.d.sync += p3_acc[j].eq(acc if p2_bias is None else acc + p2_bias[j])
        return p3_acc, p3_v

    def _clamp_compare(self, m, step, start_sweep, p3, p3_acc, p3_thr, thr_varies, p3_v):
        """P3 -> P4: ``p4_u``, the accumulator clamped to the state range (then raised to
        ``v_min`` when the layer has one), and ``p4_fired``, the lanes with
        ``acc >= threshold`` (``s > 0``).

        A current-based layer first clamps ``a`` (``p3_acc``) to the current's range:
        ``p4_i = i' = clamp(a)``, and the accumulator is ``acc = v + i'``.

        The compare is on the accumulator rather than the clamped ``u``: the same result,
        as ``1 <= threshold <= state max`` (sim.model checks it) and ``v_min <= 0``, and
        one stage earlier, so that P4 -> P5 only summarises registered bits for ``adv``.
        ``p4_thr`` passes the threshold on for the subtract reset and the spike count
        (the constant itself when it does not vary). ``p4_ge2`` (``spike_limit > 1``
        only): the lanes with ``u >= 2*threshold`` (two spikes or more), for the same
        reason. ``sweep_ovf``: some valid word of this sweep so far left the state range
        or the current's range (``p3_ovf``: the word in P3 does; the ``v_min`` bound
        does not count).

        Returns ``(p4_u, p4_fired, p4_thr, sweep_ovf, p4_ge2, p4_i)`` (``p4_ge2``,
        ``p4_i``: ``None`` where they do not apply).
        """
        layer, L = self.layer, self.L
        cur = self.current
        p4_u = Signal(data.ArrayLayout(signed(layer.state_bits), L))
        p4_fired = Signal(L)
        p4_thr = Signal.like(p3_thr, name="p4_thr") if thr_varies else p3_thr
        p4_ge2 = Signal(L) if self.spike_limit > 1 else None
        p4_i = Signal(data.ArrayLayout(signed(cur.state_bits), L)) if cur is not None else None
        p3_ovf = Signal()
        sweep_ovf = Signal()
        lane_ovf = []
        accs = []
        for j in range(L):
            acc = p3_acc[j]
            if cur is not None:
                chi = acc > cur.state_max
                clo = acc < cur.state_min
                p3_i = Signal(signed(cur.state_bits), name=f"p3_i{j}")
                m.d.comb += p3_i.eq(Mux(chi, cur.state_max, Mux(clo, cur.state_min, acc)))
                lane_ovf.append(chi | clo)
                with m.If(step):
                    m.d.sync += p4_i[j].eq(p3_i)
                acc = p3_v[j] + p3_i
            accs.append(acc)
            hi = acc > layer.state_max
            lo = acc < layer.state_min
            lane_ovf.append(hi | lo)
            if layer.v_min is not None:
                # v_min >= state min: raising to v_min also undoes a clamp from below
                u = Mux(hi, layer.state_max, Mux(acc < layer.v_min, layer.v_min, acc))
            else:
                u = Mux(hi, layer.state_max, Mux(lo, layer.state_min, acc))
            with m.If(step):
                m.d.sync += p4_u[j].eq(u)
        m.d.comb += p3_ovf.eq(Cat(lane_ovf).any())
        with m.If(step):
            if self.fire:
                m.d.sync += p4_fired.eq(Cat(p3.valid & (accs[j] >= p3_thr[j])
                                            for j in range(L)))
            if p4_ge2 is not None:
                m.d.sync += p4_ge2.eq(Cat(p3.valid & self._at_least(accs[j], p3_thr, j, 2)
                                          for j in range(L)))
            if thr_varies:
                m.d.sync += p4_thr.eq(p3_thr)
        with m.If(start_sweep):
            m.d.sync += sweep_ovf.eq(0)
        with m.Elif(step & p3.valid & p3_ovf):
            m.d.sync += sweep_ovf.eq(1)
        return p4_u, p4_fired, p4_thr, sweep_ovf, p4_ge2, p4_i

    def _at_least(self, acc, thr, j, k):
        """``clamp(acc) >= k*thr[j]`` for ``k >= 1`` (thresholds are positive): ``acc >=
        k*thr[j]`` where ``k*thr[j]`` lies in the state range, never where it does not."""
        smax = self.layer.state_max
        if self.thr_lanes is not None:
            kthr = self.thr_lanes[j] * k
            return Const(0) if kthr > smax else acc >= kthr
        kthr = mul_const(thr[j], k)
        return (acc >= kthr) & (kthr <= smax)

    def _spike_count(self, m, p4_u, p4_thr):
        """P4 (``spike_limit`` ``M > 1`` only, beside the leak): ``p4_count``, the spike
        count ``s = min(M, u // threshold)`` of every lane (0 when ``u < threshold``),
        and ``p4_sub = s * threshold``, what a subtract reset removes.

        ``u // threshold`` is a restoring division with ``n = bits_for(M)`` quotient bits
        (``2**n > M``), highest first: bit ``b`` is set when
        ``u >= sub + (threshold << b)``, and then ``sub`` grows by ``threshold << b``;
        so ``sub`` is ``q * threshold`` throughout and no remainder is kept. It needs no
        divider and no multiple of a varying threshold but ``M * threshold``: ``n``
        compares in series (each against a sum of constants when the threshold is a
        constant, else an add and a compare), exact for any threshold, as the quotient
        saturates at ``2**n - 1 >= M`` when ``u >= 2**n * threshold``. Where ``M <
        2**n - 1`` one more compare, ``u >= M * threshold`` (in parallel), saturates the
        count at ``M``. Fewer LUTs than ``M`` parallel compares against the multiples
        ``k * threshold`` from ``M = 4`` on, and as few for ``M = 2, 3``.

        Returns ``(p4_count, p4_sub)``; for ``M = 1`` ``(None, p4_thr)``: the fired mask
        is the count, and the threshold what a reset removes.
        """
        M = self.spike_limit
        if M == 1:
            return None, p4_thr
        L, Sb = self.L, self.layer.state_bits
        n = bits_for(M)
        p4_count = Signal(data.ArrayLayout(unsigned(n), L))
        p4_sub = Signal(data.ArrayLayout(unsigned(Sb), L))
        for j in range(L):
            u = p4_u[j]
            thr = p4_thr[j] if self.thr_lanes is None else Const(self.thr_lanes[j])
            sub = Const(0, 1)
            bits = []
            for b in reversed(range(n)):
                cand = sub + (thr << b)
                take = Signal(name=f"p4_q{j}_{b}")
                m.d.comb += take.eq(u >= cand)
                bits.append(take)
                sub = Mux(take, cand, sub)
            q = Cat(*reversed(bits))
            if M == (1 << n) - 1:
                m.d.comb += [p4_count[j].eq(q), p4_sub[j].eq(sub)]
            else:
                mthr = mul_const(thr, M) if self.thr_lanes is None else \
                    Const(self.thr_lanes[j] * M)
                sat = u >= mthr
                m.d.comb += [p4_count[j].eq(Mux(sat, M, q)), p4_sub[j].eq(Mux(sat, mthr, sub))]
        return p4_count, p4_sub

    def _leak(self, m, step, p4_u, p4_sub, p4_i):
        """P4 -> P5: ``p5_leak = u*num >> frac`` (shifts and adds, :mod:`hw.arith`),
        ``p5_sub``, what a subtract reset removes from a fired lane (the threshold;
        ``s * threshold`` with ``spike_limit > 1``, 0 for a lane that does not fire), and
        for a current-based layer ``p5_i = leak_c(i')``, the stored current.
        Returns ``(p5_leak, p5_sub, p5_i)`` (``p5_i``: ``None`` for a plain layer)."""
        layer, L = self.layer, self.L
        p5_leak = Signal(data.ArrayLayout(signed(layer.state_bits + 1), L))
        p5_sub = Signal(data.ArrayLayout(unsigned(layer.state_bits), L),
                        name="p5_thr" if self.spike_limit == 1 else "p5_sub")
        p5_i = None
        if self.current is not None:
            cur = self.current
            p5_i = Signal(data.ArrayLayout(signed(cur.state_bits + 1), L))
        with m.If(step):
            for j in range(L):
                m.d.sync += [p5_leak[j].eq(self._leaked(p4_u[j], layer.beta_num,
                                                        layer.beta_frac_bits)),
                             p5_sub[j].eq(p4_sub[j])]
                if p5_i is not None:
                    m.d.sync += p5_i[j].eq(self._leaked(p4_i[j], cur.beta_num,
                                                        cur.beta_frac_bits))
        return p5_leak, p5_sub, p5_i

    @staticmethod
    def _leaked(u, num, frac):
        """``(u * num) >> frac`` by shifts and adds (the contract's leak)."""
        if num == (1 << frac):
            return u
        if num == 0:
            return Const(0)
        return mul_const(u, num) >> frac

    def _spike_mask(self, m, step, emitted, p4_fired, p4_count, p4_ge2):
        """The spikes of the word in P5: ``p5_fired``, the lanes that fire (for the reset
        rule); ``p5_spikes``, the lanes with spikes still to emit (the lowest loses one
        when ``emitted``); ``p5_max1`` "at most one spike left" and ``p5_none`` "none
        left", counted over the lanes (with ``spike_limit > 1`` a lane with count ``s``
        holds ``s`` spikes).

        ``adv`` enables every sweep register, so it must start at registers and one gate:
        deriving it from ``p5_spikes`` was the slowest ECP5 path. Hence the two summaries
        are registers kept with the mask, loaded from ``p4_fired`` (and ``p4_ge2``) and,
        when a spike leaves, from a saturating count of what was left before it left.

        With ``spike_limit > 1`` the word in P5 keeps a count per lane (``p5_left``,
        loaded from ``p4_count``); an emission decrements the lowest lane with a count
        left, so a lane with count ``s`` is emitted ``s`` times in a row.

        Returns ``(p5_spikes, p5_fired, p5_max1, p5_none)``.
        """
        L = self.L
        p5_fired = Signal(L)
        p5_max1 = Signal(init=1)
        p5_none = Signal(init=1)
        if self.spike_limit == 1:
            p5_spikes = Signal(L)
            with m.If(step):
                m.d.sync += [p5_spikes.eq(p4_fired), p5_fired.eq(p4_fired),
                             p5_max1.eq(count_upto(p4_fired, 2) <= 1),
                             p5_none.eq(p4_fired == 0)]
            with m.Elif(emitted):
                # the lowest spike is out: at most one left if there were at most two
                m.d.sync += [p5_spikes.eq(p5_spikes & (p5_spikes - 1)),
                             p5_max1.eq(count_upto(p5_spikes, 3) <= 2), p5_none.eq(p5_max1)]
            return p5_spikes, p5_fired, p5_max1, p5_none
        p5_left = Signal.like(p4_count, name="p5_left")
        p5_spikes = Signal(L)
        m.d.comb += p5_spikes.eq(Cat(p5_left[j] != 0 for j in range(L)))
        lowest = p5_spikes & ~(p5_spikes - 1)          # one-hot: the lane emitted now
        # min(left, 3) summed over the lanes, as a count of "left >= 1, 2, 3" bits
        left_ge = Cat(*(p5_left[j] >= k for k in (1, 2, 3) for j in range(L)))
        with m.If(step):
            m.d.sync += [p5_left.eq(p4_count), p5_fired.eq(p4_fired),
                         p5_max1.eq((count_upto(p4_fired, 2) <= 1) & (p4_ge2 == 0)),
                         p5_none.eq(p4_fired == 0)]
        with m.Elif(emitted):
            m.d.sync += [p5_left[j].eq(p5_left[j] - lowest[j]) for j in range(L)]
            m.d.sync += [p5_max1.eq(count_upto(left_ge, 3) <= 2), p5_none.eq(p5_max1)]
        return p5_spikes, p5_fired, p5_max1, p5_none

    def _reset_rule(self, m, p5_leak, p5_sub, p5_fired, p5_i):
        """P5: ``p5_vnew``, the word written back: the leaked ``u`` with the reset rule
        applied to the fired lanes (subtract ``p5_sub``, or zero), and for a
        current-based layer the leaked current ``p5_i`` beside it."""
        layer, L = self.layer, self.L
        p5_vnew = Signal(self.word)
        vlanes = p5_vnew if self.current is None else p5_vnew.v
        for j in range(L):
            fired, leak = p5_fired[j], p5_leak[j]
            sub = Mux(fired, p5_sub[j], 0) if self.spike_limit == 1 else p5_sub[j]
            if layer.reset == "subtract" and self.fire:
                m.d.comb += vlanes[j].eq(leak - sub)
            elif layer.reset == "zero" and self.fire:
                m.d.comb += vlanes[j].eq(Mux(fired, 0, leak))
            else:
                m.d.comb += vlanes[j].eq(leak)
            if self.current is not None:
                m.d.comb += p5_vnew.i[j].eq(p5_i[j])
        return p5_vnew

    # ------------------------------------------------------------------ control
    def _phases(self, m, phase, start_sweep, start_clear, busy, sweep_ovf):
        """The phase sequence: ``ACCUM`` -> ``SWEEP`` (end-of-step token accepted) or
        ``CLEAR`` (end-of-sample token) -> ``TOKEN`` (no signal in ``busy`` is high: the
        stages P0..P5 are empty and a list sequencer has nothing left; or the last word is
        cleared) -> ``ACCUM`` (the token transferred).

        ``token_kind`` holds the kind of the token from its acceptance on; ``clear_addr``
        the word the clear writes; ``ovf_step`` is loaded with ``sweep_ovf`` as the sweep
        ends. Returns ``(token_kind, clear_addr)``.
        """
        token_kind = Signal(KIND_BITS)
        clear_addr = Signal(range(max(2, self.D)))
        with m.Switch(phase):
            with m.Case(Phase.ACCUM):
                with m.If(start_sweep):
                    m.d.sync += [phase.eq(Phase.SWEEP), token_kind.eq(END_STEP)]
                with m.Elif(start_clear):
                    m.d.sync += [phase.eq(Phase.CLEAR), token_kind.eq(END_SAMPLE),
                                 clear_addr.eq(0)]
            with m.Case(Phase.SWEEP):
                with m.If(~Cat(busy).any()):
                    m.d.sync += [phase.eq(Phase.TOKEN), self.ovf_step.eq(sweep_ovf)]
            with m.Case(Phase.CLEAR):
                m.d.sync += clear_addr.eq(clear_addr + 1)
                with m.If(clear_addr == self.D - 1):
                    m.d.sync += phase.eq(Phase.TOKEN)
            with m.Case(Phase.TOKEN):
                with m.If(self.out.ready):
                    m.d.sync += phase.eq(Phase.ACCUM)
        return token_kind, clear_addr

    def _emit(self, m, phase, token_kind, p5, p5_spikes, p5_none):
        """``out``: in ``SWEEP`` the lowest spike left in P5 (``p5_lane``) as the event
        ``(c = g*L + lane, y, x)``; in ``TOKEN`` the token, whose transfer strobes
        ``step_done`` or ``sample_done``."""
        p5_lane = Signal(range(max(2, self.L)))
        for j in reversed(range(self.L)):
            with m.If(p5_spikes[j]):
                m.d.comb += p5_lane.eq(j)
        with m.Switch(phase):
            with m.Case(Phase.SWEEP):
                m.d.comb += [self.out.valid.eq(p5.valid & ~p5_none),
                             self.out.payload.kind.eq(SPIKE),
                             self.out.payload.c.eq(p5.cbase + p5_lane),
                             self.out.payload.y.eq(p5.y),
                             self.out.payload.x.eq(p5.x)]
            with m.Case(Phase.TOKEN):
                m.d.comb += [self.out.valid.eq(1), self.out.payload.kind.eq(token_kind)]
                with m.If(self.out.ready):
                    m.d.comb += [self.step_done.eq(token_kind == END_STEP),
                                 self.sample_done.eq(token_kind == END_SAMPLE)]
