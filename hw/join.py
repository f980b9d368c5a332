"""Join: the update streams of a layer's synapse units merged into its one neuron core.

Inputs ``0 .. n_live-1`` are *live* (a synapse with delay 0 and one tap, or the token
feed of a layer without one): they carry spikes, :data:`~hw.stream.END_STEP` and
:data:`~hw.stream.END_SAMPLE`. Inputs ``n_live .. n-1`` are *replay* inputs (synapse
units fed by a delay line): spikes and ``END_STEP`` only, never ``END_SAMPLE``.
Every input is an update stream (``kind``, ``sa``) with its weight word on
``rom_data[i]`` one cycle after a transfer (the unit's ROM has a registered output).

Registers: ``got[i]`` (input ``i`` has delivered its token of the current step),
``is_sample`` (the live tokens of this step are ``END_SAMPLE``), ``go_done`` (``go``
was issued for this step), ``lock``/``lock_idx`` (a spike offered on ``out`` was not
taken: hold that input), ``sel_q`` (the input picked in the previous cycle).

Handshake, in one cycle::

    elig[i]   = inp[i].valid & ~got[i]
    pick      = lock ? lock_idx : lowest i with elig[i]      (has = lock | OR elig)
    tok_valid = AND_{i live} got[i] & (is_sample | AND_{i replay} got[i])
    out.valid = tok_valid | (has & inp[pick].kind == SPIKE)
    out.kind  = tok_valid ? (is_sample ? END_SAMPLE : END_STEP) : SPIKE
    out.sa    = tok_valid ? 0 : inp[pick].sa
    inp[i].ready = ~tok_valid & has & pick == i & (inp[i].kind != SPIKE | out.ready)
    go        = ~go_done & OR_{i live} (inp[i].valid & ~got[i] & inp[i].kind != END_SAMPLE)
    sample_end = tok_valid & is_sample & out.ready
    wdata     = sign-extended rom_data[sel_q]

    at the edge:  a token taken from input i         -> got[i] <= 1
                                                       (is_sample <= 1 for END_SAMPLE)
                  go                                 -> go_done <= 1
                  tok_valid & out.ready              -> every got, is_sample, go_done <= 0
                  out.valid & ~out.ready & ~tok_valid -> lock <= 1, lock_idx <= pick
                  else                               -> lock <= 0
                  always                             -> sel_q <= pick

Cycle behaviour: a spike update passes in the cycle it is offered (no register on the
path); a token from an input is absorbed in the cycle it is picked, whatever
``out.ready`` is (one per cycle, lowest index first); the merged token is offered from
the cycle after the last one was absorbed (one cycle later than through a wire) and
stays until the core takes it; then step ``c + 1`` begins. A spike offered while the
core does not take it (``out.ready`` low) stays the one offered until taken (the stream
rules of :mod:`hw.stream` hold on ``out``). Within a step, input ``i`` is served only
while every input below it has nothing to offer (fixed priority); the step's token
waits for every input, so no input can overtake another by a step.

``go`` (to every replay unit): one pulse per step, in the first cycle in which a live
input that has not delivered its token shows a spike or ``END_STEP`` (step ``c`` exists);
none for an ``END_SAMPLE`` "step". ``sample_end``: the cycle in which the core takes
``END_SAMPLE``.

A join with one live input and no replay input is a wire (``out`` is ``inp[0]``,
``wdata`` is ``rom_data[0]``, ``go`` is 0): a chain's layer has the resources and
cycles it had before graphs. ``busy``: some ``got`` is set (a step is half merged).

The plain Python model of this block is :class:`sim.cycles.JoinModel`.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sim.geometry import END_SAMPLE, END_STEP, SPIKE

from .neuron import CoreUpdateLayout

__all__ = ["Join"]


class Join(wiring.Component):
    """Merge ``n_live + n_replay`` update streams (see the module docstring).

    Parameters
    ----------
    n_live : int
        Live inputs, ``>= 1`` (inputs ``0 .. n_live-1``).
    n_replay : int
        Replay inputs, ``>= 0`` (inputs ``n_live ..``).
    depth : int
        State words of the core (the range of ``sa``).
    wbits : sequence of int
        Lane weight width of every input's ``rom_data``; ``wdata`` has the widest.
    lanes : int
        ``L``, lanes per weight word.

    Attributes
    ----------
    inp : In(stream of :class:`~hw.neuron.CoreUpdateLayout`), an array of ``n``
    rom_data : In(max(wbits) * L), an array of ``n``
        Input ``i``'s weight word: lane ``j`` (signed) in bits ``j*wbits[i] ..``; the
        bits above ``wbits[i]*L`` are not read.
    out : Out(stream of :class:`~hw.neuron.CoreUpdateLayout`)
        To the core's ``upd``.
    wdata : Out(max(wbits) * L)
        To the core's ``wdata``: lane ``j`` in bits ``j*max(wbits) ..``.
    go, sample_end, busy : Out(1)
    """
    def __new__(cls, n_live, n_replay, *, depth, wbits, lanes, src_loc_at=0):
        # checked before the object exists (no "created but never used" warning)
        for name, v, lo in (("n_live", n_live, 1), ("n_replay", n_replay, 0),
                            ("lanes", lanes, 1), ("depth", depth, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"Join: {name} = {v!r} must be an integer >= {lo}")
        n = n_live + n_replay
        wbits = list(wbits)
        if len(wbits) != n or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                                  for w in wbits):
            raise ValueError(f"Join: wbits = {wbits!r} needs {n} integer widths >= 1")
        return super().__new__(cls, src_loc_at=1 + src_loc_at)

    def __init__(self, n_live, n_replay, *, depth, wbits, lanes):
        self.n_live, self.n_replay = n_live, n_replay
        self.n = n_live + n_replay
        self.wbits = [int(w) for w in wbits]
        self.L = lanes
        self.wmax = max(self.wbits)
        self.wire = n_live == 1 and n_replay == 0
        upd = stream.Signature(CoreUpdateLayout(depth))
        super().__init__({
            "inp": In(upd).array(self.n),
            "rom_data": In(self.wmax * lanes).array(self.n),
            "out": Out(upd),
            "wdata": Out(self.wmax * lanes),
            "go": Out(1),
            "sample_end": Out(1),
            "busy": Out(1),
        })

    def _sext(self, i):
        """``rom_data[i]`` with every lane sign-extended to ``wmax`` bits."""
        w, L, src = self.wbits[i], self.L, self.rom_data[i]
        if w == self.wmax:
            return src
        return Cat(*(_sext_lane(src[j * w:(j + 1) * w], self.wmax) for j in range(L)))

    def elaborate(self, platform):
        m = Module()
        n, nl = self.n, self.n_live
        if self.wire:
            wiring.connect(m, wiring.flipped(self.inp[0]), wiring.flipped(self.out))
            m.d.comb += [
                self.wdata.eq(self.rom_data[0]),
                self.sample_end.eq(self.out.valid & self.out.ready &
                                   (self.out.payload.kind == END_SAMPLE)),
            ]
            return m

        got = [Signal(name=f"got{i}") for i in range(n)]
        is_sample = Signal()
        go_done = Signal()
        lock = Signal()
        lock_idx = Signal(range(max(2, n)))
        sel_q = Signal(range(max(2, n)))
        pick = Signal(range(max(2, n)))
        has = Signal()

        elig = [self.inp[i].valid & ~got[i] for i in range(n)]
        with m.If(lock):
            m.d.comb += [pick.eq(lock_idx), has.eq(1)]
        with m.Else():
            for i in reversed(range(n)):
                with m.If(elig[i]):
                    m.d.comb += [pick.eq(i), has.eq(1)]
        kinds = Array(p.payload.kind for p in self.inp)
        sas = Array(p.payload.sa for p in self.inp)
        pick_kind = kinds[pick]
        all_live = Cat(*got[:nl]).all()
        all_rep = Cat(*got[nl:]).all() if self.n_replay else 1
        tok_valid = Signal()
        m.d.comb += tok_valid.eq(all_live & (is_sample | all_rep))
        spike = has & (pick_kind == SPIKE)
        m.d.comb += [
            self.out.valid.eq(tok_valid | spike),
            self.out.payload.kind.eq(Mux(tok_valid, Mux(is_sample, END_SAMPLE, END_STEP),
                                         SPIKE)),
            # a token's sa is 0 (hw.stream: held until the transfer, 0 for tokens)
            self.out.payload.sa.eq(Mux(tok_valid, 0, sas[pick])),
            self.busy.eq(Cat(*got).any()),
        ]
        take_tok = ~tok_valid & has & (pick_kind != SPIKE)
        for i in range(n):
            m.d.comb += self.inp[i].ready.eq(
                ~tok_valid & has & (pick == i) & ((pick_kind != SPIKE) | self.out.ready))
        go = ~go_done & Cat(*(self.inp[i].valid & ~got[i] &
                              (self.inp[i].payload.kind != END_SAMPLE)
                              for i in range(nl))).any()
        m.d.comb += [self.go.eq(go),
                     self.sample_end.eq(tok_valid & is_sample & self.out.ready)]

        m.d.sync += sel_q.eq(pick)
        with m.If(tok_valid & self.out.ready):
            m.d.sync += [g.eq(0) for g in got]
            m.d.sync += [is_sample.eq(0), go_done.eq(0)]
        with m.Else():
            with m.If(take_tok):
                with m.Switch(pick):
                    for i in range(n):
                        with m.Case(i):
                            m.d.sync += got[i].eq(1)
                with m.If(pick_kind == END_SAMPLE):
                    m.d.sync += is_sample.eq(1)
            with m.If(go):
                m.d.sync += go_done.eq(1)
        m.d.sync += [lock.eq(spike & ~tok_valid & ~self.out.ready), lock_idx.eq(pick)]

        words = Array(self._sext(i) for i in range(n))
        m.d.comb += self.wdata.eq(words[sel_q])
        return m


def _sext_lane(v, width):
    """``v`` (a slice holding a signed lane) sign-extended to ``width`` bits."""
    return Cat(v, v[-1].replicate(width - len(v)))
