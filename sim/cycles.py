"""Cycle model of the generated accelerator (``hw.network.Network``).

Given a model (a chain or any version-2 graph, built as ``hw.network`` builds it),
the hardware parameters (lanes per layer, FIFO depth) and the exact
sequence of input words, :func:`predict` returns the cycle at which every layer finishes
every step (the cycle of its end-of-step token transfer, what the RTL's
``step_cycle[i]`` status register records), the cycle each sample's result is ready
(``done``), and so the latency of a sample at a given clock.

The model is a cycle-level simulation of the *timing* of the datapath only: every
register that decides a handshake is mirrored, every arithmetic value is left out. The
spikes that drive the sweeps and the traffic between layers come from
:func:`sim.reference.run` (the one copy of the integer rules), so the model needs no
arithmetic of its own. One class per block of the RTL, each with the registers of that
block and a ``clock`` method (one rising edge, from the values of the cycle before it):

* :class:`FifoModel`: the FIFO in front of every same-step synapse unit (and of a
  token feed) (``amaranth.lib.fifo.SyncFIFOBuffered``, write-to-read latency 2);
* :class:`ForkModel`: the fork of every source over its consumers (``hw.fork``: eager
  broadcast, a ``sent`` flag per output);
* :class:`JoinModel`: the join of every layer (``hw.join``: fixed-priority merge of its
  units' updates, tokens merged per step, ``go`` and ``sample_end``; a wire for one
  same-step synapse);
* :class:`EngineModel`: the synapse engine of a layer (``hw.conv`` / ``hw.linear`` /
  ``hw.pool``): stage A (lookups), stage B (job register), each a pipeline register with
  ``ready = ~valid | ready_downstream``; stage B drops a spike with no output position;
  the ``hw.synapse.SynapseIterator`` spends ``ny*nx*G`` cycles on a conv/pool spike, ``G``
  on a linear spike, one on a token, and takes the next job in the cycle of its last
  update;
* :class:`CoreModel`: the neuron core (``hw.neuron``) in its :class:`Phase`: accumulate
  (always ready), the 6-stage sweep over the ``D`` state words (dense) or over the
  listed words (sparse: the live list of ``hw.livelist``, with its read pipeline in
  front of the sweep) that stalls while a word with several spikes emits them one per
  cycle or the output is not ready (a neuron with spike count ``s`` is ``s`` events),
  the clear of an end-of-sample token (``D`` cycles), and the token hand-over. Which
  words a sparse core lists comes from the updates it takes (their state addresses,
  :func:`layer_words`) and from the reference's states and spikes
  (:func:`sim.liveness.quiet_words`), not from the RTL;
* :class:`BankedLayerModel`: a layer with ``B > 1`` banks (``hw.layer``, "Banks"): a
  :class:`ForkModel` over ``B`` engines, a core per bank, and the :class:`MergeModel`
  of their spike streams (``hw.merge``);
* :class:`DelayLineModel`: the delay line of a synapse with a delay or taps
  (``hw.delay``): its write side's blocking rule, the replay of the taps on ``go`` and
  the end-of-step token;
* :class:`ReadoutModel`: the arg-max of ``hw.network`` (an end-of-sample token waits
  while a previous arg-max, ``n_classes`` cycles, is running);
* :class:`SourceModel`: the testbench driver or host link in front of the network
  input; the input's range check accepts a bad word and drops it without waiting for
  the FIFO.

The source is described by the input word list, an optional gap before each word (valid
held low for that many cycles after the previous transfer) and an optional step
synchronisation (after every end-of-step word: wait for ``idle``, then ``sync_cycles``
more cycles; what a bench that reads the states back between steps does).

Cycle numbering: cycle ``t`` is the value of the RTL's free-running ``cycle`` counter;
``start`` is the cycle in which the first word is offered.

Only numpy is needed; nothing here imports ``hw``. ``tests/hw/test_network_cycles.py``
compares every prediction with ``amaranth.sim`` of the RTL, cycle for cycle.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

from .geometry import (END_SAMPLE, END_STEP, SPIKE, bank_layer, bank_width, banks_of,
                       delay_capacity, delay_slots, lane_groups, lanes_of, shape3)
from .liveness import SWEEPS, quiet_words, sparse_ok
from .model import INPUT
from .reference import run as reference_run

__all__ = ["SPIKE", "END_STEP", "END_SAMPLE", "HwParams", "CycleReport", "lanes_of",
           "input_words", "layer_work", "layer_words", "synapse_work", "synapse_words",
           "predict", "InputWord", "Event",
           "TapEvent", "Job", "Phase", "FifoModel", "ForkModel", "JoinModel", "JoinWires",
           "EngineModel", "CoreModel", "DelayLineModel", "ReadoutModel", "SourceModel",
           "fired_words"]


class InputWord(NamedTuple):
    """A word on the network input: token kind, polarity (channel), row, column."""
    kind: int
    p: int
    y: int
    x: int


class Event(NamedTuple):
    """A word on a layer's event stream (the payload a FIFO holds)."""
    kind: int
    c: int
    y: int
    x: int


class TapEvent(NamedTuple):
    """A word on a delay line's replay stream: an :class:`Event` and its tap."""
    kind: int
    c: int
    y: int
    x: int
    tap: int


class Job(NamedTuple):
    """What stage A of a synapse engine makes of an event.

    ``work``: cycles the iterator spends on a spike (:func:`layer_work`; 0: the spike
    reaches no output and stage B drops it); 0 for a token (which costs one cycle).
    ``words``: the state address of each of its updates, in order (for a sparse core;
    ``None`` when not needed).
    """
    kind: int
    work: int
    words: Optional[tuple] = None


class Phase(enum.IntEnum):
    """Phase of a neuron core (the ``phase`` register of ``hw.neuron.NeuronCore``)."""
    ACCUM = 0   #: take updates (``upd.ready``), one per cycle
    SWEEP = 1   #: the end-of-step sweep over the ``D`` state words
    CLEAR = 2   #: the end-of-sample clear, one word per cycle
    TOKEN = 3   #: offer the token on ``out``


@dataclass
class HwParams:
    """Hardware parameters that decide the timing.

    Attributes
    ----------
    lanes : int, list or dict, optional
        As ``hw.network.Network(lanes=...)`` (:func:`sim.geometry.lanes_of`).
    fifo_depth : int
        Depth of every FIFO.
    sweep : str
        As ``hw.network.Network(sweep=...)``: ``"sparse"`` (default) or ``"dense"``.
    banks : int, list or dict, optional
        As ``hw.network.Network(banks=...)`` (:func:`sim.geometry.banks_of`).
    """
    lanes: object = None
    fifo_depth: int = 16
    sweep: str = "sparse"
    banks: object = None


