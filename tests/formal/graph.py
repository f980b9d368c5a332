"""Formal harnesses of the graph handshakes: :class:`hw.fork.Fork`, :class:`hw.join.Join` and
:class:`hw.merge.Merge`.

All follow :mod:`tests.formal.harness`: the environment keeps the stream rules on every
input (assumed); all harness state is bounded (flags and saturating counters, no
absolute counters), so every assertion can be proved for every depth (ABC's PDR) as
well as to a bounded depth from reset (smtbmc).

Fork (:func:`fork_harness`)
    * stream rules on every output, and no combinational path from any ``out[i].ready``
      to ``out[i].valid``/``payload`` (two copies);
    * nothing lost or duplicated, per output: ``d[i]`` = (transfers on ``out[i]``) -
      (transfers on ``inp``) is always 0 or 1 (1: output ``i`` took the word still
      in flight on ``inp``); so a counter of output ``i``'s transfers always equals the
      input's transfers plus the in-flight item, and every transfer on ``out[i]``
      carries the word on ``inp`` (in order, unchanged);
    * bounded liveness: under the assumption that every consumer's ``ready`` is high at
      least once in every ``N`` consecutive cycles (fair consumers), a word offered on
      ``inp`` is accepted within ``N`` cycles: no consumer can hold the others back
      for ever.

Join (:func:`join_harness`), ``n_live`` live and ``n_replay`` replay inputs
    The environment: the stream rules on every input, known kinds; a replay input never
    offers ``END_SAMPLE`` and offers nothing before ``go`` of the current step; the live
    tokens of one step are all of one kind, and a live input offers ``END_SAMPLE`` only
    as the first item of a step (a sample ends between steps).
    * stream rules on ``out`` and no combinational path from ``out.ready`` (two copies);
    * weights: one cycle after a spike of input ``i`` is taken, ``wdata`` is that
      input's ``rom_data`` sign-extended to the widest input (inputs of 2 and 3 bits);
    * spikes: every spike taken from an input is the spike the core takes in the same
      cycle, same ``sa`` (nothing lost, duplicated or changed); no spike reaches the core
      otherwise;
    * tokens: no input is taken after its token until the forwarded token's transfer;
      ``END_STEP`` is offered to the core only after every live and every replay input
      delivered its ``END_STEP``, ``END_SAMPLE`` only after every live input delivered its
      ``END_SAMPLE``; ``go`` at most once per step, before that step's ``END_STEP`` and
      never in an ``END_SAMPLE`` "step"; ``sample_end`` exactly when the core takes
      ``END_SAMPLE``;
    * bounded liveness: if the core's ``ready`` is high at least once in every ``N``
      cycles, the join never waits longer than ``N`` cycles without a transfer while it
      offers something or some input offers an item it may take (one whose token it
      does not hold yet): it never waits for ever while every input offers.

Merge (:func:`merge_harness`), ``n`` token-synchronous inputs (the banks of a layer)
    The environment: the stream rules and known kinds on every input; all inputs offer
    the same token sequence. Per input a bounded ghost ``d[i]`` = (its tokens taken) -
    (tokens on ``out``), clamped to -1..1 (``ahead``/``behind`` flags): an input that is
    ahead offers no further token, inputs at the same position offer tokens of one kind
    (the kind an input ahead delivered, or the last token on ``out`` for one behind).
    * stream rules on ``out`` and no combinational path from ``out.ready`` (two copies);
    * spikes: a spike taken from an input is on ``out`` in the same cycle, unchanged, and
      a spike on ``out`` is taken from exactly one input in that cycle;
    * tokens: a token leaves on ``out`` exactly in the cycles in which every input's
      token is taken, of the same kind; no input's token is taken while a spike leaves;
    * bounded liveness: if ``out.ready`` is high at least once in every ``N`` cycles,
      the merge never waits ``N`` cycles without a transfer on ``out`` while some input
      offers a spike or every input offers a token.

Diamond (:func:`diamond_harness`): ``Fork(2)`` -> two FIFOs -> ``Join(2, 0)`` -> a fair
core, the shape in which a fork and a join could wait on each other: the fork's input
and the core both progress within a bound (the tight one, :data:`DIAMOND_BOUND`).
"""

from amaranth.hdl import Assert, Assume, Cat, Cover, Module, Mux, Signal

from .harness import assert_no_comb_ready, assert_sink_rules, assume_source

