"""Layer engine: the synapse units of a layer, their join and the neuron core.

Data flow::

    inp  (events of synapse 0's source) -> SynapseUnit 0 --+
    inp1 (events of synapse 1's source) -> SynapseUnit 1 --+-> Join -> NeuronCore -> out
    ...                                                    |   (upd + wdata)
                                                           +

Each :class:`~hw.synapse_unit.SynapseUnit` is the engine of its synapse's kind and its
weight ROM (:func:`lane_rom`: one word of ``L`` lane weights per address, re-packed per
lane from the model's weights; the exchange image ``<layer>.weights.hex`` of the model
directory is the ``L = C_out`` case of this layout). The :class:`~hw.join.Join` merges the
units' update streams (fixed priority, tokens merged per step) and muxes their weight
words, sign-extended to the widest, into the core. With one synapse the join is a wire:
the layer is exactly the engine + ROM + core of a chain.

Throughput: one update of ``L`` lanes per cycle while accumulating (from one unit at a
time); the sweep is ``L`` neurons per cycle (see :mod:`hw.neuron` for the exact cycle
counts). While the core sweeps it does not take updates, so the engines and the FIFOs
in front of the layer hold the events of the next step.

Banks (``banks = B > 1``, a layer with one same-step conv or pool synapse:
:func:`sim.geometry.banks_of`)::

    inp -> Fork(B) -> SynapseUnit(bank b) -> NeuronCore(bank b) -> x = x_b*B + b --+
                      ... one per bank ...                                         +-> Merge -> out

Bank ``b`` owns the output columns ``x = b, b + B, ...`` (its core is the layer's core
over ``(C, Ho, W_b)``, :func:`sim.geometry.bank_layer`); every bank takes every event and
issues only its columns of the window, so a window of ``n`` columns costs ``ceil(n/B)`` cycles per
row in each bank, the banks working side by side, and each bank sweeps only its own
words. The :class:`~hw.merge.Merge` passes their spikes (fixed priority) and each token
once every bank has sent it. Readback addresses are bank-major: word ``a`` of bank ``b``
at ``b*stride + a`` (:attr:`LayerEngine.bank_stride`, a power of two).
"""


import numpy as np

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from sim.geometry import END_SAMPLE, END_STEP, SPIKE, bank_layer, default_lanes, shape3

from .fork import Fork
from .join import Join
from .merge import Merge
from .neuron import NeuronCore
from .stream import event_signature, synapse_input_signature
from .synapse_unit import SynapseUnit, engine_class

__all__ = ["LayerEngine", "lane_rom", "is_replayed"]


def is_replayed(syn):
    """A synapse whose events come from a delay line (delay ``d > 0`` or ``D > 1``
    taps): a replay input of its layer's join."""
    return syn.delay != 0 or syn.taps != 1


def lane_rom(layer, lanes, syn=None, src_shape=None):
    """The weight ROM of synapse ``syn`` (default: the layer's only synapse) of
    ``layer`` for ``L = lanes``.

    Returns
    -------
    words : list of list of int
        ``words[base*G + g][j] = w[g*L + j, base]`` (0 for padding lanes), with
        ``base = (c*K + ky)*K + kx`` (conv, pool) or the input index (linear); a
        synapse with ``D`` taps: the ``D`` images one after another (tap-major).
    wbits : int
        Lane width.
    """
    syn = layer.synapse if syn is None else syn
    src_shape = syn.in_shape if src_shape is None else src_shape
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes: {lanes!r} must be a positive integer")
    return engine_class(syn).lane_rom(syn, tuple(src_shape), tuple(layer.out_shape), lanes)