@dataclass
class CycleReport:
    """What :func:`predict` returns.

    Attributes
    ----------
    step_done : list of list of int
        ``step_done[i]``: cycle of every end-of-step token of layer ``i`` leaving the
        layer, in order (``T`` per sample).
    sweep_start : list of list of int
        ``sweep_start[i]``: cycle in which layer ``i``'s core accepted each end-of-step
        token (the end of its accumulate phase for that step).
    sample_done : list of int
        Cycle of the ``done`` strobe of every sample.
    accepted : list of int
        Cycle in which every input word was accepted.
    idle_after_step : list of int
        In step-synchronised runs: the first cycle with ``idle`` after each end-of-step word.
    start, end : int
        First offer cycle; cycle of the last ``done``.
    sample_first : list of int
        Cycle in which the first word of every sample is offered.
    blocked : list of int
        Per FIFO: cycles in which its writer offered a word and the FIFO was full (for
        the input FIFO: an in-range word of the source).
    swept : list of int
        Per layer: state words its sweeps read, all samples together (``T*D`` per sample
        for a dense core; the listed words for a sparse one).
    sparse : list of bool
        Per layer: its core sweeps sparsely.
    """
    step_done: list
    sweep_start: list
    sample_done: list
    accepted: list
    idle_after_step: list = field(default_factory=list)
    start: int = 0
    end: int = 0
    sample_first: list = field(default_factory=list)
    blocked: list = field(default_factory=list)
    swept: list = field(default_factory=list)
    sparse: list = field(default_factory=list)

    def step_cycles(self, i):
        """Cycles layer ``i`` spends on each step: the distance between consecutive
        end-of-step tokens (the first step is counted from ``start``)."""
        d = self.step_done[i]
        return [d[0] - self.start] + [b - a for a, b in zip(d, d[1:])] if d else []

    def latency_cycles(self, sample=0):
        """Cycles from the cycle the first word of ``sample`` is offered to its ``done``
        strobe."""
        return self.sample_done[sample] - self.sample_first[sample]

    def latency_s(self, clock_hz, sample=0):
        """Latency of ``sample`` in seconds at ``clock_hz``."""
        return self.latency_cycles(sample) / float(clock_hz)


