"""Network top: input checker, the graph of layer engines joined by forks, FIFOs and
delay lines, readout and status.

Data flow (any version-2 model; a chain is the case with one synapse per layer, from
the layer before)::

    inp (kind, p, y, x) -> range check (drop + sticky error + counter)
        -> Fork(input) -> FIFO -> layer a, synapse j        (a same-step synapse)
                       -> DelayLine -> layer a, synapse j   (delay d > 0 or D > 1 taps)
                       -> FIFO (tokens only) -> layer a     (token feed, below)
    layer a -> Fork(a) -> FIFO / DelayLine -> layer b, synapse j   (b > a, or any b
                                                                    through a delay line)
                       -> readout                                  (the last layer's fork)

Every synapse has its own FIFO (same step: delay 0, one tap) or :class:`~hw.delay.DelayLine`
(delay, taps, and so every recurrent synapse) in front of its synapse unit
(:mod:`hw.layer`: units, join, core); a delay line takes ``go`` and ``sample_end`` from
its layer's join. A layer without a same-step synapse gets its step tokens from the
input: a FIFO that the input fork writes with tokens only (spikes are taken and
dropped) is its join's live input. A fork (:mod:`hw.fork`) with one output is a wire, so
a chain is input -> FIFO -> layer 0 -> FIFO -> layer 1 -> ... -> readout as before
graphs. A layer whose spikes nobody reads (not the last) has its ``out.ready`` tied high.

Input
    ``inp`` accepts one word per cycle when the first FIFO has room. A spike whose
    ``p``, ``y`` or ``x`` is outside the model's input shape (or a word of unknown kind)
    is accepted and dropped: ``range_error`` goes high and stays high (until ``clear``),
    ``dropped`` counts it. A count ``c`` at one source is sent as ``c`` spikes. A step
    ends with an :data:`~hw.stream.END_STEP` token, a sample with an
    :data:`~hw.stream.END_SAMPLE` token (which also resets every state to 0).

Readout
    ``spike_count``: per class a counter of the last layer's spikes; ``membrane``: the
    clamped ``u`` (before leak) of the last layer's last sweep. When the end-of-sample
    token leaves the last layer the live values are copied into ``scores`` and an
    arg-max runs over them (one class per cycle, ties to the lowest index); then
    ``prediction`` is set, ``done`` strobes for one cycle, ``result_valid`` stays high
    and ``samples`` counts up. The readout never back-pressures, except that an
    end-of-sample token waits while a previous arg-max is still running.

Status (all registered unless noted)
    ``cycle``: free-running cycle counter. ``steps``: steps finished by the last layer.
    Per layer ``i``: ``step_done[i]`` (strobe, combinational: the layer's end-of-step token
    transfers in this cycle), ``step_index[i]`` (index ``k`` of the step that finishes
    at the strobe; steps counted from the last end-of-sample), ``step_cycle[i]`` (value of
    ``cycle`` at the last strobe: "the cycle at which layer i finished step k"),
    ``ovf_step[i]`` (overflow flag of the last finished step, valid from its strobe
    on), ``ovf_sticky[i]``. ``clear`` resets the sticky flags and ``dropped``.
    ``idle``: nothing is in flight anywhere (no FIFO, engine, join, core or delay line
    busy; a delay line's stored history does not count).

Step log
    Per layer a small RAM of ``T`` words records ``cycle`` at each ``step_done`` strobe at
    address ``step_index``: put a layer on ``log_layer`` and a step on ``log_step``;
    ``log_cycle`` holds "the cycle at which that layer finished that step of the current
    (or last) sample" one cycle later.

Readback
    While ``idle``: put a layer on ``rb_layer`` and a state-RAM word address on
    ``rb_addr``; ``rb_data`` holds that word (``L`` lanes of ``acc_bits``, lane 0 in the
    low bits) in the next cycle. A banked layer's words are bank-major (:mod:`hw.layer`).

Throughput: each layer runs as described in :mod:`hw.layer`; the FIFOs
(:class:`amaranth.lib.fifo.SyncFIFOBuffered`, ``fifo_depth`` words) move one word per
cycle with a write-to-read latency of 2 cycles; a fork passes a word in the cycle in
which its last consumer takes it (:mod:`hw.fork`).
"""

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from sim.geometry import END_SAMPLE, KIND_BITS, SPIKE, banks_of, lanes_of, shape3
from sim.liveness import SWEEPS
from sim.model import INPUT, Model, ModelError, load_model
from sim.registry import KINDS