#: fairness window of the environment's ``ready`` (cycles)
FAIR = 3


def _fair(m, ready, n, name):
    """Assume ``ready`` is high at least once in every ``n`` consecutive cycles."""
    low = Signal(range(n + 1), name=f"{name}_low")
    m.d.sync += low.eq(mux_sat(ready, low, n))
    m.d.comb += Assume(ready | (low < n - 1))


def mux_sat(reset, count, top):
    """``0`` when ``reset``, else ``count + 1`` saturated at ``top``."""
    return Mux(reset, 0, Mux(count == top, top, count + 1))


def _bounded_wait(m, waiting, progress, n, message, name):
    """Assert that ``waiting`` never holds ``n`` cycles in a row without ``progress``."""
    wait = Signal(range(n + 2), name=f"{name}_wait")
    m.d.sync += wait.eq(mux_sat(~waiting | progress, wait, n + 1))
    m.d.comb += Assert(~waiting | progress | (wait < n - 1), message)
    return wait


# ----------------------------------------------------------------------------- fork

def fork_harness(n=2, shape=(2, 1, 2), fair=FAIR, broken=None, cover=False):
    """:class:`hw.fork.Fork` (or :class:`BrokenFork` with ``broken``), ``n`` outputs.
    ``cover=True`` adds ``Cover`` statements (for ``mode cover``): the outputs take one
    word in different cycles, and the input waits the longest the fairness allows."""
    from hw.fork import Fork
    m = Module()

    def make():
        return Fork(n, shape) if broken is None else BrokenFork(n, shape, broken)
    a = m.submodules.a = make()
    b = m.submodules.b = make()
    iv, ip = Signal(), Signal(len(a.inp.payload.as_value()))
    ra = [Signal(name=f"ready_a{i}") for i in range(n)]
    rb = [Signal(name=f"ready_b{i}") for i in range(n)]
    for f, rs in ((a, ra), (b, rb)):
        m.d.comb += [f.inp.valid.eq(iv), f.inp.payload.as_value().eq(ip)]
        m.d.comb += [o.ready.eq(r) for o, r in zip(f.out, rs)]
    assume_source(m, iv, a.inp.ready, ip, "inp")
    fire_in = iv & a.inp.ready
    for i, o in enumerate(a.out):
        pa = o.payload.as_value()
        assert_sink_rules(m, o.valid, ra[i], pa, f"out{i}")
        assert_no_comb_ready(m, Cat(*ra), Cat(*rb), (o.valid, pa),
                             (b.out[i].valid, b.out[i].payload.as_value()), f"out{i}")
        fire = o.valid & ra[i]
        d = Signal(name=f"d{i}")
        m.d.sync += d.eq(d + fire - fire_in)
        m.d.comb += [
            Assert(~(d & fire), f"fork out{i}: a word taken twice"),
            Assert(~fire_in | d | fire, f"fork out{i}: a word lost (accepted before output "
                                        f"{i} took it)"),
            Assert(~fire | (pa == ip), f"fork out{i}: not the word on the input"),
            Assert(~d | iv, f"fork out{i}: the in-flight word withdrawn"),
        ]
        _fair(m, ra[i], fair, f"ready{i}")
    wait = _bounded_wait(m, iv & ~a.inp.ready, 0, fair,
                         "fork: the input waits for ever under fair consumers", "inp")
    if cover:
        f0, f1 = (a.out[i].valid & ra[i] for i in (0, 1))
        m.d.comb += [Cover(f0 & ~f1 & ~fire_in), Cover(f1 & ~f0 & fire_in),
                     Cover(fire_in & (wait == fair - 1))]
    return m, [iv, ip, *ra, *rb]


