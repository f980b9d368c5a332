"""LIF neuron core array: the state RAM of one layer, its read-modify-write
accumulator and the end-of-step sweep (steps 1-5 of the contract).

State RAM
    ``D = positions x G`` words of ``L`` lanes, each lane an ``acc_bits`` two's-complement
    accumulator (an ordinary :class:`amaranth.lib.memory.Memory` with one synchronous
    read port and one write port: block RAM or LUT RAM, never one register per neuron).
    Word ``a = pos*G + g`` holds output channels ``g*L .. g*L+L-1`` at position ``pos``
    (``pos = y*Wo + x``; a linear layer has one position). Between steps a lane holds the
    stored state ``v``; during a step it accumulates exactly (no wrap: ``acc_bits`` is the
    contract's worst case).

Accumulate phase (``ACCUM``)
    ``upd`` (valid/ready, ``ready = 1`` in this phase) carries state addresses; the weight
    word of an update arrives on ``wdata`` one cycle after its transfer (the layer's ROM
    has a registered output). Cycle ``n``: read the state word; cycle ``n+1``: register
    the RAM output (and the weights); cycle ``n+2``: add the ``L`` sign-extended weights
    lane by lane and write back. The RAM output never feeds the adder directly (it is
    the slowest signal of the design). Updates of one address in consecutive cycles, or
    one cycle apart, are exact: the word written in the previous cycle is forwarded
    (compare and mux) over the stale RAM output when it is registered, and again over the
    register when it is added. Throughput: one update (``L`` synaptic operations) per
    cycle, never a stall.

Sweep (``SWEEP``, on an end-of-step token)
    Reads every word once in address order, ``L`` neurons per cycle, through a
    6-stage pipeline: P0 read; P1 register the RAM output (forwarding the word the last
    update wrote in the previous cycle); P2 ``acc + bias``; P3 clamp to ``state_bits``
    (overflow flag) and ``s = acc >= threshold`` (the same as ``u >= threshold``, as
    ``1 <= threshold <= state max``); P4 the leak product ``u * num`` (shifts and adds,
    :mod:`hw.arith`); P5 ``v = (u*num >> frac)`` with the reset rule, write back, and
    emission. The fired
    lanes of a word are emitted one per cycle, lowest lane first, as events
    ``(c = g*L + lane, y, x)``. The pipeline advances when P5 is empty, holds no spike,
    or emits its last spike in this cycle (``out.ready``), so a word with ``p`` spikes
    occupies P5 for ``max(1, p)`` cycles when ``out.ready`` stays high.

Token (``TOKEN``)
    When the sweep pipeline is empty the token is offered on ``out``; its transfer
    strobes ``step_done`` (``sample_done`` for the end-of-sample token) and returns to
    ``ACCUM``. An end-of-sample token first clears every word (``CLEAR``, one word per
    cycle) so the next sample starts from ``v = 0``.

Exact cycle counts (no back-pressure on ``out``), counted from the cycle in which the
token is accepted on ``upd`` (cycle 0): the sweep issues word ``a`` in cycle ``1 + a +
extra(a)``, where ``extra(a)`` is the sum of ``max(0, p_b - 1)`` over the words ``b < a``
(``p_b`` = spikes of word ``b``); the token is offered in cycle ``D + 7 + extra(D)`` and
transfers in that cycle when ``out.ready``. A clear: token offered in cycle ``D + 1``.

Readback
    ``rb_addr`` drives the read port while ``idle`` (accumulate phase, no update
    offered); ``rb_data`` is the word one cycle later. Used by tests and status readout.

Membrane tap
    ``tap_valid`` / ``tap_addr`` / ``tap_u`` show the clamped ``u`` (before leak) of each
    swept word once, for a membrane readout.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, MemoryData
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .arith import count_upto, mul_const
from .stream import END_SAMPLE, END_STEP, KIND_BITS, SPIKE, event_signature, shape3

__all__ = ["NeuronCore", "CoreUpdateLayout", "lane_params"]

ACCUM, SWEEP, CLEAR, TOKEN = 0, 1, 2, 3


class CoreUpdateLayout(data.StructLayout):
    def __init__(self, depth):
        super().__init__({"kind": unsigned(KIND_BITS), "sa": unsigned(bits_for(max(0, depth - 1)))})


def lane_params(layer, lanes):
    """Per group ``g`` and lane ``j``: ``(threshold, bias)`` lists of length ``G``.

    Padding lanes (``g*L + j >= C``) get threshold ``state_max`` and bias 0: their
    accumulator stays 0, so they never fire nor overflow.
    """
    C = shape3(layer.out_shape)[0]
    G = -(-C // lanes)
    thr, bias = [], []
    for g in range(G):
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

    Attributes
    ----------
    upd : In(stream of :class:`CoreUpdateLayout`)
    wdata : In(wbits * L), lane ``j`` (signed) in bits ``j*wbits .. j*wbits+wbits-1``
    out : Out(event stream of the layer's output shape)
    idle, step_done, sample_done, ovf_step : Out(1)
    rb_addr : In, rb_data : Out(ArrayLayout(signed(acc_bits), L))
    tap_valid : Out(1), tap_addr : Out, tap_u : Out(ArrayLayout(signed(state_bits), L))
    """
    def __init__(self, layer, lanes, *, wbits, fire=True):
        self.layer = layer
        self.L = lanes
        self.wbits = wbits
        self.fire = fire
        self.C, self.Ho, self.Wo = shape3(layer.out_shape)
        self.G = -(-self.C // lanes)
        self.D = self.Ho * self.Wo * self.G
        A, Sb = layer.acc_bits, layer.state_bits
        self.word = data.ArrayLayout(signed(A), lanes)
        self.state_data = MemoryData(shape=self.word, depth=self.D, init=[])
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

    def elaborate(self, platform):
        m = Module()
        layer, L, G, D = self.layer, self.L, self.G, self.D
        A, Sb = layer.acc_bits, layer.state_bits
        smin, smax = layer.state_min, layer.state_max
        num, frac = layer.beta_num, layer.beta_frac_bits

        mem = m.submodules.state = Memory(data=self.state_data)
        rd = mem.read_port()
        wr = mem.write_port()
        m.d.comb += self.rb_data.eq(rd.data)

        phase = Signal(2)
        tok_kind = Signal(KIND_BITS)
        m.d.comb += [self.idle.eq(phase == ACCUM), self.upd.ready.eq(phase == ACCUM)]

        # ---------------------------------------------------------------- accumulate
        # Stage A (cycle n): read issued.  Stage B (n+1): the RAM output, with the word
        # written in cycle n forwarded over it, is registered (``dq``, shared with the
        # sweep's P1 -> P2 register); the weights arrive and are registered.  Stage C
        # (n+2): ``dq`` (or the word written in n+1, forwarded) plus the weights is written.
        # (flat signals, not array views: the per-lane debug names of a view register
        # make Yosys's abc9 fail with a duplicate wire name on the ECP5)
        W = A * L
        ra = Signal(range(max(2, D)))        # address of the word on rd.data
        wl_v = Signal()                      # the write of the previous cycle
        wl_a = Signal(range(max(2, D)))
        wl_d = Signal(W)
        m.d.sync += [wl_v.eq(wr.en), wl_a.eq(wr.addr), wl_d.eq(wr.data.as_value())]
        with m.If(rd.en):
            m.d.sync += ra.eq(rd.addr)
        dq = Signal(W)                       # registered read data
        dq_en = Signal()
        with m.If(dq_en):
            m.d.sync += dq.eq(Mux(wl_v & (wl_a == ra), wl_d, rd.data.as_value()))
        bv = Signal()
        bsa = Signal.like(self.upd.payload.sa)
        cv = Signal()
        csa = Signal.like(self.upd.payload.sa)
        cw = Signal(self.wbits * L)
        cfwd = Signal()                      # the write of stage B's cycle hits stage C's word
        upd_fire = self.upd.valid & self.upd.ready
        m.d.sync += [bv.eq(upd_fire & (self.upd.payload.kind == SPIKE)),
                     bsa.eq(self.upd.payload.sa),
                     cv.eq(bv), csa.eq(bsa), cw.eq(self.wdata),
                     cfwd.eq(wr.en & (wr.addr == bsa))]
        old = Signal(W)
        new = Signal(self.word)
        m.d.comb += old.eq(Mux(cfwd, wl_d, dq))
        for j in range(L):
            m.d.comb += new[j].eq(old.word_select(j, A).as_signed()
                                  + cw.word_select(j, self.wbits).as_signed())

        # ---------------------------------------------------------------- sweep
        sw_active = Signal()
        sw_a = Signal(range(max(2, D)))
        sw_g = Signal(range(max(2, G)))
        sw_x = Signal(range(max(2, self.Wo)))
        sw_y = Signal(range(max(2, self.Ho)))
        sw_cb = Signal(range(max(2, G * L)))
        adv = Signal()

        def meta(name):
            return {
                "v": Signal(name=f"{name}_v"),
                "a": Signal.like(sw_a, name=f"{name}_a"),
                "g": Signal.like(sw_g, name=f"{name}_g"),
                "x": Signal.like(sw_x, name=f"{name}_x"),
                "y": Signal.like(sw_y, name=f"{name}_y"),
                "cb": Signal.like(sw_cb, name=f"{name}_cb"),
            }
        p1, p2, p3, p4, p5 = meta("p1"), meta("p2"), meta("p3"), meta("p4"), meta("p5")

        def pass_meta(dst, src):
            return [dst[k].eq(src[k]) for k in dst]

        thr, bias = lane_params(layer, L)
        has_bias = layer.bias is not None
        # bias of the word in P2 (ROM read in P1 when G > 1)
        bias_w = Signal(data.ArrayLayout(signed(Sb), L))
        if has_bias and G > 1:
            bmem = m.submodules.bias = Memory(shape=data.ArrayLayout(signed(Sb), L), depth=G,
                                              init=[bias[g] for g in range(G)])
            brd = bmem.read_port()
            m.d.comb += [brd.addr.eq(p1["g"]), brd.en.eq(adv), bias_w.eq(brd.data)]
        elif has_bias:
            m.d.comb += bias_w.eq(Const.cast(data.ArrayLayout(signed(Sb), L).const(bias[0])))
        # threshold of the word in P3 (ROM read in P2 when it varies by group), passed on
        # to P4 and P5 (the subtract reset needs it there)
        thr_layout = data.ArrayLayout(unsigned(Sb), L)
        thr_w = Signal(thr_layout)
        thr_varies = G > 1 and len({tuple(t) for t in thr}) > 1
        if thr_varies:
            tmem = m.submodules.thr = Memory(shape=thr_layout, depth=G,
                                             init=[thr[g] for g in range(G)])
            trd = tmem.read_port()
            m.d.comb += [trd.addr.eq(p2["g"]), trd.en.eq(adv), thr_w.eq(trd.data)]
            thr4 = Signal(thr_layout)
        else:
            m.d.comb += thr_w.eq(Const.cast(thr_layout.const(thr[0])))
            thr4 = thr_w

        acc3 = Signal(self.word)                                  # P3 register
        u4 = Signal(data.ArrayLayout(signed(Sb), L))              # P4 register
        ovf4 = Signal()
        fired4 = Signal(L)       # lanes that fire: u >= threshold
        lk_bits = Sb + 1
        leak5 = Signal(data.ArrayLayout(signed(lk_bits), L))      # P5 registers
        thr5 = Signal(data.ArrayLayout(unsigned(Sb), L))
        mask5 = Signal(L)        # spikes still to emit
        s5 = Signal(L)           # spikes of the word (for the reset rule)
        # registered summaries of mask5, kept with it: "at most one spike left" and "no
        # spike left". adv (below) enables every sweep register, so it must start at
        # registers and one gate: deriving it from mask5 was the slowest ECP5 path
        few5 = Signal(init=1)
        none5 = Signal(init=1)
        ovf_acc = Signal()

        in_sweep = phase == SWEEP
        m.d.comb += adv.eq(~p5["v"] | (few5 & (none5 | self.out.ready)))

        with m.If(in_sweep & adv):
            # P0 -> P1
            m.d.sync += [p1["v"].eq(sw_active), p1["a"].eq(sw_a), p1["g"].eq(sw_g),
                         p1["x"].eq(sw_x), p1["y"].eq(sw_y), p1["cb"].eq(sw_cb)]
            with m.If(sw_active):
                m.d.sync += sw_a.eq(sw_a + 1)
                with m.If(sw_a == D - 1):
                    m.d.sync += sw_active.eq(0)
                with m.If(sw_g == G - 1):
                    m.d.sync += [sw_g.eq(0), sw_cb.eq(0)]
                    with m.If(sw_x == self.Wo - 1):
                        m.d.sync += [sw_x.eq(0), sw_y.eq(sw_y + 1)]
                    with m.Else():
                        m.d.sync += sw_x.eq(sw_x + 1)
                with m.Else():
                    m.d.sync += [sw_g.eq(sw_g + 1), sw_cb.eq(sw_cb + L)]
            # P1 -> P2: register the read data (dq, enabled below)
            m.d.sync += pass_meta(p2, p1)
            # P2 -> P3: acc + bias
            m.d.sync += pass_meta(p3, p2)
            for j in range(L):
                dj = dq.word_select(j, A).as_signed()
                m.d.sync += acc3[j].eq(dj + bias_w[j] if has_bias else dj)
            # P3 -> P4: clamp
            m.d.sync += pass_meta(p4, p3)
            lane_ovf = []
            for j in range(L):
                hi = acc3[j] > smax
                lo = acc3[j] < smin
                lane_ovf.append(hi | lo)
                m.d.sync += u4[j].eq(Mux(hi, smax, Mux(lo, smin, acc3[j])))
            any_ovf = Signal()
            m.d.comb += any_ovf.eq(Const(0, 1) if not lane_ovf else
                                   _or_all(lane_ovf))
            m.d.sync += ovf4.eq(any_ovf)
            # the compare, on the accumulator rather than the clamped u: the same result,
            # as 1 <= threshold <= state max (sim.model checks it), and one stage
            # earlier, so that P4 -> P5 only summarises registered bits for adv
            if self.fire:
                m.d.sync += fired4.eq(Cat(p3["v"] & (acc3[j] >= thr_w[j]) for j in range(L)))
            if thr_varies:
                m.d.sync += thr4.eq(thr_w)
            with m.If(p3["v"] & any_ovf):
                m.d.sync += ovf_acc.eq(1)
            # P4 -> P5: leak product; the fired lanes and their summaries for adv
            m.d.sync += pass_meta(p5, p4)
            m.d.sync += [mask5.eq(fired4), s5.eq(fired4),
                         few5.eq(count_upto(fired4, 2) <= 1), none5.eq(fired4 == 0)]
            for j in range(L):
                u = u4[j]
                if num == (1 << frac):
                    m.d.sync += leak5[j].eq(u)
                elif num == 0:
                    m.d.sync += leak5[j].eq(0)
                else:
                    m.d.sync += leak5[j].eq(mul_const(u, num) >> frac)
                m.d.sync += thr5[j].eq(thr4[j])
        with m.Elif(in_sweep & self.out.valid & self.out.ready):
            # the lowest spike is out: at most one left if there were at most two
            m.d.sync += [mask5.eq(mask5 & (mask5 - 1)), few5.eq(count_upto(mask5, 3) <= 2),
                         none5.eq(few5)]

        # P5: reset rule and write-back
        v5 = Signal(data.ArrayLayout(signed(A), L))
        for j in range(L):
            s = s5[j]
            lk = leak5[j]
            if layer.reset == "subtract" and self.fire:
                m.d.comb += v5[j].eq(lk - Mux(s, thr5[j], 0))
            elif layer.reset == "zero" and self.fire:
                m.d.comb += v5[j].eq(Mux(s, 0, lk))
            else:
                m.d.comb += v5[j].eq(lk)
        m.d.comb += [self.tap_valid.eq(in_sweep & adv & p4["v"]),
                     self.tap_addr.eq(p4["a"]), self.tap_u.eq(u4)]

        # lowest fired lane
        lane = Signal(range(max(2, L)))
        for j in reversed(range(L)):
            with m.If(mask5[j]):
                m.d.comb += lane.eq(j)

        clr = Signal(range(max(2, D)))
        m.d.comb += dq_en.eq((phase == ACCUM) | (in_sweep & adv))
        with m.Switch(phase):
            with m.Case(ACCUM):
                m.d.comb += [rd.addr.eq(Mux(self.upd.valid, self.upd.payload.sa, self.rb_addr)),
                             rd.en.eq(1)]
                with m.If(upd_fire & (self.upd.payload.kind == END_STEP)):
                    m.d.sync += [phase.eq(SWEEP), tok_kind.eq(END_STEP), sw_active.eq(1),
                                 sw_a.eq(0), sw_g.eq(0), sw_x.eq(0), sw_y.eq(0), sw_cb.eq(0),
                                 ovf_acc.eq(0)]
                with m.Elif(upd_fire & (self.upd.payload.kind == END_SAMPLE)):
                    m.d.sync += [phase.eq(CLEAR), tok_kind.eq(END_SAMPLE), clr.eq(0)]
            with m.Case(SWEEP):
                m.d.comb += [rd.addr.eq(sw_a), rd.en.eq(adv)]
                m.d.comb += [self.out.valid.eq(p5["v"] & ~none5),
                             self.out.payload.kind.eq(SPIKE),
                             self.out.payload.c.eq(p5["cb"] + lane),
                             self.out.payload.y.eq(p5["y"]),
                             self.out.payload.x.eq(p5["x"])]
                with m.If(~sw_active & ~p1["v"] & ~p2["v"] & ~p3["v"] & ~p4["v"] & ~p5["v"]):
                    m.d.sync += [phase.eq(TOKEN), self.ovf_step.eq(ovf_acc)]
            with m.Case(CLEAR):
                m.d.sync += clr.eq(clr + 1)
                with m.If(clr == D - 1):
                    m.d.sync += phase.eq(TOKEN)
            with m.Case(TOKEN):
                m.d.comb += [self.out.valid.eq(1), self.out.payload.kind.eq(tok_kind)]
                with m.If(self.out.ready):
                    m.d.sync += phase.eq(ACCUM)
                    m.d.comb += [self.step_done.eq(tok_kind == END_STEP),
                                 self.sample_done.eq(tok_kind == END_SAMPLE)]

        # write port: clear (first: a clear starting while the last update of the sample
        # is still in stage C makes that update moot), accumulate, sweep write-back
        with m.If(phase == CLEAR):
            m.d.comb += [wr.addr.eq(clr), wr.data.eq(0), wr.en.eq(1)]
        with m.Elif(cv):
            m.d.comb += [wr.addr.eq(csa), wr.data.eq(new), wr.en.eq(1)]
        with m.Elif(in_sweep & p5["v"]):
            m.d.comb += [wr.addr.eq(p5["a"]), wr.data.eq(v5), wr.en.eq(1)]
        return m


def _or_all(bits):
    out = bits[0]
    for b in bits[1:]:
        out = out | b
    return out