from .fork import Fork
from .delay import DelayLine
from .layer import LayerEngine, is_replayed
from .stream import input_signature

__all__ = ["Network", "hw_problem"]


def hw_problem(model):
    """What the generator cannot build in ``model`` yet (``None``: it can build it),
    naming the layer and synapse.

    Built: any graph (forks, residual joins, delays, taps, recurrence) of the synapse
    kinds that have a hardware engine, with any neurons (multi-spike, ``v_min``,
    current-based). Not: a kind without an engine, a model in which no synapse reads
    the input.
    """
    if not any(model.source_of(i, syn) == INPUT
               for i, layer in enumerate(model.layers) for syn in layer.synapses):
        return "no synapse reads the input"
    for i, layer in enumerate(model.layers):
        name = layer.name
        for j, syn in enumerate(layer.synapses):
            at = f"layer {name!r} synapse {j} (from {model.source_of(i, syn)!r})"
            if not KINDS[syn.type].has_part("hw.engine"):
                return f"{at} is {syn.type}: no hardware engine for that kind yet"
    return None


def _checked(model, lanes, fifo_depth, sweep="sparse", banks=None):
    """The model (loaded when a path is given), the lanes and the banks of every layer,
    or an error: a model the generator cannot build yet (:func:`hw_problem`), a bad
    ``fifo_depth``, bad lanes or banks."""
    if not isinstance(model, Model):
        model = load_model(model)
    problem = hw_problem(model)
    if problem is not None:
        where = f"{model.path}/model.json" if model.path is not None else "model"
        raise ModelError(f"{where}: {problem}")
    if isinstance(fifo_depth, bool) or not isinstance(fifo_depth, int) or fifo_depth < 2:
        raise ValueError(f"fifo_depth: {fifo_depth!r} must be an integer >= 2")
    if sweep not in SWEEPS:
        raise ValueError(f"sweep: {sweep!r} is not one of {', '.join(SWEEPS)}")
    return model, lanes_of(model, lanes), banks_of(model, banks)