def _broken_fork_class():
    from hw.fork import Fork

    class _BrokenFork(Fork):
        """A fork with a deliberate bug, to show that the proofs can fail.

        ``"dup"``: ``sent`` is never set (an output that was ready takes the word again
        while another one holds it back). ``"drop"``: ``inp.ready`` listens to output 0
        only (the others lose words). ``"lockstep"``: ``inp.ready`` is the AND of all
        ``ready`` whatever ``sent`` says (not eager): lossless, but under fair consumers
        that are never ready in the same cycle the input waits for ever.
        """
        def __new__(cls, n, shape, bug):
            return super().__new__(cls, n, shape, src_loc_at=1)

        def __init__(self, n, shape, bug):
            self.bug = bug
            super().__init__(n, shape)

        def elaborate(self, platform):
            m = Module()
            ready = 1
            for o, sent in zip(self.out, self.sent):
                m.d.comb += [o.valid.eq(self.inp.valid & ~sent),
                             o.payload.eq(self.inp.payload)]
                if self.bug == "lockstep":
                    ready = ready & o.ready
                else:
                    ready = ready & (sent | o.ready)
            if self.bug == "drop":
                ready = self.sent[0] | self.out[0].ready
            m.d.comb += self.inp.ready.eq(ready)
            with m.If(self.inp.valid & self.inp.ready):
                m.d.sync += [sent.eq(0) for sent in self.sent]
            with m.Elif(self.bug != "dup"):
                m.d.sync += [sent.eq(sent | (o.valid & o.ready))
                             for o, sent in zip(self.out, self.sent)]
            return m
    return _BrokenFork


def BrokenFork(n, shape, bug):
    """A :class:`hw.fork.Fork` with a deliberate bug (see ``_BrokenFork``)."""
    return _broken_fork_class()(n, shape, bug)


# ----------------------------------------------------------------------------- join

#: source-level mutations of hw/join.py (old text -> new text), each a deliberate bug
JOIN_BUGS = {
    # END_STEP forwarded without waiting for the replay inputs
    "early": [("tok_valid.eq(all_live & (is_sample | all_rep))", "tok_valid.eq(all_live)")],
    # an input is served again after its token (the got flag ignored)
    "retake": [("elig = [self.inp[i].valid & ~got[i] for i in range(n)]",
                "elig = [self.inp[i].valid for i in range(n)]")],
    # priority among all valid inputs, but an input that delivered its token is not
    # served: it blocks the inputs after it for ever (a deadlock)
    "block": [("elig = [self.inp[i].valid & ~got[i] for i in range(n)]",
               "elig = [self.inp[i].valid for i in range(n)]"),
              ("~tok_valid & has & (pick == i) &", "~tok_valid & has & (pick == i) & ~got[i] &"),
              ("spike = has & (pick_kind == SPIKE)",
               "spike = has & (pick_kind == SPIKE) & ~Array(got)[pick]"),
              ("take_tok = ~tok_valid & has & (pick_kind != SPIKE)",
               "take_tok = ~tok_valid & has & (pick_kind != SPIKE) & ~Array(got)[pick]")],
}


def _mutant_class(module, bugs, bug, name):
    """Class ``name`` of ``module`` with the source mutations ``bugs[bug]`` applied (each
    must match the module's source exactly once: a changed source fails here, loudly)."""
    import importlib
    from pathlib import Path
    mod = importlib.import_module(module)
    path = f"hw/{Path(mod.__file__).name}"
    src = Path(mod.__file__).read_text()
    for old, new in bugs[bug]:
        if src.count(old) != 1:
            raise AssertionError(f"{path} changed: {old!r} occurs {src.count(old)} "
                                 f"times; update the mutation {bug!r}")
        src = src.replace(old, new)
    ns = {"__name__": module, "__package__": "hw"}
    exec(compile(src, f"<{path}, bug {bug}>", "exec"), ns)
    return ns[name]


def broken_join_class(bug):
    """:class:`hw.join.Join` with the source mutations ``JOIN_BUGS[bug]`` applied (each
    must match hw/join.py exactly once: a changed join.py fails here, loudly)."""
    return _mutant_class("hw.join", JOIN_BUGS, bug, "Join")


