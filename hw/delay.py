"""Delay line: the spike history a synapse with delay ``d`` and ``D`` taps reads.

At step ``k`` a synapse with delay ``d >= 0`` and ``D >= 1`` taps adds, for every tap
``j``, the source's spikes of step ``k - d - j`` (nothing for steps before the start of
the sample) times tap ``j``'s weights (CONTRACT.md, version 2). The delay line stores the
source's events as they come and replays them, tagged with their tap, when the consumer
layer starts a step::

    source fork --inp--> [ write side | S slots of cap events | read side ] --out--> SynapseUnit
                                                  go, sample_end  <-- Join of the consumer

Steps are counted absolutely: ``w`` is the number of end-of-step tokens written since
reset (the source step being written), ``c`` the number of end-of-step tokens replayed
(the consumer's current, unfinished step). Neither is reset by an end-of-sample token:
every layer sees every step of every sample, so both count the same steps.

Sizing rule
    ``S = d + D`` slots (:func:`sim.geometry.delay_slots`); source step ``n`` lives in
    slot ``n mod S``. Each slot holds up to ``cap = N * m_src`` events
    (:func:`sim.geometry.delay_capacity`): ``N = C*H*W`` source neurons, each firing at
    most ``m_src`` times a step (its ``spike_limit``, or ``count_clip`` for the network
    input), a count sent as that many identical events. This is the worst case, so no
    event is ever dropped. Why ``S`` slots suffice: the write side writes step ``w`` only
    while ``w <= c`` (below), and the consumer's step ``c`` reads steps
    ``c-d-D+1 .. c-d``; the steps held at once are ``c-d-D+1 .. w``, at most
    ``w - (c-d-D+1) + 1 <= d + D = S``.

Memory
    One :class:`amaranth.lib.memory.Memory` of ``S * cap`` words of ``event_bits`` (the
    ``c``, ``y``, ``x`` fields of :class:`hw.stream.EventLayout`), one write port and one
    synchronous read port, so that synthesis puts it in block RAM where it is large (LUT
    RAM where small); address ``slot * cap + i`` holds event ``i`` of the step in
    ``slot``. Next to it ``S`` registers of ``bits_for(cap)`` bits hold the event count
    of each finished step. :func:`memory_bits` gives the RAM bits
    (``S * cap * event_bits``), :func:`model_memory` those of every delay line of a model.

Write side (``inp``: the source's events, spikes, ``END_STEP``, ``END_SAMPLE``)
    ``inp.ready = (w <= c)``, a register (``lag1 >= 1`` with ``lag1 = c - w + 1``), the
    same for every kind. A spike is written at ``slot(w) * cap + i`` (``i``: events of
    step ``w`` so far; one past ``cap``, impossible for a source that keeps its spike
    limit, is not stored); ``END_STEP`` stores ``i`` as the count of ``slot(w)``, starts
    the next slot and counts ``w``; ``END_SAMPLE`` is taken and dropped (the sample
    start is kept by the read side, below). So a slot is never overwritten while a step
    that the consumer still has to replay lives in it.

Read side (``out``: spikes with ``tap``, then ``END_STEP``; never ``END_SAMPLE``)
    ``go`` (one pulse per consumer step, from the join) starts the replay of step ``c``;
    it is taken only while the read side is not running (the join sends it only after
    the previous step's ``END_STEP`` has gone through). The replay first waits until the
    source has finished step ``c - d`` (``w > c - d``, i.e. ``lag1 <= d``; this keeps
    ``-1 <= c - w <= d``, so the counters are kept as this one bounded difference, and
    it implies that every tap's step ``c-d-j`` is finished). Then, for ``j = 0 .. D-1``
    while ``c-d-j >= start`` of the current sample (``k >= d + j`` with ``k = c - start``,
    the step within the sample, kept saturated at ``S - 1``), every event of slot
    ``c-d-j`` in the order it was written, with ``tap = j``; then ``END_STEP``, whose
    hand-over to the output register counts ``c``. ``sample_end`` (one pulse when the
    consumer takes its end-of-sample token, also only while not running) sets
    ``k = 0``: the next step is the first of a sample, and nothing before it is
    replayed. Stale slots need no clearing.

Handshake equations (all registered but the memory read)::

    inp.ready  = lag1 >= 1                      # w <= c
    src_done   = lag1 <= d                      # w >  c - d
    live       = k >= d + j                     # step c-d-j is in this sample (false for j = D)
    n          = count[rslot]                   # events of step c-d-j
    advance    = ~out.valid | out.ready         # the output register may be loaded
    load_spike = run & src_done & live & (n != 0) & advance
    skip_tap   = run & src_done & live & (n == 0)
    load_token = run & src_done & ~live & advance
    out.valid  <= load_spike | load_token | (out.valid & ~out.ready)

``out.payload`` is the read port's data register (read enable ``load_spike``) and the
``kind``/``tap`` registers loaded with it; coordinates read 0 for a token. So ``valid``
and ``payload`` never depend on ``out.ready`` and are held until the transfer.

Cycle behaviour
    The write side takes one word per cycle while ``w <= c``. ``go`` in cycle ``t``:
    the replay runs from cycle ``t + 1``; with the source done and ``out.ready`` high it
    loads one event per cycle (the first is offered in cycle ``t + 2``), spends one
    cycle on each tap that is live but empty (the step after a tap's last event goes on
    to the next tap in the same cycle as that event), and loads ``END_STEP`` in the
    cycle after the last live tap; so a step with ``e`` events in ``D_e`` empty live taps
    offers its ``END_STEP`` in cycle ``t + 2 + e + D_e`` (earliest). The write side sees
    ``c`` counted from the cycle after ``END_STEP`` is loaded. ``busy`` is high while the
    replay runs or the output register holds a word.

Deadlock freedom
    Every wait is on an earlier (layer, step): the write side waits (``w > c``) only for
    the consumer to finish step ``c < w``, which needs source steps up to ``c - d <= c``
    only, all already written (they precede step ``w`` in the source's stream); the read
    side waits only for the source to finish step ``c - d``, earlier than ``c`` (or, for
    ``d = 0``, the same step of an earlier layer: ``d = 0`` edges go forward in
    evaluation order only). See docs/architecture.md.
"""