class Network(wiring.Component):
    """The accelerator for one model (see the module docstring).

    Parameters
    ----------
    model : sim.model.Model or path
        The model (or a model directory).
    lanes : int, sequence or dict, optional
        Lanes per layer, each ``>= 1``: one int for all, a list in layer order or
        ``{name: L}``; missing or ``None`` entries use
        :func:`sim.geometry.default_lanes` (the rule is :func:`sim.geometry.lanes_of`).
    fifo_depth : int
        Depth of every FIFO (the input FIFO and one in front of every later layer).
    coord_bits : int
        Width of ``p``, ``y``, ``x`` at the input.
    cycle_bits : int
        Width of the cycle counter and the cycle stamps.
    sweep : str
        ``"sparse"`` (default): every layer that :func:`sim.liveness.sparse_ok` allows
        sweeps only its listed state words (:mod:`hw.livelist`); ``"dense"``: every layer
        sweeps every word every step (the design before issue 15).
    banks : int, sequence or dict, optional
        Neuron cores per layer over interleaved output columns (:mod:`hw.layer`,
        "Banks"); the rule is :func:`sim.geometry.banks_of`. Default 1 everywhere.

    Attributes
    ----------
    inp : In(stream of :class:`~hw.stream.InputLayout`)
    done, result_valid : Out(1)
    prediction : Out(range(n_classes))
    scores : Out(ArrayLayout(score shape, n_classes))
    samples, steps, dropped : Out(32)
    cycle : Out(cycle_bits)
    range_error, idle : Out(1)
    clear : In(1)
    step_done, ovf_step, ovf_sticky : Out(ArrayLayout(1, n_layers))
    step_index : Out(ArrayLayout(16, n_layers))
    step_cycle : Out(ArrayLayout(cycle_bits, n_layers))
    log_layer, log_step : In; log_cycle : Out(cycle_bits)
    rb_layer, rb_addr : In; rb_data : Out(widest state word)
    """
    def __new__(cls, model, *, lanes=None, fifo_depth=16, sweep="sparse", banks=None,
                src_loc_at=0, **kwargs):
        # Checked before the object exists, so that a refused design is not left behind
        # for Amaranth to warn about as "created but never used" (as boards.uart does).
        checked = _checked(model, lanes, fifo_depth, sweep, banks)
        self = super().__new__(cls, src_loc_at=1 + src_loc_at)
        self._checked = checked
        return self

    def __init__(self, model, *, lanes=None, fifo_depth=16, coord_bits=16, cycle_bits=32,
                 sweep="sparse", banks=None):
        model, lanes, banks = self._checked
        self.banks = banks
        self.model = model
        self.sweep = sweep
        self.fifo_depth = fifo_depth
        self.coord_bits = coord_bits
        self.cycle_bits = cycle_bits
        n = len(model.layers)
        membrane = model.readout == "membrane"
        self.layers = []
        #: per source (``"input"`` or a layer name): its consumers ``(layer, synapse)``
        self.consumers = {INPUT: []}
        for layer in model.layers:
            self.consumers[layer.name] = []
        #: per replayed synapse ``(layer, synapse)``: its delay line
        self.delay_lines = {}
        for i, layer in enumerate(model.layers):
            shapes = []
            for j, syn in enumerate(layer.synapses):
                src = model.source_of(i, syn)
                self.consumers[src].append((i, j))
                shapes.append(model.source_shape(src))
                if is_replayed(syn):
                    self.delay_lines[i, j] = DelayLine(model.source_shape(src), syn.delay,
                                                       syn.taps, model.source_limit(src))
            engine = LayerEngine(layer, lanes[i], fire=not (membrane and i == n - 1),
                                 in_shapes=shapes, token_shape=tuple(model.input.shape),
                                 replayed=[j for j, syn in enumerate(layer.synapses)
                                           if is_replayed(syn)],
                                 sweep=sweep, banks=banks[i])
            if engine.token_feed:            # its tokens come from the input
                self.consumers[INPUT].append((i, None))
            self.layers.append(engine)
        last = model.layers[-1]
        self.n_classes = last.n_out
        if membrane:
            self.score_shape = signed(last.state_bits)
        else:
            # a neuron emits up to spike_limit spikes a step
            self.score_shape = unsigned(
                bits_for(max(1, model.input.timesteps * last.spike_limit)) + 1)
        rb_width = max(len(l.rb_data.as_value()) for l in self.layers)
        rb_depth = max(l.D for l in self.layers)
        super().__init__({
            "inp": In(input_signature(coord_bits)),
            "done": Out(1),
            "result_valid": Out(1),
            "prediction": Out(range(max(2, self.n_classes))),
            "scores": Out(data.ArrayLayout(self.score_shape, self.n_classes)),
            "samples": Out(32),
            "steps": Out(32),
            "dropped": Out(32),
            "cycle": Out(cycle_bits),
            "range_error": Out(1),
            "idle": Out(1),
            "clear": In(1),
            "step_done": Out(data.ArrayLayout(1, n)),
            "ovf_step": Out(data.ArrayLayout(1, n)),
            "ovf_sticky": Out(data.ArrayLayout(1, n)),
            "step_index": Out(data.ArrayLayout(16, n)),
            "step_cycle": Out(data.ArrayLayout(cycle_bits, n)),
            "log_layer": In(range(max(2, n))),
            "log_step": In(range(max(2, model.input.timesteps))),
            "log_cycle": Out(cycle_bits),
            "rb_layer": In(range(max(2, n))),
            "rb_addr": In(range(max(2, rb_depth))),
            "rb_data": Out(rb_width),
        })

    def elaborate(self, platform):
        m = Module()
        model = self.model
        n = len(self.layers)
        P, H, W = model.input.shape
        for i, l in enumerate(self.layers):
            m.submodules[f"layer{i}"] = l

        m.d.sync += self.cycle.eq(self.cycle + 1)

        # ------------------------------------------------------------- forks and FIFOs
        # in front of every synapse unit a FIFO (live synapse) or a delay line (replayed
        # synapse), written by its source's fork; a layer without a live synapse has a
        # FIFO of the input's tokens (its token feed)
        fifos = []
        sink_of = {}                         # (layer, synapse or None) -> FIFO or delay line
        for i, l in enumerate(self.layers):
            ports = list(enumerate(l.inputs)) + ([(None, l.tokens)] if l.token_feed else [])
            for j, inp in ports:
                if (i, j) in self.delay_lines:
                    dl = sink_of[i, j] = self.delay_lines[i, j]
                    m.submodules[f"delay{i}_{j}"] = dl
                    m.d.comb += [inp.valid.eq(dl.out.valid), dl.out.ready.eq(inp.ready),
                                 dl.go.eq(l.go), dl.sample_end.eq(l.sample_end)]
                    m.d.comb += [getattr(inp.payload, name).eq(getattr(dl.out.payload, name))
                                 for name in ("kind", "c", "y", "x")]
                    if l.layer.synapses[j].taps > 1:
                        m.d.comb += inp.payload.tap.eq(dl.out.payload.tap)
                    continue
                width = len(inp.payload.as_value())
                f = sink_of[i, j] = SyncFIFOBuffered(width=width, depth=self.fifo_depth)
                name = f"fifo{i}" if j == 0 else f"fifo{i}_{'tokens' if j is None else j}"
                m.submodules[name] = f
                fifos.append(f)
                m.d.comb += [
                    inp.payload.as_value().eq(f.r_data),
                    inp.valid.eq(f.r_rdy),
                    f.r_en.eq(inp.ready),
                ]
        forks = {}
        readout_port = None
        for src in [INPUT] + [layer.name for layer in model.layers]:
            users = self.consumers[src]
            last = src == model.layers[-1].name
            n_out = len(users) + last
            if n_out == 0:                   # spikes nobody reads (checked: not the input)
                continue
            fork = forks[src] = Fork(n_out, model.source_shape(src))
            m.submodules["fork_input" if src == INPUT else f"fork{model.index(src)}"] = fork
            for k, (i, j) in enumerate(users):
                o, sink = fork.out[k], sink_of[i, j]
                if (i, j) in self.delay_lines:
                    wiring.connect(m, o, sink.inp)
                elif j is None:              # token feed: spikes are taken and dropped
                    spike = o.payload.kind == SPIKE
                    m.d.comb += [sink.w_data.eq(o.payload.as_value()),
                                 sink.w_en.eq(o.valid & ~spike),
                                 o.ready.eq(sink.w_rdy | spike)]
                else:
                    m.d.comb += [sink.w_data.eq(o.payload.as_value()),
                                 sink.w_en.eq(o.valid),
                                 o.ready.eq(sink.w_rdy)]
            if last:
                readout_port = fork.out[n_out - 1]
        for i, l in enumerate(self.layers):
            name = model.layers[i].name
            if name in forks:
                wiring.connect(m, l.out, forks[name].inp)
            else:
                m.d.comb += l.out.ready.eq(1)

        # ------------------------------------------------------------- input checker
        p = self.inp.payload
        is_spike = p.kind == SPIKE
        in_range = (p.p < P) & (p.y < H) & (p.x < W)
        bad = (is_spike & ~in_range) | (p.kind > END_SAMPLE)
        fin = forks[INPUT].inp
        word = Signal(fin.payload.shape())
        m.d.comb += [
            word.kind.eq(p.kind), word.c.eq(p.p), word.y.eq(p.y), word.x.eq(p.x),
            # a token keeps only its kind: coordinates 0
            fin.payload.as_value().eq(Mux(is_spike, word.as_value(),
                                          word.as_value() & ((1 << KIND_BITS) - 1))),
            fin.valid.eq(self.inp.valid & ~bad),
            self.inp.ready.eq(fin.ready | bad),
        ]
        with m.If(self.clear):
            m.d.sync += [self.range_error.eq(0), self.dropped.eq(0)]
        with m.Elif(self.inp.valid & bad):
            m.d.sync += [self.range_error.eq(1), self.dropped.eq(self.dropped + 1)]

        # ------------------------------------------------------------- status
        for i, l in enumerate(self.layers):
            m.d.comb += [self.step_done[i].eq(l.step_done), self.ovf_step[i].eq(l.ovf_step)]
            with m.If(l.step_done):
                m.d.sync += [self.step_index[i].eq(self.step_index[i] + 1),
                             self.step_cycle[i].eq(self.cycle)]
            with m.If(l.sample_done):
                m.d.sync += self.step_index[i].eq(0)
            with m.If(self.clear):
                m.d.sync += self.ovf_sticky[i].eq(0)
            with m.Elif(l.step_done & l.ovf_step):
                m.d.sync += self.ovf_sticky[i].eq(1)
        with m.If(self.layers[-1].step_done):
            m.d.sync += self.steps.eq(self.steps + 1)

        # step log: per layer, the cycle at which it finished step k of the current sample
        T = model.input.timesteps
        log_sel = Signal.like(self.log_layer)
        m.d.sync += log_sel.eq(self.log_layer)
        for i, l in enumerate(self.layers):
            log = Memory(shape=self.cycle_bits, depth=T, init=[])
            m.submodules[f"steplog{i}"] = log
            wp = log.write_port()
            rp = log.read_port()
            m.d.comb += [wp.addr.eq(self.step_index[i]), wp.data.eq(self.cycle),
                         wp.en.eq(l.step_done & (self.step_index[i] < T)),
                         rp.addr.eq(self.log_step)]
            with m.If(log_sel == i):
                m.d.comb += self.log_cycle.eq(rp.data)

        self.fifos = fifos
        idle = 1
        for l in self.layers:
            idle = idle & ~l.busy
        for dl in self.delay_lines.values():
            idle = idle & ~dl.busy
        for f in fifos:
            idle = idle & (f.level == 0)
        m.d.comb += self.idle.eq(idle)

        rb_sel = Signal.like(self.rb_layer)
        m.d.sync += rb_sel.eq(self.rb_layer)
        for i, l in enumerate(self.layers):
            m.d.comb += l.rb_addr.eq(self.rb_addr)
            with m.If(rb_sel == i):
                m.d.comb += self.rb_data.eq(l.rb_data.as_value())

        # ------------------------------------------------------------- readout
        last = self.layers[-1]
        lmodel = model.layers[-1]
        nc = self.n_classes
        live = [Signal(self.score_shape, name=f"live{c}") for c in range(nc)]
        am_busy = Signal()
        am_i = Signal(range(nc + 1))
        am_best = Signal(self.score_shape)
        am_arg = Signal(range(max(2, nc)))
        out = readout_port
        m.d.comb += out.ready.eq(~(am_busy & (out.payload.kind == END_SAMPLE)))
        take = out.valid & out.ready
        if model.readout == "spike_count":
            C, Ho, Wo = shape3(lmodel.out_shape)
            if Ho * Wo == 1:
                idx = out.payload.c
            else:
                idx = out.payload.c * (Ho * Wo) + out.payload.y * Wo + out.payload.x
            with m.If(take & (out.payload.kind == SPIKE)):
                with m.Switch(idx):
                    for c in range(nc):
                        with m.Case(c):
                            m.d.sync += live[c].eq(live[c] + 1)
        else:
            core = last.core
            HW = core.Ho * core.Wo
            for c in range(nc):
                ch, pos = divmod(c, HW)
                addr = pos * core.G + ch // core.L
                with m.If(last.tap_valid & (last.tap_addr == addr)):
                    m.d.sync += live[c].eq(last.tap_u[ch % core.L])
        scores = Array(self.scores[c] for c in range(nc))
        m.d.comb += self.done.eq(0)
        with m.If(take & (out.payload.kind == END_SAMPLE)):
            m.d.sync += [self.scores[c].eq(live[c]) for c in range(nc)]
            m.d.sync += [live[c].eq(0) for c in range(nc)]
            m.d.sync += [am_busy.eq(1), am_i.eq(1), am_arg.eq(0), am_best.eq(live[0])]
        with m.Elif(am_busy):
            cand = scores[am_i]
            with m.If(am_i < nc):
                with m.If(cand > am_best):
                    m.d.sync += [am_best.eq(cand), am_arg.eq(am_i)]
                m.d.sync += am_i.eq(am_i + 1)
            with m.Else():
                m.d.sync += [am_busy.eq(0), self.prediction.eq(am_arg),
                             self.result_valid.eq(1), self.samples.eq(self.samples + 1)]
                m.d.comb += self.done.eq(1)
        return m
