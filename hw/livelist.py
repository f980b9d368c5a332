"""The live list of a sparse neuron core: which state words the next sweep reads.

A ring of ``D`` word addresses (an ordinary :class:`amaranth.lib.memory.Memory`, one
write and one synchronous read port) holds every *listed* word once; a word is listed
from the first update that reaches it in a step until a sweep finds it quiet
(:mod:`sim.liveness`). The core keeps a ``listed`` bit in each state word so that an
update appends its word only when the bit is clear; the list never holds more than ``D``
entries.

:class:`ListSequencer` is P0 of the sparse sweep, with the interface of
:class:`hw.neuron.SweepSequencer` (``start``, ``step`` -> ``valid``, ``addr``, ``g``,
``x``, ``y``, ``cbase``) plus ``push`` / ``push_addr`` (append a word), ``clear`` (empty
the list) and ``busy`` (the sweep has words left to offer).

Cycle behaviour
    Every entry in the list belongs to the next sweep (a sweep takes all entries present
    when its end-of-step token arrives; the words it keeps listed are appended behind
    them), so the sequencer reads ahead: outside a sweep, and in its first cycles, it
    reads the ring whenever an entry is there and the read stages have room. An entry
    passes the ring read (``R``), the read register (``Q1``), an address register
    (``Q2``) and the split of the address into ``g``, ``x``, ``y`` (``P0``, where it is
    offered); each stage moves when the next is empty or moves (``ready = ~valid |
    ready_next``, ``P0`` moving on ``step``), so up to three words wait ready in
    ``Q1 .. P0`` when the sweep starts. With the token accepted in cycle 0 (``start``):
    the appends of updates still in flight land in cycles 0 and 1; in cycle 2 the
    number of entries not yet read becomes ``left``, and from cycle 3 to the end of the
    sweep (``end``) the ring is read only while ``left != 0``. An entry appended in
    cycle ``t`` can be read from ``t + 1``. When the list was read ahead the first word
    is taken by P1 in cycle 1 and the words follow one per cycle as in the dense sweep
    (``1 + i + extra(i)`` for the ``i``-th word of the list); a word appended just before
    the token, or a ring that runs dry, leaves bubbles.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

__all__ = ["ListSequencer", "div_const", "DISTRIBUTED_MAX_BITS", "SUB_DEPTH"]

#: a ring of at most this many bits asks for LUT RAM (``ram_style``): a small list would
#: otherwise take a whole block RAM of its own (the camera net's 1024-word conv2 list)
DISTRIBUTED_MAX_BITS = 16384
#: a LUT-RAM ring deeper than this is split into rings of this many words, all read at
#: once (each read registered) and one of them picked in the next stage: the read of a
#: 1024-word LUT RAM is a 64:1 multiplexer tree, which was the slowest path of an ECP5
#: build (same cycles as one ring)
SUB_DEPTH = 256


def div_const(n_max, d):
    """``(mul, shift)`` with ``(a * mul) >> shift == a // d`` for every ``0 <= a <= n_max``
    (``mul = 1`` and ``shift = log2 d`` for a power of two), checked exhaustively."""
    if d & (d - 1) == 0:
        return 1, d.bit_length() - 1
    n = bits_for(n_max)
    for shift in range(n, 2 * n + d.bit_length() + 2):
        mul = -(-(1 << shift) // d)
        if all((a * mul) >> shift == a // d for a in range(n_max + 1)):
            return mul, shift
    raise AssertionError(f"no reciprocal for {d}")          # pragma: no cover


class ListSequencer(wiring.Component):
    """P0 of the sparse sweep: the listed state words, in list order (see the module
    docstring for the exact cycles).

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
        The end-of-step token is accepted (cycle 0).
    step : In(1)
        The sweep pipeline advances: P1 takes the word offered.
    push : In(1), push_addr : In
        Append ``push_addr`` to the list (at most once per word: the caller keeps the
        ``listed`` bits).
    clear : In(1)
        Empty the list (the end-of-sample clear); wins over ``push``.
    end : In(1)
        The sweep is over (the core leaves its sweep phase): reading ahead resumes.
    valid : Out(1)
        A word is offered; ``addr``, ``g``, ``x``, ``y``, ``cbase`` as in
        :class:`hw.neuron.SweepSequencer`.
    busy : Out(1)
        (During a sweep) words of this sweep are still to be read or offered (``valid``
        included).
    count : Out
        Entries in the list.
    """
    def __init__(self, ho, wo, groups, lanes):
        self.ho, self.wo, self.groups, self.lanes = ho, wo, groups, lanes
        self.depth = depth = ho * wo * groups
        super().__init__({
            "start": In(1),
            "step": In(1),
            "push": In(1),
            "push_addr": In(range(max(2, depth))),
            "clear": In(1),
            "end": In(1),
            "valid": Out(1),
            "addr": Out(range(max(2, depth))),
            "g": Out(range(max(2, groups))),
            "x": Out(range(max(2, wo))),
            "y": Out(range(max(2, ho))),
            "cbase": Out(range(max(2, groups * lanes))),
            "busy": Out(1),
            "count": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        D, G, Wo = self.depth, self.groups, self.wo
        abits = bits_for(max(1, D - 1))
        distributed = D * abits <= DISTRIBUTED_MAX_BITS
        attrs = {"ram_style": "distributed"} if distributed else None
        sub = SUB_DEPTH if distributed and D > SUB_DEPTH else D
        # The ring write is registered (``w_*``): the append decision comes late in the
        # cycle (the sweep's quiet flag behind the output handshake), and a LUT-RAM
        # ring's write enable fans out through an address decode; that path limited the
        # ECP5 clock. The read port is transparent for the write, so an entry appended in
        # cycle ``t`` (written at the end of ``t + 1``) is still readable from ``t + 1``:
        # the cycle behaviour is that of an unregistered write.
        rings = []
        for i in range(0, D, sub):
            ring = Memory(shape=unsigned(abits), depth=min(sub, D - i), init=[], attrs=attrs)
            m.submodules[f"ring{i // sub}" if sub < D else "ring"] = ring
            wp_i = ring.write_port()
            rings.append((wp_i, ring.read_port(transparent_for=(wp_i,))))

        wp = Signal(range(max(2, D)))
        rp = Signal(range(max(2, D)))
        left = Signal(range(D + 1))
        counting = Signal()
        w1 = Signal()
        w2 = Signal()
        q1_valid = Signal()
        q2_valid = Signal()
        q2_addr = Signal(abits)
        q2_pos = Signal(range(max(2, D // G)))
        q2_y = Signal(range(max(2, self.ho)))

        p0_ready = ~self.valid | self.step
        q2_ready = ~q2_valid | p0_ready
        q1_ready = ~q1_valid | q2_ready
        pop = Signal()
        m.d.comb += pop.eq(Mux(counting, left != 0, self.count != 0) & q1_ready)

        # appends
        push = self.push & ~self.clear
        w_en = Signal()
        w_addr = Signal.like(wp)
        w_data = Signal(abits)
        m.d.sync += [w_en.eq(push), w_addr.eq(wp), w_data.eq(self.push_addr)]

        # R: the ring read, when Q1 can take its data (a split ring: every sub-ring reads,
        # and the one holding the entry is picked by the registered high address bits)
        rd_data = Signal(abits)
        if len(rings) == 1:
            (wp_port, rd), = rings
            m.d.comb += [wp_port.addr.eq(w_addr), wp_port.data.eq(w_data),
                         wp_port.en.eq(w_en), rd.addr.eq(rp), rd.en.eq(q1_ready),
                         rd_data.eq(rd.data)]
        else:
            lo = sub.bit_length() - 1           # sub is a power of two
            picked = Signal(range(len(rings)))
            with m.If(q1_ready):
                m.d.sync += picked.eq(rp[lo:])
            for i, (wp_port, rd) in enumerate(rings):
                m.d.comb += [wp_port.addr.eq(w_addr[:lo]), wp_port.data.eq(w_data),
                             wp_port.en.eq(w_en & (w_addr[lo:] == i)),
                             rd.addr.eq(rp[:lo]), rd.en.eq(q1_ready)]
                with m.If(picked == i):
                    m.d.comb += rd_data.eq(rd.data)
        # pipeline registers
        pos_mul, pos_shift = div_const(D - 1, G)
        y_mul, y_shift = div_const(D - 1, Wo * G)
        with m.If(q1_ready):
            m.d.sync += q1_valid.eq(pop)
        with m.If(q2_ready):
            m.d.sync += [q2_valid.eq(q1_valid), q2_addr.eq(rd_data),
                         q2_pos.eq((rd_data * pos_mul) >> pos_shift),
                         q2_y.eq((rd_data * y_mul) >> y_shift)]
        with m.If(p0_ready):
            g = q2_addr - q2_pos * G
            m.d.sync += [self.valid.eq(q2_valid), self.addr.eq(q2_addr), self.g.eq(g),
                         self.x.eq(q2_pos - q2_y * Wo), self.y.eq(q2_y),
                         self.cbase.eq(g * self.lanes)]

        m.d.sync += [w1.eq(self.start), w2.eq(w1)]
        m.d.comb += self.busy.eq(w1 | w2 | (counting & (left != 0)) | q1_valid | q2_valid
                                 | self.valid)

        # ``push`` and ``pop`` come late in the cycle (behind the output handshake, through
        # the sweep's advance): they only pick between values computed from registers
        # (``count + 1``, ``count - 1``), never enter an adder's carry chain (an ECP5
        # critical path ran through ``count + push - pop``)
        count_up = Signal.like(self.count)
        count_down = Signal.like(self.count)
        m.d.comb += [count_up.eq(self.count + 1), count_down.eq(self.count - 1)]
        with m.If(self.clear):
            m.d.sync += [wp.eq(0), rp.eq(0), self.count.eq(0), left.eq(0), counting.eq(0),
                         q1_valid.eq(0), q2_valid.eq(0), self.valid.eq(0)]
        with m.Else():
            with m.If(push):
                m.d.sync += wp.eq(Mux(wp == D - 1, 0, wp + 1))
            with m.If(pop):
                m.d.sync += rp.eq(Mux(rp == D - 1, 0, rp + 1))
            with m.If(push & ~pop):
                m.d.sync += self.count.eq(count_up)
            with m.Elif(pop & ~push):
                m.d.sync += self.count.eq(count_down)
            with m.If(self.end):
                m.d.sync += counting.eq(0)
            with m.Elif(w2):
                m.d.sync += [counting.eq(1), left.eq(Mux(pop, count_down, self.count))]
            with m.Elif(counting & pop):
                m.d.sync += left.eq(left - 1)
        return m