def input_words(model, binned, *, samples=1, rng=None, bad=None):
    """The input word sequence of ``samples`` copies of one binned sample.

    Per step: every source in ascending flat order, a count ``c`` sent as ``c`` words
    back to back (the order of sources shuffled with ``rng`` when given), then an
    end-of-step word; an end-of-sample word after the last step.

    ``bad``: optional ``(rng, n)``: ``n`` out-of-range spikes inserted at random places
    in every step (the hardware drops them).

    Returns a list of :class:`InputWord` ``(kind, p, y, x)``.
    """
    P, H, W = model.input.shape
    words = []
    for _ in range(samples):
        for k in range(binned.timesteps):
            src, count = binned.step(k)
            groups = [[InputWord(SPIKE, int(s) // (H * W), (int(s) // W) % H, int(s) % W)]
                      * int(n) for s, n in zip(src, count)]
            if rng is not None:
                order = rng.permutation(len(groups))
                groups = [groups[j] for j in order]
            step = [w for g in groups for w in g]
            if bad is not None:
                brng, n = bad
                for _ in range(n):
                    which = int(brng.integers(3))
                    p, y, x = int(brng.integers(P)), int(brng.integers(H)), int(brng.integers(W))
                    if which == 0:
                        p = P + int(brng.integers(3))
                    elif which == 1:
                        y = H + int(brng.integers(1000))
                    else:
                        x = W + int(brng.integers(1000))
                    step.insert(int(brng.integers(len(step) + 1)), InputWord(SPIKE, p, y, x))
            words += step
            words.append(InputWord(END_STEP, 0, 0, 0))
        words.append(InputWord(END_SAMPLE, 0, 0, 0))
    return words


def synapse_work(syn, src_shape, out_shape, lanes):
    """Iterator cycles of an input spike at every ``(c, y, x)`` of ``src_shape`` (the
    synapse's source shape) for synapse ``syn`` into a layer of ``out_shape``: the
    synapse kind's ``event_updates`` hook in :mod:`sim.registry`, ``positions*G``
    (``G = ceil(C_out/L)``; ``ny*nx`` positions for a conv/pool, 1 for a linear
    synapse; one update for an identity synapse), 0 for a spike that reaches no output
    (dropped before the iterator)."""
    in3, out3 = shape3(src_shape), shape3(out_shape)
    return syn.kind.event_updates(syn, in3, out3, lane_groups(out3[0], lanes))


def layer_work(layer, in_shape, lanes):
    """Iterator cycles of an input spike at every ``(c, y, x)`` of ``in_shape``.

    ``positions*G`` (``G = ceil(C_out/L)``; the positions reached come from the synapse
    kind's ``event_positions`` hook in :mod:`sim.registry`: ``ny*nx`` for a conv/pool,
    1 for a linear layer), 0 for a spike that reaches no output (dropped before the
    iterator).
    """
    return synapse_work(layer.synapse, in_shape, layer.out_shape, lanes)


def layer_words(layer, in_shape, lanes):
    """:func:`synapse_words` of the only synapse of ``layer``."""
    return synapse_words(layer.synapse, in_shape, layer.out_shape, lanes)


def synapse_words(syn, in_shape, out_shape, lanes):
    """A function ``(c, y, x) -> tuple`` of the state addresses of the updates of an input
    spike at ``(c, y, x)`` of ``in_shape`` (the synapse's source shape) into a layer of
    ``out_shape``, in the order the synapse iterator issues them: output rows, then
    columns, then the ``G`` lane groups (``sa = (oy*Wo + ox)*G + g``); the window comes
    from the synapse kind's ``event_window`` hook. A kind whose event makes one update
    (:meth:`sim.registry.Kind.event_updates` of 1: identity) updates the word of the
    event's own channel, ``g = c // L``."""
    in3, out3 = shape3(in_shape), shape3(out_shape)
    G = lane_groups(out3[0], lanes)
    Wo = out3[2]
    ylo, yhi, xlo, xhi = (a.tolist() for a in syn.kind.event_window(syn, in3, out3))
    cache = {}
    one = G > 1 and bool((syn.kind.event_updates(syn, in3, out3, G) == 1).all())

    def words(c, y, x):
        key = (y, x, c // lanes) if one else (y, x)
        if key not in cache:
            groups = [c // lanes] if one else range(G)
            cache[key] = tuple((oy * Wo + ox) * G + g
                               for oy in range(ylo[y], yhi[y] + 1)
                               for ox in range(xlo[x], xhi[x] + 1) for g in groups)
        return cache[key]
    return words


def bank_work(syn, src_shape, out_shape, lanes, bank, banks):
    """:func:`synapse_work` of bank ``bank`` of ``banks`` (``hw.layer``, "Banks"): the
    updates of the window's columns ``ox = bank (mod banks)`` only."""
    in3, out3 = shape3(src_shape), shape3(out_shape)
    G = lane_groups(out3[0], lanes)
    ylo, yhi, xlo, xhi = syn.kind.event_window(syn, in3, out3)
    ny = np.maximum(yhi - ylo + 1, 0)
    nx = np.where(xhi >= xlo, (xhi - bank) // banks - (xlo - 1 - bank) // banks, 0)
    per = (ny[:, None] * nx[None, :]) * G
    return np.broadcast_to(per, in3).astype(np.int64)


def bank_words(syn, in_shape, out_shape, lanes, bank, banks):
    """:func:`synapse_words` of bank ``bank`` of ``banks``: the state addresses, in that
    bank's state RAM (local column ``ox // banks``), of the updates its engine issues."""
    words = synapse_words(syn, in_shape, out_shape, lanes)
    out3 = shape3(out_shape)
    G = lane_groups(out3[0], lanes)
    Wo = out3[2]
    Wb = bank_width(Wo, bank, banks)
    cache = {}

    def local(c, y, x):
        key = (y, x)
        if key not in cache:
            got = []
            for a in words(c, y, x):
                pos, g = divmod(a, G)
                oy, ox = divmod(pos, Wo)
                if ox % banks == bank:
                    got.append((oy * Wb + ox // banks) * G + g)
            cache[key] = tuple(got)
        return cache[key]
    return local


class FifoModel:
    """Timing of ``amaranth.lib.fifo.SyncFIFOBuffered(width, depth)`` (Amaranth 0.5).

    For ``depth >= 2`` the library keeps an inner queue of ``depth - 1`` words (a memory
    with a synchronous read port) in front of an output register:

    * ``w_rdy``: the inner queue is not full (the output register does not count), so
      a word written into an empty FIFO is in the inner queue after the edge;
    * at an edge where the inner queue is not empty and the output register is empty or
      read (``r_en``), its head moves into the output register (``r_rdy`` = the output
      register holds a word); otherwise a read empties the output register. A word
      written in cycle ``t`` is therefore offered (``r_rdy``) from cycle ``t + 2``: the
      write-to-read latency of 2;
    * ``level`` = inner queue + output register (``r_level == w_level == level``, what
      the network's ``idle`` reads).

    ``depth == 1`` is the library's single register: ``w_rdy`` when empty, ``r_rdy`` when
    full, so it takes a word only every other cycle.
    """

    def __init__(self, depth):
        if depth < 1:
            raise ValueError(f"fifo_depth: {depth!r} must be at least 1")
        self.depth = depth
        self.inner = deque()
        self.r_rdy = False
        self.r_data = None

    @property
    def w_rdy(self):
        if self.depth == 1:
            return not self.r_rdy
        return len(self.inner) != self.depth - 1

    @property
    def level(self):
        return len(self.inner) + int(self.r_rdy)

    def clock(self, w_en, w_data, r_en):
        """One edge: ``w_data`` is written when ``w_en & w_rdy``; ``r_en`` is the
        reader's ready (a word is read when ``r_en & r_rdy``)."""
        if self.depth == 1:
            if w_en and not self.r_rdy:
                self.r_data, self.r_rdy = w_data, True
            elif r_en and self.r_rdy:
                self.r_rdy = False
            return
        write = w_en and self.w_rdy
        if self.inner and (not self.r_rdy or r_en):
            self.r_data, self.r_rdy = self.inner.popleft(), True
        elif r_en:
            self.r_rdy = False
        if write:
            self.inner.append(w_data)


class ForkModel:
    """Timing of ``hw.fork.Fork(n, shape)``: an eager broadcast with a ``sent`` flag per
    output (``n == 1``: a wire, no flag is ever set).

    ``out_valid(i) = inp_valid and not sent[i]``; ``inp_ready = all(sent[i] or
    out_ready[i])``; at the edge a transfer on ``inp`` clears every flag, otherwise each
    output that took the word sets its flag.
    """

    def __init__(self, n):
        if n < 1:
            raise ValueError(f"fork: n = {n!r} must be at least 1")
        self.n = n
        self.sent = [False] * n

    @property
    def busy(self):
        """Some output has taken the word still on the input."""
        return any(self.sent)

    def out_valid(self, inp_valid):
        """``out[i].valid`` of every output, given ``inp.valid``."""
        return [bool(inp_valid) and not s for s in self.sent]

    def inp_ready(self, out_ready):
        """``inp.ready``, given every ``out[i].ready``."""
        return all(s or r for s, r in zip(self.sent, out_ready))

    def clock(self, inp_valid, out_ready):
        """One edge. Returns the outputs that took the word in this cycle."""
        took = [v and r for v, r in zip(self.out_valid(inp_valid), out_ready)]
        if inp_valid and self.inp_ready(out_ready):
            self.sent = [False] * self.n
        elif self.n > 1:
            self.sent = [s or t for s, t in zip(self.sent, took)]
        return took


class JoinWires(NamedTuple):
    """The combinational values of a join in one cycle."""
    pick: Optional[int]     #: the input picked (None: none)
    out_kind: Optional[int]  #: kind offered on ``out`` (None: ``out.valid`` low)
    inp_ready: list         #: ``inp[i].ready`` of every input
    go: bool                #: the ``go`` pulse
    sample_end: bool        #: the ``sample_end`` pulse


class JoinModel:
    """Timing of ``hw.join.Join(n_live, n_replay)``: fixed-priority merge of the update
    streams of a layer's synapse units, tokens absorbed per input and merged into one
    (see the equations in ``hw/join.py``). With one live input and no replay input it
    is a wire.

    Registers: ``got`` (per input), ``is_sample``, ``go_done``, ``lock`` (the input
    held while a spike offered on ``out`` is not taken; None: none).
    """

    def __init__(self, n_live, n_replay=0):
        if n_live < 1 or n_replay < 0:
            raise ValueError(f"join: {n_live} live and {n_replay} replay inputs "
                             f"(need at least one live input)")
        self.n_live, self.n = n_live, n_live + n_replay
        self.wire = n_live == 1 and n_replay == 0
        self.got = [False] * self.n
        self.is_sample = False
        self.go_done = False
        self.lock = None

    @property
    def busy(self):
        return any(self.got)

    def settle(self, offers, out_ready):
        """The handshakes of this cycle. ``offers[i]``: the kind input ``i`` offers
        (None: ``valid`` low); ``out_ready``: the core's ``upd.ready``."""
        if self.wire:
            k = offers[0]
            return JoinWires(0 if k is not None else None, k, [out_ready],
                             False, k == END_SAMPLE and out_ready)
        nl = self.n_live
        pick = self.lock
        if pick is None:
            pick = next((i for i, k in enumerate(offers)
                         if k is not None and not self.got[i]), None)
        tok = all(self.got[:nl]) and (self.is_sample or all(self.got[nl:]))
        kind = offers[pick] if pick is not None else None
        if tok:
            out_kind = END_SAMPLE if self.is_sample else END_STEP
        else:
            out_kind = SPIKE if kind == SPIKE else None
        ready = [False] * self.n
        if not tok and pick is not None and (kind != SPIKE or out_ready):
            ready[pick] = True
        go = not self.go_done and any(k is not None and not g and k != END_SAMPLE
                                      for k, g in zip(offers[:nl], self.got[:nl]))
        return JoinWires(pick, out_kind, ready, go, tok and self.is_sample and out_ready)

    def clock(self, wires, offers, out_ready):
        """One edge, with the :meth:`settle` values of the cycle."""
        if self.wire:
            return
        tok = wires.out_kind in (END_STEP, END_SAMPLE)
        pick = wires.pick
        if tok and out_ready:
            self.got = [False] * self.n
            self.is_sample = self.go_done = False
        else:
            if not tok and pick is not None and offers[pick] != SPIKE:
                self.got[pick] = True
                if offers[pick] == END_SAMPLE:
                    self.is_sample = True
            if wires.go:
                self.go_done = True
        spike_waits = wires.out_kind == SPIKE and not out_ready
        self.lock = pick if spike_waits else None


class EngineWires(NamedTuple):
    """The combinational handshake signals of a synapse engine in one cycle."""
    upd_valid: bool     #: the iterator offers an update (``busy``)
    upd_kind: int       #: its kind
    upd_sa: Optional[int]   #: its state address (a spike's, when the job lists them)
    last: bool          #: this update is the last of its job
    job_ready: bool     #: the iterator takes a job (``~busy | (upd.ready & last)``)
    b_ready: bool       #: stage B takes the job of stage A
    inp_ready: bool     #: stage A takes an event (the engine's ``inp.ready``)


class EngineModel:
    """Timing of a synapse engine: stage A, stage B and the synapse iterator.

    Parameters
    ----------
    work : numpy.ndarray
        :func:`layer_work` of the layer on its input shape.
    words : callable, optional
        :func:`layer_words` of the layer (the core needs the state addresses: sparse).
    """

    def __init__(self, work, words=None):
        self.work = work
        self.words = words
        self.it_words = None                # state addresses of the iterator's job
        self.a: Optional[Job] = None        # stage A register (None: empty)
        self.b: Optional[Job] = None        # stage B register, the iterator's job port
        self.it_busy = False                # the iterator issues updates
        self.it_kind = SPIKE
        self.it_left = 0                    # updates left of its job, this one included

    @property
    def busy(self):
        return self.a is not None or self.b is not None or self.it_busy

    def job(self, event):
        """Stage A's lookup: the :class:`Job` of an :class:`Event`."""
        if event.kind == SPIKE:
            words = self.words(event.c, event.y, event.x) if self.words else None
            return Job(SPIKE, int(self.work[event.c, event.y, event.x]), words)
        return Job(event.kind, 0)

    def settle(self, upd_ready):
        """The handshakes of this cycle, given the core's ``upd.ready``."""
        last = self.it_kind != SPIKE or self.it_left == 1
        job_ready = not self.it_busy or (upd_ready and last)
        b_ready = self.b is None or job_ready
        inp_ready = self.a is None or b_ready
        sa = None
        if self.it_busy and self.it_kind == SPIKE and self.it_words is not None:
            sa = self.it_words[len(self.it_words) - self.it_left]
        return EngineWires(self.it_busy, self.it_kind, sa, last, job_ready, b_ready,
                           inp_ready)

    def clock(self, wires, event, upd_ready):
        """One edge; ``event``: the :class:`Event` offered on ``inp`` (None: none)."""
        if self.b is not None and wires.job_ready:
            self.it_busy, self.it_kind = True, self.b.kind
            self.it_left = self.b.work if self.b.kind == SPIKE else 1
            self.it_words = self.b.words
        elif self.it_busy and upd_ready:
            if wires.last:
                self.it_busy = False
            else:
                self.it_left -= 1
        if self.a is not None and wires.b_ready:
            keep = self.a.kind != SPIKE or self.a.work != 0
            self.b = self.a if keep else None
        elif wires.job_ready:
            self.b = None
        if event is not None and wires.inp_ready:
            self.a = self.job(event)
        elif wires.b_ready:
            self.a = None


class CoreModel:
    """Timing of a neuron core (``hw.neuron.NeuronCore``).

    Parameters
    ----------
    out_shape : tuple
    lanes : int
    fired : list of dict
        Per step ``{state word address: spikes}`` (from the reference; empty for a core
        that never fires), the spikes of a word either a mask of the lanes that fire
        once each, or a sequence of ``L`` per-lane spike counts (``spike_limit > 1``:
        lane ``j`` with count ``s`` is emitted ``s`` times in a row, lowest lane first;
        :func:`fired_words`).
    loud : list of set, optional
        A sparse core (``hw.livelist``): per step the words that are not quiet after it
        (:func:`sim.liveness.quiet_words`); ``None``: a dense core.

    Attributes
    ----------
    sweep_start, step_done : list of int
        The cycles in which the core accepted each end-of-step token and in which it
        handed each end-of-step token on.
    """

    #: sweep stages after the read (P0) that hold a word: P1 .. P5
    STAGES = 5

    def __init__(self, out_shape, lanes, fired, loud=None):
        self.C, self.Ho, self.Wo = shape3(out_shape)
        self.L = lanes
        self.G = lane_groups(self.C, lanes)
        self.D = self.Ho * self.Wo * self.G
        self.fired = fired
        self.phase = Phase.ACCUM
        self.token = END_STEP               # kind of the token to hand on
        self.sweeping = False               # words left to read (P0)
        self.next_word = 0                  # the next word P0 reads
        self.pipe = [None] * self.STAGES    # word address in P1..P5 (None: bubble)
        self.to_emit = []                   # lanes of P5's spikes not yet emitted, in order
        self.cleared = 0                    # words cleared so far
        self.step = 0                       # step of the sample being swept
        self.sweep_start, self.step_done = [], []
        # sparse: the live list (hw.livelist.ListSequencer's registers)
        self.loud = loud
        self.sparse = loud is not None
        self.listed = np.zeros(self.D, dtype=bool)
        self.ring = deque()                 # the list, head first
        self.w1 = self.w2 = False           # cycles 1 and 2 after the token
        self.left = 0                       # entries of this sweep still to read (R)
        self.counting = False               # reading only the ``left`` entries
        self.q1 = self.q2 = None            # the entry in Q1, Q2 (None: empty)
        self.p0 = None                      # the word offered in P0
        self.landing = deque()              # (cycle, address): appends of stage C
        self.swept = 0                      # words read by sweeps (energy)

    @property
    def upd_ready(self):
        return self.phase == Phase.ACCUM

    @property
    def busy(self):
        return self.phase != Phase.ACCUM

    @property
    def out_valid(self):
        if self.phase == Phase.SWEEP:
            return self.pipe[-1] is not None and bool(self.to_emit)
        return self.phase == Phase.TOKEN

    def out_event(self):
        """The :class:`Event` on ``out`` (only while :attr:`out_valid`): the token, or
        the lowest lane of the word in P5 with a spike left."""
        if self.phase == Phase.TOKEN:
            return Event(self.token, 0, 0, 0)
        lane = self.to_emit[0]
        pos, g = divmod(self.pipe[-1], self.G)
        y, x = divmod(pos, self.Wo)
        return Event(SPIKE, g * self.L + lane, y, x)

    def clock(self, t, upd_kind, out_ready, upd_sa=None):
        """Edge ending cycle ``t``; ``upd_kind``: the kind of the update taken in this
        cycle (None: none), ``upd_sa`` its state address (a sparse core lists it)."""
        phase = self.phase
        if self.sparse:
            self._list_clock(t, upd_kind, out_ready, upd_sa)
        if phase == Phase.ACCUM:
            if upd_kind == END_STEP:
                self.phase, self.token = Phase.SWEEP, END_STEP
                self.sweeping, self.next_word = not self.sparse, 0
                self.sweep_start.append(t)
            elif upd_kind == END_SAMPLE:
                self.phase, self.token = Phase.CLEAR, END_SAMPLE
                self.cleared = 0
        elif phase == Phase.SWEEP:
            if not self.sparse:
                self._sweep(out_ready)
        elif phase == Phase.CLEAR:
            if self.cleared == self.D - 1:
                self.phase = Phase.TOKEN
            self.cleared += 1
        elif out_ready:                     # Phase.TOKEN, handed on
            self.phase = Phase.ACCUM
            if self.token == END_STEP:
                self.step_done.append(t)
                self.step += 1
            else:
                self.step = 0

    def _spikes(self, word):
        """The lanes word ``word`` emits this step, in emission order."""
        f = self.fired[self.step].get(word, 0) if word is not None else 0
        if isinstance(f, (int, np.integer)):
            return [j for j in range(self.L) if (int(f) >> j) & 1]
        return [j for j, n in enumerate(f) for _ in range(int(n))]

    def _list_clock(self, t, upd_kind, out_ready, upd_sa):
        """One edge of a sparse core's list (``hw.livelist.ListSequencer``: the ring, its
        read-ahead stages R, Q1, Q2, P0, the counts) and, in a sweep, of P1 .. P5 (a word
        leaving P5 stays listed when it is loud). Sets :attr:`phase` to ``TOKEN`` when
        the sweep ends; the caller does the rest of the phase sequence."""
        if self.phase == Phase.CLEAR:
            # the clear empties the list; stage-C appends landing now are dropped
            self.ring.clear()
            self.landing.clear()
            self.listed[:] = False
            self.q1 = self.q2 = self.p0 = None
            self.left, self.counting, self.w1, self.w2 = 0, False, False, False
            return
        sweep = self.phase == Phase.SWEEP
        advance = end = False
        push = None
        if sweep:
            m = self.to_emit
            emitting = self.out_valid
            advance = self.pipe[-1] is None or (len(m) <= 1 and (not m or out_ready))
            busy = (self.w1 or self.w2 or (self.counting and self.left)
                    or self.q1 is not None or self.q2 is not None or self.p0 is not None
                    or any(a is not None for a in self.pipe))
            if not busy:
                self.phase, end = Phase.TOKEN, True
            if advance:
                p4, p5 = self.pipe[-2], self.pipe[-1]
                if p5 is not None:
                    if p5 in self.loud[self.step]:
                        push = p5
                    else:
                        self.listed[p5] = False
                self.to_emit = self._spikes(p4)
                self.pipe = [self.p0] + self.pipe[:-1]
                if self.p0 is not None:
                    self.swept += 1
            elif emitting and out_ready:
                self.to_emit = m[1:]            # the lowest spike is out
        # an update taken now is appended in its stage C (cycle t + 2) when its word is
        # not listed yet
        if self.phase == Phase.ACCUM and upd_kind == SPIKE and not self.listed[upd_sa]:
            self.listed[upd_sa] = True
            self.landing.append((t + 2, upd_sa))
        if self.landing and self.landing[0][0] == t:
            push = self.landing.popleft()[1]
        p0_ready = self.p0 is None or advance
        q2_ready = self.q2 is None or p0_ready
        q1_ready = self.q1 is None or q2_ready
        pop = q1_ready and bool(self.left if self.counting else self.ring)
        if p0_ready:
            self.p0 = self.q2
        if q2_ready:
            self.q2 = self.q1
        if q1_ready:
            self.q1 = self.ring.popleft() if pop else None
        if end:
            self.counting = False
        elif self.w2:
            self.counting, self.left = True, len(self.ring)
        elif self.counting and pop:
            self.left -= 1
        if push is not None:
            self.ring.append(push)
        self.w1, self.w2 = self.phase == Phase.ACCUM and upd_kind == END_STEP, self.w1

    def _sweep(self, out_ready):
        emitting = self.out_valid
        left = self.to_emit
        # the pipeline advances when P5 is empty, holds no spike, or emits its last one now
        advance = self.pipe[-1] is None or (len(left) <= 1 and (not left or out_ready))
        if not self.sweeping and all(a is None for a in self.pipe):
            self.phase = Phase.TOKEN
        if advance:
            self.to_emit = self._spikes(self.pipe[-2])
            self.pipe = [self.next_word if self.sweeping else None] + self.pipe[:-1]
            if self.sweeping:
                self.swept += 1
                if self.next_word == self.D - 1:
                    self.sweeping = False
                self.next_word += 1
        elif emitting and out_ready:
            self.to_emit = left[1:]         # the lowest spike is out


class MergeModel:
    """Timing of ``hw.merge.Merge(n, shape)``: spikes of ``n`` token-synchronous streams
    by fixed priority (an offered spike stays picked until taken: ``lock``), a token once
    every input offers it and no spike is offered (the equations in ``hw/merge.py``)."""

    def __init__(self, n):
        self.n = n
        self.lock = None

    def settle(self, offers):
        """``(pick, tok, out)``: the input whose spike is offered (None: none), whether
        every input offers a token, and the event on ``out`` (None: ``valid`` low), given
        the :class:`Event` each input offers (None: ``valid`` low)."""
        pick = self.lock
        if pick is None:
            pick = next((i for i, o in enumerate(offers)
                         if o is not None and o.kind == SPIKE), None)
        tok = all(o is not None and o.kind != SPIKE for o in offers)
        out = offers[pick] if pick is not None else (offers[0] if tok else None)
        return pick, tok, out

    def inp_ready(self, pick, tok, out_ready):
        """``inp[i].ready`` of every input."""
        return [bool(out_ready) and (pick == i if pick is not None else tok)
                for i in range(self.n)]

    def clock(self, pick, out_ready):
        self.lock = pick if pick is not None and not out_ready else None


class BankedLayerModel:
    """Timing of a layer with ``B > 1`` banks (``hw.layer``, "Banks"): the layer's input
    event goes through a :class:`ForkModel` to ``B`` :class:`EngineModel` (bank ``b``'s
    window columns only), each into its own :class:`CoreModel` (a wire join), whose
    spikes (column ``x_b*B + b``) and tokens a :class:`MergeModel` merges.

    :func:`predict` sees it as a layer's engine (:attr:`front`: takes the events of the
    layer's FIFO, offers no update to the layer's join) and core (:attr:`back`: always
    ready for the join, offers the merged stream); all registers are advanced in their
    ``clock`` calls from values settled before the edge.
    """

    def __init__(self, engines, cores):
        self.B = len(cores)
        self.engines, self.cores = engines, cores
        self.fork = ForkModel(self.B)
        self.merge = MergeModel(self.B)
        self.front = _BankFront(self)
        self.back = _BankBack(self)
        self.ew = None                      # the engines' settled wires of the cycle

    def offers(self):
        out = []
        for b, c in enumerate(self.cores):
            if not c.out_valid:
                out.append(None)
                continue
            ev = c.out_event()
            out.append(ev._replace(x=ev.x * self.B + b) if ev.kind == SPIKE else ev)
        return out


class _BankFront:
    """The engine side of a :class:`BankedLayerModel` (the interface of :class:`EngineModel`)."""
    it_busy = False
    it_kind = SPIKE

    def __init__(self, bl):
        self.bl = bl

    @property
    def busy(self):
        return self.bl.fork.busy or any(e.busy for e in self.bl.engines)

    def settle(self, upd_ready):
        bl = self.bl
        bl.ew = [e.settle(c.upd_ready) for e, c in zip(bl.engines, bl.cores)]
        self.fork_ready = [w.inp_ready for w in bl.ew]
        return EngineWires(False, SPIKE, None, True, True, True,
                           bl.fork.inp_ready(self.fork_ready))

    def clock(self, wires, event, upd_ready):
        bl = self.bl
        valid = bl.fork.out_valid(event is not None)
        bl.fork.clock(event is not None, self.fork_ready)
        # (the cores are clocked after this, from the engine wires settled before it)
        bl.taken = [w.upd_kind if w.upd_valid and c.upd_ready else None
                    for w, c in zip(bl.ew, bl.cores)]
        for e, w, v, c in zip(bl.engines, bl.ew, valid, bl.cores):
            e.clock(w, event if v else None, c.upd_ready)


class _BankBack:
    """The core side of a :class:`BankedLayerModel` (the interface of :class:`CoreModel`)."""
    upd_ready = True

    def __init__(self, bl):
        self.bl = bl
        self.step_done, self.sweep_start = [], []

    @property
    def busy(self):
        return any(c.busy for c in self.bl.cores)

    @property
    def sparse(self):
        return self.bl.cores[0].sparse

    @property
    def swept(self):
        return sum(c.swept for c in self.bl.cores)

    @property
    def out_valid(self):
        return self.bl.merge.settle(self.bl.offers())[2] is not None

    def out_event(self):
        return self.bl.merge.settle(self.bl.offers())[2]

    def clock(self, t, upd_kind, out_ready, upd_sa=None):
        bl = self.bl
        pick, tok, out = bl.merge.settle(bl.offers())
        ready = bl.merge.inp_ready(pick, tok, out_ready)
        if out is not None and out_ready and out.kind == END_STEP:
            self.step_done.append(t)
        for c, kind, w, r in zip(bl.cores, bl.taken, bl.ew, ready):
            c.clock(t, kind, r, w.upd_sa if kind == SPIKE else None)
        starts = [c.sweep_start for c in bl.cores]
        k = len(self.sweep_start)
        if all(len(s) > k for s in starts):
            self.sweep_start.append(max(s[k] for s in starts))
        bl.merge.clock(pick, out_ready)


class DelayLineModel:
    """Timing and contents of a delay line (``hw.delay.DelayLine``), register for register.

    ``S = d + D`` slots of ``cap`` events (:func:`sim.geometry.delay_slots`,
    :func:`sim.geometry.delay_capacity`); source step ``n`` in slot ``n mod S``. The
    absolute steps ``w`` (source, being written) and ``c`` (consumer, being replayed)
    are kept as ``lag1 = c - w + 1`` (in ``0 .. d+1``); ``k`` is the consumer's step in
    its sample, saturated at ``S - 1``.

    * write side: ``inp_ready = lag1 >= 1`` (``w <= c``); a spike goes to event ``wcnt``
      of slot ``wslot`` (not stored past ``cap``); ``END_STEP`` stores the slot's count
      and moves to the next slot; ``END_SAMPLE`` is dropped;
    * read side: ``go`` (while not running) starts the replay of step ``c`` at tap 0 of
      slot ``head`` (that of step ``c - d``); while the source has finished step
      ``c - d`` (``lag1 <= d``): tap ``j`` is live while ``k >= d + j``; a live tap's
      events are loaded into the output register one per cycle (when it is empty or
      read), the last one moving on to the next tap; a live empty tap costs one cycle;
      after the live taps ``END_STEP`` is loaded, which counts ``c``;
      ``sample_end`` (while not running) sets ``k = 0``.

    Parameters
    ----------
    shape : tuple
        Source shape.
    delay, taps, m_src : int
        ``d``, ``D`` and the source's largest count.
    """

    def __init__(self, shape, delay, taps, m_src=1):
        self.d, self.D = int(delay), int(taps)
        self.S = delay_slots(delay, taps)
        self.cap = delay_capacity(shape, m_src)
        self.mem = [(0, 0, 0)] * (self.S * self.cap)
        self.count = [0] * self.S
        self.lag1 = 1
        self.wslot = self.wcnt = 0
        self.run = False
        self.head = (self.S - self.d) % self.S
        self.k = self.j = self.rslot = self.idx = 0
        self.ov = False
        self.word = TapEvent(SPIKE, 0, 0, 0, 0)

    @property
    def inp_ready(self):
        return self.lag1 >= 1

    @property
    def out_valid(self):
        return self.ov

    @property
    def busy(self):
        return self.run or self.ov

    def out_event(self):
        """The :class:`TapEvent` in the output register (offered while
        :attr:`out_valid`)."""
        return self.word

    def clock(self, event, out_ready, go=False, sample_end=False):
        """One edge; ``event``: the :class:`Event` offered on ``inp`` (None: none);
        ``out_ready``: the consumer's ``out.ready``; ``go``, ``sample_end``: the join's
        strobes in this cycle."""
        S, cap = self.S, self.cap
        src_done = self.lag1 <= self.d
        live = self.k >= self.d + self.j
        n = self.count[self.rslot]
        advance = not self.ov or out_ready
        load_spike = self.run and src_done and live and n != 0 and advance
        skip_tap = self.run and src_done and live and n == 0
        load_token = self.run and src_done and not live and advance
        take = event is not None and self.inp_ready
        step = take and event.kind == END_STEP
        run, head = self.run, self.head
        # read side (from the registers before the edge)
        if load_spike:
            self.word = TapEvent(SPIKE, *self.mem[self.rslot * cap + self.idx], self.j)
            if self.idx == n - 1:
                self._next_tap()
            else:
                self.idx += 1
        elif skip_tap:
            self._next_tap()
        elif load_token:
            self.word = TapEvent(END_STEP, 0, 0, 0, 0)
            self.run = False
            self.head = (self.head + 1) % S
            self.k = min(self.k + 1, S - 1)
        self.ov = load_spike or load_token or (self.ov and not out_ready)
        # write side
        if take and event.kind == SPIKE and self.wcnt != cap:
            self.mem[self.wslot * cap + self.wcnt] = (event.c, event.y, event.x)
            self.wcnt += 1
        if step:
            self.count[self.wslot] = self.wcnt
            self.wcnt = 0
            self.wslot = (self.wslot + 1) % S
        self.lag1 += int(load_token) - int(step)
        if not run:
            if sample_end:
                self.k = 0
            if go:
                self.run, self.j, self.idx, self.rslot = True, 0, 0, head

    def _next_tap(self):
        self.j += 1
        self.idx = 0
        self.rslot = (self.rslot - 1) % self.S


class ReadoutModel:
    """Timing of the readout of ``hw.network``: after an end-of-sample token the arg-max
    runs over the ``n_classes`` scores, one per cycle, then ``done`` strobes."""

    def __init__(self, n_classes):
        self.n_classes = n_classes
        self.busy = False
        self.index = 0

    def ready(self, event):
        """``out.ready`` of the last layer: an end-of-sample token waits for the arg-max."""
        return not (self.busy and event is not None and event.kind == END_SAMPLE)

    def clock(self, sample_end):
        """One edge; ``sample_end``: an end-of-sample token is taken. Returns whether
        ``done`` strobes in this cycle."""
        if sample_end:
            self.busy, self.index = True, 1
        elif self.busy:
            if self.index < self.n_classes:
                self.index += 1
            else:
                self.busy = False
                return True
        return False


class SourceModel:
    """The driver of the network input: offers ``words`` in order, each after its gap;
    with ``sync_cycles``, waits after every end-of-step word for ``idle`` and then
    ``sync_cycles`` more cycles.

    Attributes
    ----------
    accepted, sample_first, idle_after_step : list of int
        As in :class:`CycleReport`.
    """

    def __init__(self, words, start, gaps=None, sync_cycles=None):
        self.words = words
        self.gaps = list(gaps) if gaps is not None else None
        self.sync_cycles = sync_cycles
        self.next = 0                       # index of the word to offer
        self.offer_at = start + self._gap(0)
        self.waiting_idle = False
        self.new_sample = True
        self.accepted, self.sample_first, self.idle_after_step = [], [], []

    def _gap(self, j):
        return self.gaps[j] if self.gaps else 0

    @property
    def finished(self):
        return self.next >= len(self.words)

    def offer(self, t, idle):
        """The word offered in cycle ``t`` (None: ``valid`` low); ``idle``: the
        network's ``idle`` in this cycle."""
        if self.waiting_idle and idle:
            self.waiting_idle = False
            self.idle_after_step.append(t)
            self.offer_at = t + 1 + self.sync_cycles + self._gap(self.next)
        if self.waiting_idle or self.finished or t < self.offer_at:
            return None
        if self.new_sample:
            self.sample_first.append(t)
            self.new_sample = False
        return self.words[self.next]

    def clock(self, t, transfer):
        """Edge ending cycle ``t``; ``transfer``: the offered word was accepted."""
        if not transfer:
            return
        self.accepted.append(t)
        kind = self.words[self.next].kind
        self.next += 1
        if kind == END_SAMPLE:
            self.new_sample = True
        if self.sync_cycles is not None and kind == END_STEP:
            self.waiting_idle = True
        elif not self.finished:
            self.offer_at = t + 1 + self._gap(self.next)


def fired_words(spikes, out_shape, lanes):
    """Per step ``{state word address: per-lane spike counts}`` (lists of ``L``) of the
    spike counts ``(T, *out_shape)`` of one layer (the ``fired`` of :class:`CoreModel`)."""
    C, Ho, Wo = shape3(out_shape)
    G = lane_groups(C, lanes)
    out = []
    for step in spikes:
        m = {}
        counts = step.reshape(C, Ho * Wo)
        cs, pos = np.nonzero(counts)
        for c, p in zip(cs.tolist(), pos.tolist()):
            a = p * G + c // lanes
            m.setdefault(a, [0] * lanes)[c % lanes] = int(counts[c, p])
        out.append(m)
    return out


_fired_words = fired_words          # the name before it was public


def _core_model(layer, lanes, fire, sparse, spikes, states):
    """The :class:`CoreModel` of ``layer`` (or of one bank's view of it) from the
    reference's ``spikes`` and ``states`` ``(T, *out_shape)``."""
    fired = fired_words(spikes, layer.out_shape, lanes) if fire else [{} for _ in spikes]
    loud = None
    if sparse:
        G = lane_groups(shape3(layer.out_shape)[0], lanes)
        loud = quiet_words(layer, spikes, states, G, lanes)
    return CoreModel(layer.out_shape, lanes, fired, loud)


def _banked_layer(layer, src_shape, lanes, B, sparse, spikes, states):
    """The :class:`BankedLayerModel` of ``layer`` with ``B`` banks."""
    syn = layer.synapse
    engines, cores = [], []
    for b in range(B):
        engines.append(EngineModel(
            bank_work(syn, src_shape, layer.out_shape, lanes, b, B),
            bank_words(syn, src_shape, layer.out_shape, lanes, b, B) if sparse else None))
        cores.append(_core_model(bank_layer(layer, b, B), lanes, True, sparse,
                                 spikes[..., b::B], states[..., b::B]))
    return BankedLayerModel(engines, cores)


def predict(model, binned, params=None, *, words=None, samples=1, start=0, gaps=None,
            sync_cycles=None, max_cycles=50_000_000, backend="auto", trace=None):
    """Predict the cycles of the network top for ``samples`` runs of ``binned``.

    Parameters
    ----------
    model : sim.model.Model
    binned : sim.events.BinnedEvents
        The sample (the spikes of every layer come from the reference on it).
    params : HwParams, optional
        Lanes and FIFO depth (defaults: ``hw`` defaults).
    words : list of (kind, p, y, x), optional
        The exact input sequence; default :func:`input_words` (``samples`` copies, sources
        in ascending order). Every sample in it must be ``binned`` (in any order of its
        words): the layer spikes come from one reference run. Out-of-range spikes in it
        are dropped as the RTL does.
    start : int
        Cycle (RTL ``cycle`` counter value) in which the first word is offered.
    gaps : sequence of int, optional
        ``gaps[j]``: cycles with ``valid`` low before word ``j`` is offered (counted from
        the cycle after the previous transfer, or from ``start`` for word 0).
    sync_cycles : int, optional
        Step synchronisation: after each end-of-step word, wait for the first cycle
        ``t`` with ``idle`` (from the cycle after the transfer on), and offer the next word
        at ``t + 1 + sync_cycles`` (plus its gap).
    max_cycles : int
        Give up (``RuntimeError``) after this many cycles from ``start``.
    backend : str
        Backend of :func:`sim.reference.run` that provides the spikes.
    trace : callable, optional
        Called as ``trace(t, values)`` in every cycle with what the blocks do in it
        (``levels``: every FIFO's level, ``upd``: the kind each core takes, ``out``: per
        layer the event its core offers and its ``ready``), for debugging.

    Returns
    -------
    CycleReport

    Raises
    ------
    ValueError
        Bad lanes (:func:`sim.geometry.lanes_of`) or FIFO depth.
    RuntimeError
        No result after ``max_cycles`` cycles.
    """
    params = params or HwParams()
    if params.sweep not in SWEEPS:
        raise ValueError(f"sweep: {params.sweep!r} is not one of {', '.join(SWEEPS)}")
    n = len(model.layers)
    lanes = lanes_of(model, params.lanes)
    banks = banks_of(model, params.banks)
    P, H, W = model.input.shape
    if words is None:
        words = input_words(model, binned, samples=samples)
    words = [InputWord(*w) for w in words]
    result = reference_run(model, binned, record=True, backend=backend)
    membrane = model.readout == "membrane"
    # the graph as hw.network builds it: per layer its synapse units (engine + FIFO, or
    # engine + delay line for a replayed synapse), a join and a core; per source a fork
    # over its consumers (the last layer's fork also feeds the readout); a layer without
    # a same-step synapse has a FIFO of the input's tokens as its live join input
    consumers = {INPUT: []}
    consumers.update({layer.name: [] for layer in model.layers})
    joins, cores = [], []
    inputs = []             # inputs[i]: per join input (in join order) [j, buffer, engine]
    sinks = {}              # (layer, synapse or None) -> its FIFO or delay line
    fifos = []              # the RTL's order (Network.fifos)
    for i, layer in enumerate(model.layers):
        fire = not (membrane and i == n - 1)   # the output layer of a membrane readout
        sparse = params.sweep == "sparse" and sparse_ok(layer, fire)
        live, replay = [], []
        for j, syn in enumerate(layer.synapses):
            src = model.source_of(i, syn)
            consumers[src].append((i, j))
            src_shape = model.source_shape(src)
            work = synapse_work(syn, src_shape, layer.out_shape, lanes[i])
            engine = EngineModel(work, synapse_words(syn, src_shape, layer.out_shape, lanes[i])
                                 if sparse else None)
            if syn.delay != 0 or syn.taps != 1:
                buf = DelayLineModel(src_shape, syn.delay, syn.taps, model.source_limit(src))
                replay.append([j, buf, engine])
            else:
                buf = FifoModel(params.fifo_depth)
                fifos.append(buf)
                live.append([j, buf, engine])
            sinks[i, j] = buf
        if not live:
            buf = sinks[i, None] = FifoModel(params.fifo_depth)
            fifos.append(buf)
            consumers[INPUT].append((i, None))
            live.append([None, buf, None])
        inputs.append(live + replay)
        joins.append(JoinModel(len(live), len(replay)))
        if banks[i] > 1:
            (j, buf, _), = live
            src_shape = model.source_shape(model.source_of(i, layer.synapse))
            bl = _banked_layer(layer, src_shape, lanes[i], banks[i], sparse,
                               result.spikes[layer.name], result.states[layer.name])
            live[0][2] = bl.front
            cores.append(bl.back)
            continue
        cores.append(_core_model(layer, lanes[i], fire, sparse, result.spikes[layer.name],
                                 result.states[layer.name]))
    last_name = model.layers[-1].name
    forks = {src: ForkModel(len(users) + (src == last_name))
             for src, users in consumers.items() if users or src == last_name}
    readout = ReadoutModel(model.layers[-1].n_out)
    source = SourceModel(words, start, gaps, sync_cycles)
    blocked = {id(f): 0 for f in fifos}
    sample_done = []

    def in_range(w):
        if w.kind == SPIKE:
            return w.p < P and w.y < H and w.x < W
        return w.kind in (END_STEP, END_SAMPLE)

    def is_idle():
        return (all(not (e is not None and e.busy) and not buf.busy
                    if isinstance(buf, DelayLineModel) else
                    not (e is not None and e.busy) and not buf.level
                    for row in inputs for _, buf, e in row)
                and all(not (j.busy or c.busy) for j, c in zip(joins, cores)))

    def sink_ready(key, ev):
        buf = sinks[key]
        if isinstance(buf, DelayLineModel):
            return buf.inp_ready
        if key[1] is None:                  # token feed: a spike is taken and dropped
            return buf.w_rdy or (ev is not None and ev.kind == SPIKE)
        return buf.w_rdy

    n_samples = sum(1 for w in words if w.kind == END_SAMPLE)
    t = start
    # until every result is out and nothing is in flight (a layer whose spikes nobody
    # reads may finish its last step after the readout's done)
    while len(sample_done) < n_samples or not source.finished or not is_idle():
        if t >= start + max_cycles:
            raise RuntimeError("cycle model: no progress (max_cycles reached)")
        # -- the cycle's combinational values, all from the registers before the edge
        idle = is_idle()
        word = source.offer(t, idle)
        good = word is not None and in_range(word)
        # what every fork offers (its source's word) and the readiness of its outputs
        offered = {INPUT: Event(*word) if good else None}
        for i, c in enumerate(cores):
            offered[model.layers[i].name] = c.out_event() if c.out_valid else None
        fork_ready = {}
        for src, fork in forks.items():
            ev = offered[src]
            ready = [sink_ready(key, ev) for key in consumers[src]]
            if src == last_name:
                ready.append(readout.ready(ev))
            fork_ready[src] = ready
        src_ready = {src: fork.inp_ready(fork_ready[src]) for src, fork in forks.items()}
        transfer = word is not None and (not good or src_ready[INPUT])  # a bad word: dropped
        out_ready = [src_ready.get(layer.name, True) for layer in model.layers]
        jwires, ewires, heads = [], [], []
        for i, (row, jm, c) in enumerate(zip(inputs, joins, cores)):
            # what each join input offers: an engine's update, or the token feed's head
            offers = []
            head = []
            for j, buf, e in row:
                if isinstance(buf, DelayLineModel):
                    head.append(buf.out_event() if buf.out_valid else None)
                else:
                    head.append(buf.r_data if buf.r_rdy else None)
                if e is None:
                    offers.append(head[-1].kind if head[-1] is not None else None)
                else:
                    offers.append(e.it_kind if e.it_busy else None)
            jw = jm.settle(offers, c.upd_ready)
            jwires.append((jw, offers))
            heads.append(head)
            ewires.append([e.settle(jw.inp_ready[k]) if e is not None else None
                           for k, (_, _, e) in enumerate(row)])
        levels = [f.level for f in fifos]
        # -- the edge
        writes, took = {}, {}
        for src, fork in forks.items():
            ev = offered[src]
            valid = fork.out_valid(ev is not None)
            for k, key in enumerate(consumers[src]):
                writes[key] = ev if valid[k] else None
            took[src] = fork.clock(ev is not None, fork_ready[src])
        for i, row in enumerate(inputs):
            jw = jwires[i][0]
            for k, (j, buf, e) in enumerate(row):
                w = writes.get((i, j))
                # the reader of the buffer: the engine's input, or the join (token feed)
                r_en = ewires[i][k].inp_ready if e is not None else jw.inp_ready[k]
                if isinstance(buf, DelayLineModel):
                    buf.clock(w, r_en, go=jw.go, sample_end=jw.sample_end)
                else:
                    if j is None and w is not None and w.kind == SPIKE:
                        w = None                # the token feed drops spikes
                    if w is not None and not buf.w_rdy:
                        blocked[id(buf)] += 1
                    buf.clock(w is not None, w, r_en)
                if e is not None:
                    e.clock(ewires[i][k], heads[i][k], jw.inp_ready[k])
        if trace is not None:
            trace(t, {"levels": levels,
                      "upd": [jw.out_kind if c.upd_ready else None
                              for (jw, _), c in zip(jwires, cores)],
                      "out": [(offered[l.name], out_ready[i])
                              for i, l in enumerate(model.layers)]})
        for i, (jm, c) in enumerate(zip(joins, cores)):
            jw, offers = jwires[i]
            upd = jw.out_kind if c.upd_ready else None
            sa = None                       # the state address of a spike update taken
            if upd == SPIKE:
                sa = ewires[i][jw.pick].upd_sa
            jm.clock(jw, offers, c.upd_ready)
            c.clock(t, upd, out_ready[i], sa)
        last = offered[last_name]
        if readout.clock(took[last_name][-1] and last.kind == END_SAMPLE):
            sample_done.append(t)
        source.clock(t, transfer)
        t += 1
    return CycleReport(step_done=[c.step_done for c in cores],
                       sweep_start=[c.sweep_start for c in cores], sample_done=sample_done,
                       accepted=source.accepted, idle_after_step=source.idle_after_step,
                       start=start, end=sample_done[-1] if sample_done else t,
                       sample_first=source.sample_first,
                       blocked=[blocked[id(f)] for f in fifos],
                       swept=[c.swept for c in cores], sparse=[c.sparse for c in cores])
