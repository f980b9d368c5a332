"""Cycle model of the generated accelerator (``hw.network.Network``).

Given a model, the hardware parameters (lanes per layer, FIFO depth) and the exact
sequence of input words, :func:`predict` returns the cycle at which every layer finishes
every step (the cycle of its end-of-step token transfer, what the RTL's
``step_cycle[i]`` status register records), the cycle each sample's result is ready
(``done``), and so the latency of a sample at a given clock.

The model is a cycle-level simulation of the *timing* of the datapath only: every
register that decides a handshake is mirrored, every arithmetic value is left out. The
spikes that drive the sweeps and the traffic between layers come from
:func:`sim.reference.run` (the one copy of the integer rules), so the model needs no
arithmetic of its own. It mirrors, per layer ``i``:

* the FIFO in front of the layer (``amaranth.lib.fifo.SyncFIFOBuffered``: an inner
  queue of ``depth - 1`` words plus an output register; write-to-read latency 2;
  ``depth == 1`` is a single register that alternates full/empty);
* the synapse engine: stage A (lookups) and stage B (job register), each a pipeline
  register with ``ready = ~valid | ready_downstream``; stage B drops a spike with no
  output position; the :class:`hw.synapse.SynapseIterator` spends ``ny*nx*G`` cycles on a
  conv/pool spike, ``G`` on a linear spike, one on a token, and takes the next job in the
  cycle of the last update;
* the neuron core: accumulate (always ready), the 6-stage sweep over the ``D`` state
  words that stalls while a word with several spikes emits them one per cycle or the
  output is not ready, the clear of an end-of-sample token (``D`` cycles), and the
  token hand-over;
* the network input (range check: a bad word is accepted and dropped without waiting
  for the FIFO) and the readout (an end-of-sample token waits while a previous arg-max,
  ``n_classes`` cycles, is running).

The source (a testbench driver or a host link) is described by the input word list,
an optional gap before each word (valid held low for that many cycles after the
previous transfer) and an optional step synchronisation (after every end-of-step word:
wait for ``idle``, then ``sync_cycles`` more cycles; what a bench that reads the states
back between steps does).

Cycle numbering: cycle ``t`` is the value of the RTL's free-running ``cycle`` counter;
``start`` is the cycle in which the first word is offered.

Only numpy is needed; nothing here imports ``hw``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .reference import run as reference_run

__all__ = ["SPIKE", "END_STEP", "END_SAMPLE", "HwParams", "CycleReport", "lanes_of",
           "input_words", "layer_work", "predict"]

SPIKE, END_STEP, END_SAMPLE = 0, 1, 2


def _shape3(shape):
    shape = tuple(int(s) for s in shape)
    return (shape[0], 1, 1) if len(shape) == 1 else shape


def default_lanes(layer):
    """Same rule as ``hw.layer.default_lanes``: all output channels up to 16."""
    return max(1, min(_shape3(layer.out_shape)[0], 16))


def lanes_of(model, lanes=None):
    """Lanes per layer, from an int, a list in layer order or a ``{name: L}`` dict
    (missing entries: :func:`default_lanes`), as ``hw.network.Network`` reads them."""
    out = []
    for i, layer in enumerate(model.layers):
        if isinstance(lanes, dict):
            L = lanes.get(layer.name)
        elif isinstance(lanes, (list, tuple)):
            L = lanes[i]
        else:
            L = lanes
        out.append(int(L) if L else default_lanes(layer))
    return out


@dataclass
class HwParams:
    """Hardware parameters that decide the timing.

    Attributes
    ----------
    lanes : int, list or dict, optional
        As ``hw.network.Network(lanes=...)``.
    fifo_depth : int
        Depth of every FIFO.
    """
    lanes: object = None
    fifo_depth: int = 16


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
        Per FIFO: cycles in which its writer offered a word and the FIFO was full.
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

    Returns a list of ``(kind, p, y, x)``.
    """
    P, H, W = model.input.shape
    words = []
    for _ in range(samples):
        for k in range(binned.timesteps):
            src, count = binned.step(k)
            groups = [[(SPIKE, int(s) // (H * W), (int(s) // W) % H, int(s) % W)] * int(n)
                      for s, n in zip(src, count)]
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
                    step.insert(int(brng.integers(len(step) + 1)), (SPIKE, p, y, x))
            words += step
            words.append((END_STEP, 0, 0, 0))
        words.append((END_SAMPLE, 0, 0, 0))
    return words


def layer_work(layer, in_shape, lanes):
    """Iterator cycles of an input spike at every ``(c, y, x)`` of ``in_shape``.

    ``positions*G`` (``G = ceil(C_out/L)``; the positions reached come from the synapse
    kind's ``event_positions`` hook in :mod:`sim.registry`: ``ny*nx`` for a conv/pool,
    1 for a linear layer), 0 for a spike that reaches no output (dropped before the
    iterator).
    """
    syn = layer.synapse
    in3, out3 = _shape3(in_shape), _shape3(layer.out_shape)
    G = -(-out3[0] // lanes)
    return syn.kind.event_positions(syn, in3, out3) * G


class _Fifo:
    __slots__ = ("depth", "inner", "out_valid", "out_item")

    def __init__(self, depth):
        self.depth = depth
        self.inner = deque()
        self.out_valid = False
        self.out_item = None

    def w_rdy(self):
        if self.depth == 1:
            return not self.out_valid
        return len(self.inner) != self.depth - 1

    def level(self):
        return len(self.inner) + self.out_valid

    def update(self, w_en, w_item, r_en):
        if self.depth == 1:
            if w_en and not self.out_valid:
                self.out_item = w_item
                self.out_valid = True
            elif self.out_valid and r_en:
                self.out_valid = False
            return
        write = w_en and len(self.inner) != self.depth - 1
        if self.inner and (not self.out_valid or r_en):
            self.out_item = self.inner.popleft()
            self.out_valid = True
        elif r_en:
            self.out_valid = False
        if write:
            self.inner.append(w_item)


class _Layer:
    """Timing state of one layer (engine + core)."""

    def __init__(self, layer, in_shape, lanes, spikes, fire):
        self.L = lanes
        C, Ho, Wo = _shape3(layer.out_shape)
        self.C, self.Ho, self.Wo = C, Ho, Wo
        self.G = -(-C // lanes)
        self.D = Ho * Wo * self.G
        self.work = layer_work(layer, in_shape, lanes)
        # per step: {word address: lane mask}
        self.masks = []
        T = spikes.shape[0]
        sp = spikes.reshape(T, C, Ho * Wo) if fire else np.zeros((T, C, Ho * Wo), np.uint8)
        for k in range(T):
            m = {}
            cs, pos = np.nonzero(sp[k])
            for c, p in zip(cs.tolist(), pos.tolist()):
                a = p * self.G + c // lanes
                m[a] = m.get(a, 0) | (1 << (c % lanes))
            self.masks.append(m)
        # engine
        self.a_valid = False
        self.a_item = None
        self.b_valid = False
        self.b_item = None
        self.it_busy = False
        self.it_kind = 0
        self.it_rem = 0
        # core
        self.phase = 0          # 0 ACCUM, 1 SWEEP, 2 CLEAR, 3 TOKEN
        self.tok_kind = 0
        self.sw_active = False
        self.sw_a = 0
        self.pv = [False] * 5                       # p1..p5 valid
        self.pa = [0] * 5                           # p1..p5 address
        self.mask5 = 0
        self.clr = 0
        self.step = 0

    def busy(self):
        return self.a_valid or self.b_valid or self.it_busy or self.phase != 0

    def out_valid(self):
        if self.phase == 1:
            return self.pv[4] and self.mask5 != 0
        return self.phase == 3

    def out_item(self):
        """The word on ``out``: ``(kind, c, y, x)``."""
        if self.phase == 3:
            return (self.tok_kind, 0, 0, 0)
        m = self.mask5
        lane = (m & -m).bit_length() - 1
        pos, g = divmod(self.pa[4], self.G)
        y, x = divmod(pos, self.Wo)
        return (SPIKE, g * self.L + lane, y, x)


def _reference_spikes(model, binned, backend):
    r = reference_run(model, binned, record=True, backend=backend)
    return [r.spikes[layer.name] for layer in model.layers]


def predict(model, binned, params=None, *, words=None, samples=1, start=0, gaps=None,
            sync_cycles=None, max_cycles=50_000_000, backend="auto"):
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
    backend : str
        Backend of :func:`sim.reference.run` that provides the spikes.

    Returns
    -------
    CycleReport
    """
    params = params or HwParams()
    n = len(model.layers)
    lanes = lanes_of(model, params.lanes)
    P, H, W = model.input.shape
    if words is None:
        words = input_words(model, binned, samples=samples)
    spikes = _reference_spikes(model, binned, backend)
    membrane = model.readout == "membrane"
    layers = []
    shape = tuple(model.input.shape)
    for i, layer in enumerate(model.layers):
        layers.append(_Layer(layer, shape, lanes[i], spikes[i],
                             fire=not (membrane and i == n - 1)))
        shape = tuple(layer.out_shape)
    fifos = [_Fifo(params.fifo_depth) for _ in range(n)]
    nc = model.layers[-1].n_out

    # source items for FIFO 0: ("s", work) / token kinds; bad words are never written
    def classify(w):
        kind, p, y, x = w
        if kind == SPIKE:
            if p < P and y < H and x < W:
                return (SPIKE, int(layers[0].work[p, y, x]))
            return None
        if kind in (END_STEP, END_SAMPLE):
            return (kind, 0)
        return None

    items = [classify(w) for w in words]
    nw = len(words)
    gaps = list(gaps) if gaps is not None else None
    rep = CycleReport(step_done=[[] for _ in range(n)], sweep_start=[[] for _ in range(n)],
                      sample_done=[], accepted=[], start=start, blocked=[0] * n)
    new_sample = True
    am_busy = False
    am_i = 0
    wi = 0
    offer_at = start + (gaps[0] if gaps else 0)
    waiting_idle = False
    t = start
    end_t = start + max_cycles
    n_samples = sum(1 for w in words if w[0] == END_SAMPLE)
    while len(rep.sample_done) < n_samples or wi < nw:
        if t >= end_t:
            raise RuntimeError("cycle model: no progress (max_cycles reached)")
        # ---------------------------------------------------------- combinational
        idle = all(not ly.busy() for ly in layers) and all(f.level() == 0 for f in fifos)
        if waiting_idle and idle:
            waiting_idle = False
            rep.idle_after_step.append(t)
            offer_at = t + 1 + sync_cycles + (gaps[wi] if gaps else 0)
        src_valid = (not waiting_idle) and wi < nw and t >= offer_at
        src_item = items[wi] if src_valid else None
        if src_valid and new_sample:
            rep.sample_first.append(t)
            new_sample = False
        src_fire = src_valid and (src_item is None or fifos[0].w_rdy())

        outs = []   # per layer: (valid, item, ready)
        for i, ly in enumerate(layers):
            v = ly.out_valid()
            it = ly.out_item() if v else None
            if i == n - 1:
                rdy = not (am_busy and it is not None and it[0] == END_SAMPLE)
            else:
                rdy = fifos[i + 1].w_rdy()
            outs.append((v, it, rdy))
        hs = []
        for ly in layers:
            upd_ready = ly.phase == 0
            last = ly.it_kind != SPIKE or ly.it_rem == 1
            job_ready = (not ly.it_busy) or (upd_ready and last)
            b_ready = (not ly.b_valid) or job_ready
            inp_ready = (not ly.a_valid) or b_ready
            hs.append((upd_ready, last, job_ready, b_ready, inp_ready))

        # ---------------------------------------------------------- registers
        for i, f in enumerate(fifos):
            if i == 0:
                w_en, w_item = src_fire and src_item is not None, src_item
            else:
                v, it, _ = outs[i - 1]
                w_item = None
                if v:
                    kind = it[0]
                    w_item = (SPIKE, int(layers[i].work[it[1], it[2], it[3]])) \
                        if kind == SPIKE else (kind, 0)
                w_en = v
            if w_en and not f.w_rdy():
                rep.blocked[i] += 1
            f_out_valid = f.out_valid
            f_out_item = f.out_item
            f.update(w_en, w_item, hs[i][4])
            hs[i] = hs[i] + (f_out_valid, f_out_item)
        for i, ly in enumerate(layers):
            upd_ready, last, job_ready, b_ready, inp_ready, in_valid, in_item = hs[i]
            out_v, out_it, out_rdy = outs[i]
            # iterator
            upd_fire = ly.it_busy and upd_ready
            upd_kind = ly.it_kind
            if ly.b_valid and job_ready:
                ly.it_busy = True
                ly.it_kind = ly.b_item[0]
                ly.it_rem = ly.b_item[1] if ly.b_item[0] == SPIKE else 1
            elif ly.it_busy and upd_ready:
                if last:
                    ly.it_busy = False
                else:
                    ly.it_rem -= 1
            # stage B
            if ly.a_valid and b_ready:
                ly.b_valid = ly.a_item[0] != SPIKE or ly.a_item[1] != 0
                ly.b_item = ly.a_item
            elif job_ready:
                ly.b_valid = False
            # stage A
            if in_valid and inp_ready:
                ly.a_valid = True
                ly.a_item = in_item
            elif b_ready:
                ly.a_valid = False
            # core
            ph = ly.phase
            if ph == 0:
                if upd_fire and upd_kind == END_STEP:
                    ly.phase = 1
                    ly.tok_kind = END_STEP
                    ly.sw_active = True
                    ly.sw_a = 0
                    rep.sweep_start[i].append(t)
                elif upd_fire and upd_kind == END_SAMPLE:
                    ly.phase = 2
                    ly.tok_kind = END_SAMPLE
                    ly.clr = 0
            elif ph == 1:
                pv, pa = ly.pv, ly.pa
                m5 = ly.mask5
                single = (m5 & (m5 - 1)) == 0
                adv = (not pv[4]) or (single and (m5 == 0 or out_rdy))
                if not (ly.sw_active or any(pv)):
                    ly.phase = 3
                if adv:
                    new5 = ly.masks[ly.step].get(pa[3], 0) if pv[3] else 0
                    ly.pv = [ly.sw_active] + pv[:4]
                    ly.pa = [ly.sw_a] + pa[:4]
                    ly.mask5 = new5
                    if ly.sw_active:
                        if ly.sw_a == ly.D - 1:
                            ly.sw_active = False
                        ly.sw_a += 1
                elif out_v and out_rdy:
                    ly.mask5 = m5 & (m5 - 1)
            elif ph == 2:
                if ly.clr == ly.D - 1:
                    ly.phase = 3
                ly.clr += 1
            else:
                if out_rdy:
                    ly.phase = 0
                    if ly.tok_kind == END_STEP:
                        rep.step_done[i].append(t)
                        ly.step += 1
                    else:
                        ly.step = 0
        # readout
        v, it, rdy = outs[-1]
        if v and rdy and it[0] == END_SAMPLE:
            am_busy = True
            am_i = 1
        elif am_busy:
            if am_i < nc:
                am_i += 1
            else:
                am_busy = False
                rep.sample_done.append(t)
        # source
        if src_fire:
            rep.accepted.append(t)
            kind = words[wi][0]
            wi += 1
            if kind == END_SAMPLE:
                new_sample = True
            if sync_cycles is not None and kind == END_STEP:
                waiting_idle = True
            elif wi < nw:
                offer_at = t + 1 + (gaps[wi] if gaps else 0)
        t += 1
    rep.end = rep.sample_done[-1] if rep.sample_done else t
    return rep