from types import SimpleNamespace

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim.geometry import END_STEP, SPIKE, delay_capacity, delay_slots, shape3

from .stream import EventLayout, event_signature, tap_event_signature

__all__ = ["DelayLine", "CoordLayout", "memory_bits", "model_memory"]


class CoordLayout(data.StructLayout):
    """A stored event: the ``c``, ``y``, ``x`` fields of :class:`hw.stream.EventLayout`
    of ``shape`` (the kind is not stored: only spikes are)."""
    def __init__(self, shape):
        ev = EventLayout(shape)
        super().__init__({name: ev[name].shape for name in ("c", "y", "x")})


def memory_bits(shape, delay, taps, m_src):
    """RAM bits of the delay line of a synapse: ``S * cap * event_bits`` (the slot
    counts, ``S * bits_for(cap)`` register bits, are not included).

    Parameters
    ----------
    shape : tuple
        The source's shape.
    delay, taps : int
        ``d >= 0``, ``D >= 1``.
    m_src : int
        The largest count one source spike carries.
    """
    S, cap = delay_slots(delay, taps), delay_capacity(shape, m_src)
    return S * cap * CoordLayout(shape).size


def model_memory(model):
    """The delay lines of ``model`` (every synapse with ``delay > 0`` or ``taps > 1``).

    Returns
    -------
    list of dict
        Per delay line: ``layer``, ``synapse`` (index in the layer's list), ``source``,
        ``delay``, ``taps``, ``slots``, ``capacity`` (events per slot), ``event_bits``,
        ``bits`` (:func:`memory_bits`).
    """
    out = []
    for i, layer in enumerate(model.layers):
        for j, syn in enumerate(layer.synapses):
            if syn.delay == 0 and syn.taps == 1:
                continue
            src = model.source_of(i, syn)
            shape = model.source_shape(src)
            m_src = model.source_limit(src)
            out.append({"layer": layer.name, "synapse": j,
                        "source": src,
                        "delay": syn.delay, "taps": syn.taps,
                        "slots": delay_slots(syn.delay, syn.taps),
                        "capacity": delay_capacity(shape, m_src),
                        "event_bits": CoordLayout(shape).size,
                        "bits": memory_bits(shape, syn.delay, syn.taps, m_src)})
    return out