class LayerEngine(wiring.Component):
    """One layer of the network (see the module docstring).

    Parameters
    ----------
    layer : sim.model.Layer
    lanes : int, optional
        ``L >= 1``; ``None``: :func:`sim.geometry.default_lanes` of the output shape.
    fire : bool
        ``False`` for the output layer of a membrane readout.
    sweep : str
        The core's sweep, ``"dense"`` or ``"sparse"`` (:class:`hw.neuron.NeuronCore`).
    in_shape : tuple, optional
        For a layer with one synapse: the shape of its incoming events (the source
        layer's output or the network input); differs from ``layer.in_shape`` for a
        linear layer after a spatial one (the flatten ``i = (c*H + y)*W + x`` happens in
        the engine).
    in_shapes : sequence of tuple, optional
        The same for every synapse (in the layer's synapse order); default: each
        synapse's ``in_shape``.
    replayed : sequence of int
        The synapses fed by a delay line (in a network: those for which
        :func:`is_replayed` holds): replay inputs of the join, their streams carry
        spikes and ``END_STEP`` only, on ``go``. The others (default: all) are live: their
        streams carry every token.
    token_shape : tuple, optional
        For a layer whose synapses are all replayed: the shape of the event stream its
        token feed comes from (the network input's); its spikes are ignored, its tokens
        are the layer's live input.
    banks : int
        ``B >= 1`` neuron cores over interleaved output columns (see the module
        docstring); ``B > 1`` only for a layer with one same-step synapse whose engine
        has banks (checked by :func:`sim.geometry.banks_of` in a network).

    Attributes
    ----------
    inp : In(event stream of synapse 0's source shape)
    inp1, inp2, ... : In(event stream of synapse ``j``'s source shape)
        One input per further synapse (:attr:`inputs` lists them all in order). The input
        of a synapse with taps or a delay has a ``tap`` field
        (:func:`hw.stream.synapse_input_signature`).
    tokens : In(event stream of ``token_shape``)
        Only on a layer without a live synapse: its token feed (spikes are not written
        there; see :mod:`hw.network`).
    out : Out(event stream of ``out_shape``)
    go, sample_end : Out(1)
        The join's strobes to the delay lines of the replayed synapses.
    busy : Out(1)
        Something is in an engine, the join holds a token, or the core is not in its
        accumulate phase.
    step_done, sample_done, ovf_step : Out(1)
        From the core (strobes on the token transfer; ``ovf_step`` holds the flag of the
        last swept step).
    rb_addr, rb_data : readback of the state RAM while not busy (one cycle latency).
    tap_valid, tap_addr, tap_u : membrane tap of the core.
    units : list of SynapseUnit
        One per synapse (per bank in a banked layer).
    join : Join
    core : NeuronCore
        The core (bank 0's in a banked layer).
    cores : list of NeuronCore
        Every core (one per bank).
    D : int
        Readback addresses (``B * bank_stride`` in a banked layer).
    """
    def __init__(self, layer, lanes=None, *, fire=True, in_shape=None, in_shapes=None,
                 token_shape=None, replayed=(), sweep="dense", banks=1):
        self.layer = layer
        syns = layer.synapses
        if in_shapes is None:
            in_shapes = [in_shape if in_shape is not None and j == 0 else s.in_shape
                         for j, s in enumerate(syns)]
        if len(in_shapes) != len(syns):
            raise ValueError(f"layer {layer.name!r}: {len(in_shapes)} input shapes for "
                             f"{len(syns)} synapses")
        self.in_shapes = [tuple(s) for s in in_shapes]
        self.in_shape = self.in_shapes[0]
        self.L = default_lanes(layer.out_shape) if lanes is None else lanes
        self.fire = fire
        if self.L < 1:
            raise ValueError(f"lanes: {self.L!r} must be a positive integer")
        self.banks = banks
        if banks != 1:
            self._init_banks(layer, syns, fire, sweep, replayed)
            return
        self.units = [SynapseUnit(syn, layer.out_shape, self.L, src_shape=shape)
                      for syn, shape in zip(syns, self.in_shapes)]
        wbits = [u.wbits for u in self.units]
        self.wbits = max(wbits)
        self.rom_words = self.units[0].rom_words
        self.core = NeuronCore(layer, self.L, wbits=self.wbits, fire=fire, sweep=sweep)
        self.cores = [self.core]
        self.G, self.D = self.core.G, self.core.D
        self.bank_stride = self.D
        # the join's inputs: the token feed, the live synapses, then the replayed ones
        self.replayed = sorted(set(replayed))
        live = [j for j in range(len(syns)) if j not in self.replayed]
        self.token_feed = not live
        if self.token_feed and token_shape is None:
            raise ValueError(f"layer {layer.name!r}: every synapse is delayed; the layer "
                             f"needs a token feed (token_shape)")
        self.join_order = ([None] if self.token_feed else []) + live + self.replayed
        self.join = Join(len(self.join_order) - len(self.replayed), len(self.replayed),
                         depth=self.D, lanes=self.L,
                         wbits=[1 if j is None else wbits[j] for j in self.join_order])
        super().__init__({
            **{self.input_name(j): In(synapse_input_signature(shape, syn.taps, syn.delay))
               for j, (syn, shape) in enumerate(zip(syns, self.in_shapes))},
            **({"tokens": In(event_signature(token_shape))} if self.token_feed else {}),
            "go": Out(1),
            "sample_end": Out(1),
            "out": Out(event_signature(layer.out_shape)),
            "busy": Out(1),
            # status, readback and membrane tap: the core's own ports, passed through
            **{name: self.core.signature.members[name] for name in NeuronCore.STATUS_PORTS},
        })

    def _init_banks(self, layer, syns, fire, sweep, replayed):
        B, L = self.banks, self.L
        if isinstance(B, bool) or not isinstance(B, int) or B < 1:
            raise ValueError(f"layer {layer.name!r}: banks {B!r} must be a positive integer")
        if len(syns) != 1 or replayed or not fire:
            raise ValueError(f"layer {layer.name!r}: banks need one same-step synapse and a "
                             f"firing core")
        syn = syns[0]
        self.units = [SynapseUnit(syn, layer.out_shape, L, src_shape=self.in_shape,
                                  bank=(b, B)) for b in range(B)]
        self.wbits = self.units[0].wbits
        self.rom_words = self.units[0].rom_words
        self.cores = [NeuronCore(bank_layer(layer, b, B), L, wbits=self.wbits, fire=fire,
                                 sweep=sweep) for b in range(B)]
        self.core = self.cores[0]
        self.G = self.core.G
        self.bank_stride = 1 << bits_for(max(c.D for c in self.cores) - 1)
        self.D = B * self.bank_stride
        self.replayed, self.token_feed, self.join_order = [], False, [0]
        self.joins = [Join(1, 0, depth=c.D, lanes=L, wbits=[self.wbits]) for c in self.cores]
        self.join = self.joins[0]
        self.fork = Fork(B, self.in_shape)
        self.merge = Merge(B, layer.out_shape)
        core = self.core
        super().__init__({
            "inp": In(synapse_input_signature(self.in_shape, syn.taps, syn.delay)),
            "go": Out(1),
            "sample_end": Out(1),
            "out": Out(event_signature(layer.out_shape)),
            "busy": Out(1),
            "step_done": Out(1),
            "sample_done": Out(1),
            "ovf_step": Out(1),
            "rb_addr": In(range(self.D)),
            "rb_data": Out(core.signature.members["rb_data"].shape),
            "tap_valid": Out(1),
            "tap_addr": Out(core.signature.members["tap_addr"].shape),
            "tap_u": Out(core.signature.members["tap_u"].shape),
        })

    def gather_states(self, per_core):
        """The layer's flat states (``(C, Ho, Wo)`` order) from each core's flat states
        (``(C, Ho, W_b)`` order, as :class:`~hw.neuron.NeuronCore` words give them)."""
        if self.banks == 1:
            return np.asarray(per_core[0]).reshape(-1)
        C, Ho, Wo = shape3(self.layer.out_shape)
        full = np.zeros((C, Ho, Wo), dtype=np.int64)
        for b, (core, st) in enumerate(zip(self.cores, per_core)):
            full[:, :, b::self.banks] = np.asarray(st).reshape(C, Ho, core.Wo)
        return full.reshape(-1)

    def _elaborate_banks(self, m):
        B = self.banks
        m.submodules.fork = fork = self.fork
        m.submodules.merge = merge = self.merge
        wiring.connect(m, wiring.flipped(self.inp), fork.inp)
        busy = 0
        for s in fork.sent:
            busy = busy | s
        ovf = 0
        rb_sel = Signal(range(B))
        m.d.sync += rb_sel.eq(self.rb_addr >> (self.bank_stride.bit_length() - 1))
        for b, (unit, join, core) in enumerate(zip(self.units, self.joins, self.cores)):
            m.submodules[f"unit{b}"] = unit
            m.submodules[f"join{b}"] = join
            m.submodules[f"core{b}"] = core
            wiring.connect(m, fork.out[b], unit.inp)
            m.d.comb += [join.inp[0].valid.eq(unit.out.valid),
                         join.inp[0].payload.kind.eq(unit.out.payload.kind),
                         join.inp[0].payload.sa.eq(unit.out.payload.sa),
                         unit.out.ready.eq(join.inp[0].ready),
                         join.rom_data[0].eq(unit.rom_data)]
            wiring.connect(m, join.out, core.upd)
            m.d.comb += core.wdata.eq(join.wdata)
            # the bank's column x_b is column x_b*B + b of the layer (tokens keep x = 0)
            mi, co = merge.inp[b], core.out
            spike = co.payload.kind == SPIKE
            m.d.comb += [mi.valid.eq(co.valid), co.ready.eq(mi.ready),
                         mi.payload.kind.eq(co.payload.kind), mi.payload.c.eq(co.payload.c),
                         mi.payload.y.eq(co.payload.y),
                         mi.payload.x.eq(Mux(spike, co.payload.x * B + b, co.payload.x))]
            m.d.comb += core.rb_addr.eq(self.rb_addr[:len(core.rb_addr)])
            with m.If(rb_sel == b):
                m.d.comb += self.rb_data.eq(core.rb_data)
            ovf = ovf | core.ovf_step
            busy = busy | unit.busy | join.busy | ~core.idle
        wiring.connect(m, merge.out, wiring.flipped(self.out))
        take = self.out.valid & self.out.ready
        m.d.comb += [self.step_done.eq(take & (self.out.payload.kind == END_STEP)),
                     self.sample_done.eq(take & (self.out.payload.kind == END_SAMPLE)),
                     self.ovf_step.eq(ovf), self.busy.eq(busy)]
        return m

    @staticmethod
    def input_name(j):
        """The port of synapse ``j``: ``inp``, ``inp1``, ``inp2``, ..."""
        return "inp" if j == 0 else f"inp{j}"

    @property
    def inputs(self):
        """The input ports, one per synapse, in synapse order."""
        return [getattr(self, self.input_name(j)) for j in range(len(self.layer.synapses))]

    def elaborate(self, platform):
        m = Module()
        if self.banks != 1:
            return self._elaborate_banks(m)
        join, core = self.join, self.core
        busy = 0
        for j, (unit, inp) in enumerate(zip(self.units, self.inputs)):
            m.submodules[f"unit{j}"] = unit
            wiring.connect(m, wiring.flipped(inp), unit.inp)
            busy = busy | unit.busy
        for k, j in enumerate(self.join_order):
            if j is None:                    # the token feed: tokens only, no weights
                m.d.comb += [join.inp[k].valid.eq(self.tokens.valid),
                             join.inp[k].payload.kind.eq(self.tokens.payload.kind),
                             self.tokens.ready.eq(join.inp[k].ready)]
                continue
            unit = self.units[j]
            m.d.comb += [
                join.inp[k].valid.eq(unit.out.valid),
                join.inp[k].payload.kind.eq(unit.out.payload.kind),
                join.inp[k].payload.sa.eq(unit.out.payload.sa),
                unit.out.ready.eq(join.inp[k].ready),
                join.rom_data[k].eq(unit.rom_data),
            ]
        m.d.comb += [self.go.eq(join.go), self.sample_end.eq(join.sample_end)]
        m.submodules.join = join
        m.submodules.core = core
        wiring.connect(m, join.out, core.upd)
        wiring.connect(m, wiring.flipped(self.out), core.out)
        m.d.comb += [
            core.wdata.eq(join.wdata),
            core.rb_addr.eq(self.rb_addr),
            self.rb_data.eq(core.rb_data),
            self.step_done.eq(core.step_done),
            self.sample_done.eq(core.sample_done),
            self.ovf_step.eq(core.ovf_step),
            self.tap_valid.eq(core.tap_valid),
            self.tap_addr.eq(core.tap_addr),
            self.tap_u.eq(core.tap_u),
            self.busy.eq(busy | join.busy | ~core.idle),
        ]
        return m