def join_harness(n_live=2, n_replay=1, depth=4, fair=FAIR, bug=None, cover=False):
    """:class:`hw.join.Join` with ``n_live`` live and ``n_replay`` replay inputs (``bug``:
    a mutant of :data:`JOIN_BUGS`). ``cover=True`` adds ``Cover`` statements (for ``mode
    cover``): a replay spike, ``END_STEP`` and ``END_SAMPLE`` taken by the core, the
    latter right after an ``END_STEP`` step (a whole sample), a longest fair wait."""
    from hw.join import Join
    from sim.geometry import END_SAMPLE, END_STEP, SPIKE
    cls = Join if bug is None else broken_join_class(bug)
    n = n_live + n_replay
    m = Module()

    wbits = [2 + i % 2 for i in range(n)]      # different widths: sign extension

    def make():
        return cls(n_live, n_replay, depth=depth, wbits=wbits, lanes=1)
    a = m.submodules.a = make()
    b = m.submodules.b = make()
    width = len(a.inp[0].payload.as_value())
    iv = [Signal(name=f"iv{i}") for i in range(n)]
    ip = [Signal(width, name=f"ip{i}") for i in range(n)]
    ra, rb = Signal(), Signal()
    rom = [Signal(max(wbits), name=f"rom{i}") for i in range(n)]
    for j in (a, b):
        for i in range(n):
            m.d.comb += [j.inp[i].valid.eq(iv[i]), j.inp[i].payload.as_value().eq(ip[i]),
                         j.rom_data[i].eq(rom[i])]
        m.d.comb += j.out.ready.eq(ra if j is a else rb)
    inp, out = a.inp, a.out
    kind = [p.payload.kind for p in inp]
    fire = [iv[i] & inp[i].ready for i in range(n)]
    fire_out = out.valid & ra
    tok_out = fire_out & (out.payload.kind != SPIKE)

    # ghost state of the current step: which inputs delivered their token, its kind,
    # spikes seen, go issued
    tok = [Signal(name=f"tok{i}") for i in range(n)]
    spiked = [Signal(name=f"spiked{i}") for i in range(n)]
    sample = Signal()
    go_seen = Signal()
    with m.If(tok_out):
        m.d.sync += [t.eq(0) for t in tok] + [s.eq(0) for s in spiked]
        m.d.sync += [sample.eq(0), go_seen.eq(0)]
    with m.Else():
        for i in range(n):
            with m.If(fire[i] & (kind[i] != SPIKE)):
                m.d.sync += tok[i].eq(1)
            with m.If(fire[i] & (kind[i] == SPIKE)):
                m.d.sync += spiked[i].eq(1)
        with m.If(Cat(*(fire[i] & (kind[i] == END_SAMPLE) for i in range(n_live))).any()):
            m.d.sync += sample.eq(1)
        with m.If(a.go):
            m.d.sync += go_seen.eq(1)

    # the environment
    for i in range(n):
        assume_source(m, iv[i], inp[i].ready, ip[i], f"inp{i}")
        m.d.comb += Assume(~iv[i] | (kind[i] <= END_SAMPLE))
        m.d.comb += Assume(~iv[i] | (kind[i] == SPIKE) | (inp[i].payload.sa == 0))
    any_live_tok = Cat(*tok[:n_live]).any()
    for i in range(n_live):
        # one kind of live token per step; END_SAMPLE only as a step's first item
        is_s = kind[i] == END_SAMPLE
        m.d.comb += [
            Assume(~iv[i] | (kind[i] == SPIKE) | ~any_live_tok | (is_s == sample)),
            Assume(~iv[i] | ~is_s | ~Cat(*spiked[:n_live]).any()),
            Assume(~iv[i] | ~sample | tok[i] | is_s),
        ]
    for i in range(n_live, n):
        m.d.comb += Assume(~iv[i] | ((kind[i] != END_SAMPLE) & go_seen))

    # stream rules and no combinational path from out.ready
    pa = out.payload.as_value()
    assert_sink_rules(m, out.valid, ra, pa, "out")
    assert_no_comb_ready(m, ra, rb, (out.valid, pa), (b.out.valid, b.out.payload.as_value()),
                         "out")
    # spikes pass through unchanged, one for one
    for i in range(n):
        m.d.comb += [
            Assert(~(fire[i] & tok[i]), f"join: input {i} taken after its token"),
            Assert(~(fire[i] & (kind[i] == SPIKE)) |
                   (fire_out & (out.payload.kind == SPIKE) & (out.payload.sa == inp[i].payload.sa)),
                   f"join: a spike of input {i} lost or changed"),
        ]
    n_fire = sum(fire[i] & (kind[i] == SPIKE) for i in range(n))
    m.d.comb += Assert(~(fire_out & (out.payload.kind == SPIKE)) | (n_fire == 1),
                       "join: a spike no input delivered")
    # the weight word: one cycle after a spike of input i, wdata is rom_data[i]
    # sign-extended to the widest input
    for i in range(n):
        took = Signal(name=f"took{i}")
        m.d.sync += took.eq(fire[i] & (kind[i] == SPIKE))
        w = wbits[i]
        want = Cat(rom[i][:w], rom[i][w - 1].replicate(max(wbits) - w))
        m.d.comb += Assert(~took | (a.wdata == want),
                           f"join: wdata is not input {i}'s weight word, sign-extended")
    # tokens
    all_live = Cat(*tok[:n_live]).all()
    all_rep = Cat(*tok[n_live:]).all() if n_replay else 1
    m.d.comb += [
        Assert(~(out.valid & (out.payload.kind == END_STEP)) | (all_live & all_rep & ~sample),
               "join: END_STEP before every input's END_STEP"),
        Assert(~(out.valid & (out.payload.kind == END_SAMPLE)) | (all_live & sample),
               "join: END_SAMPLE before every live input's END_SAMPLE"),
        Assert(~(out.valid & (out.payload.kind == END_STEP)) | go_seen,
               "join: END_STEP of a step without go"),
        Assert(~(out.valid & (out.payload.kind == END_SAMPLE)) | ~go_seen,
               "join: go in an END_SAMPLE step"),
        Assert(~(a.go & go_seen), "join: go twice in a step"),
        Assert(a.sample_end == (fire_out & (out.payload.kind == END_SAMPLE)),
               "join: sample_end is not the core taking END_SAMPLE"),
    ]
    # bounded liveness under a fair core
    _fair(m, ra, fair, "core")
    offers = Cat(*(iv[i] & ~tok[i] for i in range(n))).any()
    progress = fire_out | Cat(*fire).any()
    wait = _bounded_wait(m, offers | out.valid, progress, fair,
                         "join: waits for ever while inputs offer (fair core)", "join")
    if cover:
        stepped = Signal()
        with m.If(fire_out & (out.payload.kind == END_STEP)):
            m.d.sync += stepped.eq(1)
        m.d.comb += [
            Cover(Cat(*(fire[i] & (kind[i] == SPIKE) for i in range(n_live, n))).any()),
            Cover(fire_out & (out.payload.kind == END_STEP)),
            Cover(stepped & fire_out & (out.payload.kind == END_SAMPLE)),
            Cover(fire_out & (wait == fair - 1)),
        ]
    return m, [*iv, *ip, *rom, ra, rb]