class DelayLine(wiring.Component):
    """Delay buffer of one synapse (see the module docstring).

    Parameters
    ----------
    shape : tuple
        The source's shape ``(C, H, W)`` or ``(N,)``.
    delay : int
        ``d >= 0``.
    taps : int
        ``D >= 1``.
    m_src : int
        The largest count one source spike carries (``spike_limit`` or ``count_clip``).

    Attributes
    ----------
    inp : In(event stream of ``shape``)
        The source's events (spikes, ``END_STEP``, ``END_SAMPLE``).
    out : Out(stream of :class:`hw.stream.TapEventLayout`)
        Replayed spikes with their tap, one ``END_STEP`` per ``go``.
    go : In(1)
        Start the replay of the consumer's next step (taken while not running).
    sample_end : In(1)
        The consumer took its end-of-sample token: the next step starts a sample.
    busy : Out(1)
        The replay runs or ``out`` holds a word.
    slots, capacity, depth : int
        ``S``, ``cap`` and the RAM depth ``S * cap``.
    regs : SimpleNamespace
        The registers that decide the handshakes (``lag1``, ``count`` (list of ``S``),
        ``wslot``, ``wcnt``, ``run``, ``head``, ``k``, ``j``, ``rslot``, ``idx``), for the
        invariants of the formal proofs (``tests/formal``); not an interface.
    """
    def __new__(cls, shape, delay, taps, m_src=1, *, src_loc_at=0, **kwargs):
        # checked before the object exists, so that a refused line is not left behind for
        # Amaranth to warn about as "created but never used" (as hw.network does)
        delay_slots(delay, taps), delay_capacity(shape, m_src)
        return super().__new__(cls, src_loc_at=1 + src_loc_at)

    def __init__(self, shape, delay, taps, m_src=1):
        self.shape = shape3(shape)
        self.slots = delay_slots(delay, taps)
        self.capacity = delay_capacity(shape, m_src)
        self.delay, self.taps, self.m_src = int(delay), int(taps), int(m_src)
        self.depth = self.slots * self.capacity
        self.coord_layout = CoordLayout(self.shape)
        S, cap, d, D = self.slots, self.capacity, self.delay, self.taps
        # made here rather than in elaborate() so that a formal harness can name them
        self.regs = SimpleNamespace(
            lag1=Signal(range(d + 2), init=1, name="lag1"),       # c - w + 1
            count=[Signal(range(cap + 1), name=f"count{s}") for s in range(S)],
            wslot=Signal(range(S), name="wslot"),
            wcnt=Signal(range(cap + 1), name="wcnt"),
            run=Signal(name="run"),
            head=Signal(range(S), init=(S - d) % S, name="head"),  # slot of step c - d
            k=Signal(range(S), name="k"),                # min(c - start, S - 1)
            j=Signal(range(D + 1), name="j"),            # tap being replayed
            rslot=Signal(range(S), name="rslot"),        # slot of step c - d - j
            idx=Signal(range(cap + 1), name="idx"))      # next event of the tap
        super().__init__({
            "inp": In(event_signature(self.shape)),
            "out": Out(tap_event_signature(self.shape, self.taps)),
            "go": In(1),
            "sample_end": In(1),
            "busy": Out(1),
        })

    @property
    def memory_bits(self):
        """RAM bits (:func:`memory_bits`)."""
        return self.depth * self.coord_layout.size

    def elaborate(self, platform):
        m = Module()
        S, cap, d, D = self.slots, self.capacity, self.delay, self.taps
        depth = self.depth

        mem = m.submodules.mem = Memory(shape=self.coord_layout, depth=depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port()

        def next_slot(slot, base):
            """Slot and base address of the next step (mod S)."""
            last = slot == S - 1
            return [slot.eq(Mux(last, 0, slot + 1)), base.eq(Mux(last, 0, base + cap))]

        r = self.regs
        lag1, wslot, wcnt = r.lag1, r.wslot, r.wcnt
        count = Array(r.count)

        # -- write side
        wbase = Signal(range(depth))            # wslot * cap
        w_take = Signal()
        w_step = Signal()
        ip = self.inp.payload
        m.d.comb += [self.inp.ready.eq(lag1 >= 1),
                     w_take.eq(self.inp.valid & self.inp.ready),
                     w_step.eq(w_take & (ip.kind == END_STEP))]
        with m.If(w_take & (ip.kind == SPIKE) & (wcnt != cap)):
            m.d.comb += [wp.en.eq(1), wp.addr.eq(wbase + wcnt),
                         wp.data.c.eq(ip.c), wp.data.y.eq(ip.y), wp.data.x.eq(ip.x)]
            m.d.sync += wcnt.eq(wcnt + 1)
        with m.If(w_step):
            m.d.sync += [count[wslot].eq(wcnt), wcnt.eq(0), *next_slot(wslot, wbase)]

        # -- read side
        run, head, k, j, rslot, idx = r.run, r.head, r.k, r.j, r.rslot, r.idx
        hbase = Signal(range(depth), init=((S - d) % S) * cap)     # head * cap
        rbase = Signal(range(depth))                                # rslot * cap
        ov = Signal()
        okind = Signal(self.out.payload.kind.shape())
        otap = Signal(self.out.payload.tap.shape())

        src_done = Signal()
        live = Signal()
        n = Signal(range(cap + 1))
        advance = Signal()
        load_spike = Signal()
        skip_tap = Signal()
        load_token = Signal()
        m.d.comb += [
            src_done.eq(lag1 <= d),
            live.eq(k >= d + j),
            n.eq(count[rslot]),
            advance.eq(~ov | self.out.ready),
            load_spike.eq(run & src_done & live & (n != 0) & advance),
            skip_tap.eq(run & src_done & live & (n == 0)),
            load_token.eq(run & src_done & ~live & advance),
        ]

        def next_tap():
            prev = rslot == 0
            return [j.eq(j + 1), idx.eq(0), rslot.eq(Mux(prev, S - 1, rslot - 1)),
                    rbase.eq(Mux(prev, (S - 1) * cap, rbase - cap))]

        m.d.comb += [rp.en.eq(load_spike), rp.addr.eq(rbase + idx)]
        with m.If(load_spike):
            m.d.sync += [okind.eq(SPIKE), otap.eq(j)]
            with m.If(idx == n - 1):
                m.d.sync += next_tap()
            with m.Else():
                m.d.sync += idx.eq(idx + 1)
        with m.Elif(skip_tap):
            m.d.sync += next_tap()
        with m.Elif(load_token):
            m.d.sync += [okind.eq(END_STEP), otap.eq(0), run.eq(0),
                         *next_slot(head, hbase), k.eq(Mux(k == S - 1, k, k + 1))]
        with m.If(load_spike | load_token):
            m.d.sync += ov.eq(1)
        with m.Elif(self.out.ready):
            m.d.sync += ov.eq(0)
        m.d.sync += lag1.eq(lag1 + load_token - w_step)

        with m.If(~run):
            with m.If(self.sample_end):
                m.d.sync += k.eq(0)
            with m.If(self.go):
                m.d.sync += [run.eq(1), j.eq(0), idx.eq(0), rslot.eq(head), rbase.eq(hbase)]

        op = self.out.payload
        spike = okind == SPIKE
        m.d.comb += [
            self.out.valid.eq(ov),
            op.kind.eq(okind),
            op.tap.eq(otap),
            op.c.eq(Mux(spike, rp.data.c, 0)),
            op.y.eq(Mux(spike, rp.data.y, 0)),
            op.x.eq(Mux(spike, rp.data.x, 0)),
            self.busy.eq(run | ov),
        ]
        return m