# ----------------------------------------------------------------------------- diamond

#: the tight bound of :func:`diamond_harness` with 2-deep FIFOs and FAIR = 3: PDR proves
#: 15 and refutes 14
DIAMOND_BOUND = 15


def diamond_harness(fifo_depth=2, fair=FAIR, bound=DIAMOND_BOUND, bug=None, cover=False):
    """The reconvergent graph ``Fork(2) -> two FIFOs -> Join(2, 0) -> core`` (a residual
    block with the synapse units abstracted as wires: an event's ``x`` is the update's
    ``sa``), the shape in which a fork and a join could wait on each other.

    The environment sends a well-formed stream into the fork (the stream rules, known
    kinds, tokens with coordinates 0, ``END_SAMPLE`` only as a step's first item); the
    core's ``ready`` is fair (high at least once in every ``fair`` cycles).
    Asserted: a word offered to the fork is accepted within ``bound`` cycles, and the
    join's ``out`` never waits ``bound`` cycles while anything is inside (no deadlock of
    the composition, whatever the FIFOs hold); the stream rules on the join's ``out``.
    ``bug``: the join mutant ``JOIN_BUGS[bug]``. ``cover=True``: covers of both FIFOs
    full at once and of the longest wait of the fork's input.
    """
    from amaranth.lib.fifo import SyncFIFOBuffered
    from hw.fork import Fork
    from hw.join import Join
    from sim.geometry import END_SAMPLE, SPIKE
    shape = (1, 1, 4)
    m = Module()
    fork = m.submodules.fork = Fork(2, shape)
    cls = Join if bug is None else broken_join_class(bug)
    join = m.submodules.join = cls(2, 0, depth=4, wbits=[2, 2], lanes=1)
    iv, ip = Signal(), Signal(len(fork.inp.payload.as_value()))
    ready = Signal()
    m.d.comb += [fork.inp.valid.eq(iv), fork.inp.payload.as_value().eq(ip),
                 join.out.ready.eq(ready)]
    fifos = []
    for i in range(2):
        f = SyncFIFOBuffered(width=len(ip), depth=fifo_depth)
        m.submodules[f"fifo{i}"] = f
        fifos.append(f)
        o = fork.out[i]
        m.d.comb += [f.w_en.eq(o.valid), f.w_data.eq(o.payload.as_value()),
                     o.ready.eq(f.w_rdy)]
        ev = Signal(fork.inp.payload.shape(), name=f"ev{i}")
        m.d.comb += [ev.eq(f.r_data),
                     join.inp[i].valid.eq(f.r_rdy),
                     join.inp[i].payload.kind.eq(ev.kind),
                     join.inp[i].payload.sa.eq(ev.x),
                     f.r_en.eq(join.inp[i].ready)]
    # the environment
    p = fork.inp.payload
    assume_source(m, iv, fork.inp.ready, ip, "inp")
    m.d.comb += Assume(~iv | (p.kind <= END_SAMPLE))
    m.d.comb += Assume(~iv | (p.kind == SPIKE) | (p.x == 0))
    after_tok = Signal(init=1)          # the last word accepted was a token (or none yet)
    with m.If(iv & fork.inp.ready):
        m.d.sync += after_tok.eq(p.kind != SPIKE)
    m.d.comb += Assume(~iv | (p.kind != END_SAMPLE) | after_tok)
    _fair(m, ready, fair, "core")
    # the join's out keeps the stream rules; nothing waits for ever
    assert_sink_rules(m, join.out.valid, ready, join.out.payload.as_value(), "out")
    wait = _bounded_wait(m, iv & ~fork.inp.ready, 0, bound,
                         "diamond: the fork's input waits for ever", "inp")
    inside = join.out.valid | fifos[0].r_rdy | fifos[1].r_rdy
    _bounded_wait(m, inside, join.out.valid & ready, bound,
                  "diamond: the core gets nothing while words are inside", "core")
    if cover:
        m.d.comb += [Cover(~fifos[0].w_rdy & ~fifos[1].w_rdy),
                     Cover(iv & (wait == bound - 2))]
    return m, [iv, ip, ready]


# ----------------------------------------------------------------------------- merge

#: source-level mutations of hw/merge.py (old text -> new text), each a deliberate bug
MERGE_BUGS = {
    # the lock is never set: a newly offered spike of a lower input replaces the one
    # waiting on out (its payload changes before the transfer)
    "nolock": [("self.locked.eq(any_spk & ~self.out.ready)", "self.locked.eq(0)")],
    # the token passes when input 0 offers it, whatever the other inputs offer
    "lonetoken": [("        for i in self.inp:\n            tok = tok &",
                   "        for i in self.inp[:1]:\n            tok = tok &")],
    # every input that offers a spike is taken, not only the picked one (spikes lost)
    "dup": [("any_spk & (pick == i)", "any_spk & spk[i]")],
    # tokens are never offered nor taken: safe, but the stream stops at the first token
    "notoken": [("self.out.valid.eq(any_spk | tok)", "self.out.valid.eq(any_spk)"),
                ("any_spk & (pick == i) | ~any_spk & tok", "any_spk & (pick == i)")],
}


def broken_merge_class(bug):
    """:class:`hw.merge.Merge` with the source mutations ``MERGE_BUGS[bug]`` applied."""
    return _mutant_class("hw.merge", MERGE_BUGS, bug, "Merge")


def merge_harness(n=2, shape=(2, 1, 2), fair=FAIR, bug=None, cover=False):
    """:class:`hw.merge.Merge` with ``n`` inputs (``bug``: a mutant of
    :data:`MERGE_BUGS`). ``cover=True`` adds ``Cover`` statements (for ``mode cover``): a
    locked spike of a higher input while a lower one offers a spike, a token taken right
    after a spike, and the longest fair wait."""
    from hw.merge import Merge
    from sim.geometry import END_SAMPLE, SPIKE
    cls = Merge if bug is None else broken_merge_class(bug)
    m = Module()
    a = m.submodules.a = cls(n, shape)
    b = m.submodules.b = cls(n, shape)
    width = len(a.inp[0].payload.as_value())
    iv = [Signal(name=f"iv{i}") for i in range(n)]
    ip = [Signal(width, name=f"ip{i}") for i in range(n)]
    ra, rb = Signal(), Signal()
    for mg, r in ((a, ra), (b, rb)):
        for i in range(n):
            m.d.comb += [mg.inp[i].valid.eq(iv[i]), mg.inp[i].payload.as_value().eq(ip[i])]
        m.d.comb += mg.out.ready.eq(r)
    inp, out = a.inp, a.out
    kind = [p.payload.kind for p in inp]
    fire = [iv[i] & inp[i].ready for i in range(n)]
    spk_in = [fire[i] & (kind[i] == SPIKE) for i in range(n)]
    tok_in = [fire[i] & (kind[i] != SPIKE) for i in range(n)]
    fire_out = out.valid & ra
    pa = out.payload.as_value()
    spk_out = fire_out & (out.payload.kind == SPIKE)
    tok_out = fire_out & (out.payload.kind != SPIKE)

    # ghost: d[i] = (tokens taken from input i) - (tokens on out), clamped to -1..1;
    # the kind of the token an input ahead delivered, the kind of the last token on out
    ahead = [Signal(name=f"ahead{i}") for i in range(n)]
    behind = [Signal(name=f"behind{i}") for i in range(n)]
    ahead_kind = Signal(2)
    out_kind = Signal(2)
    for i in range(n):
        with m.If(tok_in[i] & ~tok_out):
            m.d.sync += [ahead[i].eq(~behind[i]), behind[i].eq(0)]
            with m.If(~behind[i]):
                m.d.sync += ahead_kind.eq(kind[i])
        with m.If(tok_out & ~tok_in[i]):
            m.d.sync += [behind[i].eq(~ahead[i]), ahead[i].eq(0)]
    with m.If(tok_out):
        m.d.sync += out_kind.eq(out.payload.kind)

    # the environment: stream rules, known kinds, one token sequence on every input
    any_ahead = Cat(*ahead).any()
    offers_tok = [iv[i] & (kind[i] != SPIKE) for i in range(n)]
    for i in range(n):
        assume_source(m, iv[i], inp[i].ready, ip[i], f"inp{i}")
        m.d.comb += [
            Assume(~iv[i] | (kind[i] <= END_SAMPLE)),
            # an input ahead by one token offers no further token
            Assume(~offers_tok[i] | ~ahead[i]),
            # an input behind offers the token that left on out
            Assume(~offers_tok[i] | ~behind[i] | (kind[i] == out_kind)),
            # an input level with out offers the token an input ahead delivered
            Assume(~offers_tok[i] | behind[i] | ~any_ahead | (kind[i] == ahead_kind)),
        ]
        for j in range(i + 1, n):
            # inputs at the same position offer tokens of one kind
            m.d.comb += Assume(~(offers_tok[i] & offers_tok[j]) | (behind[i] != behind[j]) |
                               (kind[i] == kind[j]))

    # stream rules and no combinational path from out.ready
    assert_sink_rules(m, out.valid, ra, pa, "out")
    assert_no_comb_ready(m, ra, rb, (out.valid, pa), (b.out.valid, b.out.payload.as_value()),
                         "out")
    # spikes: one for one, unchanged, in the same cycle
    for i in range(n):
        m.d.comb += Assert(~spk_in[i] | (spk_out & (pa == ip[i])),
                           f"merge: a spike of input {i} lost or changed")
    n_spk = sum(spk_in)
    m.d.comb += [
        Assert(~spk_out | (n_spk != 0), "merge: a spike on out that no input delivered"),
        Assert(~spk_out | (n_spk < 2), "merge: spikes of two inputs taken in one cycle"),
    ]
    # tokens: all inputs at once, with the token on out, same kind
    every_tok = Cat(*(tok_in[i] & (kind[i] == out.payload.kind) for i in range(n))).all()
    m.d.comb += [
        Assert(~tok_out | every_tok,
               "merge: a token on out without every input's token of its kind"),
        Assert(~(Cat(*tok_in).any() & spk_out), "merge: a token taken while a spike leaves"),
    ]
    for i in range(n):
        m.d.comb += Assert(~tok_in[i] | tok_out,
                           f"merge: the token of input {i} taken without a token on out")
    # bounded liveness under a fair consumer
    _fair(m, ra, fair, "out")
    waiting = (Cat(*(iv[i] & (kind[i] == SPIKE) for i in range(n))).any() |
               Cat(*offers_tok).all())
    wait = _bounded_wait(m, waiting, fire_out, fair,
                         "merge: waits for ever while inputs offer (fair consumer)", "merge")
    if cover:
        spiked = Signal()
        m.d.sync += spiked.eq(spk_out)
        m.d.comb += [
            Cover(a.locked & (a.lock == n - 1) & iv[0] & (kind[0] == SPIKE)),
            Cover(spiked & tok_out),
            Cover(fire_out & (wait == fair - 1)),
        ]
    return m, [*iv, *ip, ra, rb]
