"""Layer engine: synapse engine (conv / linear / pool) + weight ROM + neuron core.

Data flow::

    inp (events of in_shape) -> engine -> updates (sa, wa) -> core.upd
                                              wa -> weight ROM (registered read) -> core.wdata
    core.out (spikes of out_shape, then the token) -> out

The weight ROM holds one word of ``L`` lane weights per address (see :func:`lane_rom`);
it is re-packed per lane from the model's weights (the exchange image
``<layer>.weights.hex`` of the model directory is the ``L = C_out`` case of this layout).

Throughput: one update of ``L`` lanes per cycle while accumulating; the sweep is
``L`` neurons per cycle (see :mod:`hw.neuron` for the exact cycle counts). While the core
sweeps it does not take updates, so the engine and the FIFO in front of the layer
hold the events of the next step.
"""

import numpy as np

from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim.geometry import default_lanes, lane_groups, shape3

from .conv import ConvEngine
from .linear import LinearEngine
from .neuron import NeuronCore
from .pool import SumPoolEngine, pool_weights
from .stream import event_signature

__all__ = ["LayerEngine", "lane_rom"]


def lane_rom(layer, lanes):
    """The weight ROM of ``layer`` for ``L = lanes``.

    Returns
    -------
    words : list of list of int
        ``words[base*G + g][j] = w[g*L + j, base]`` (0 for padding lanes), with
        ``base = (c*K + ky)*K + kx`` (conv, pool) or the input index (linear).
    wbits : int
        Lane width.
    """
    C = shape3(layer.out_shape)[0]
    G = lane_groups(C, lanes)
    if layer.type == "sumpool2d":
        w = pool_weights(layer.in_shape[0], layer.kernel)
        wbits = 2
    else:
        w = layer.weights.astype(np.int64)
        wbits = layer.weight_bits
    cols = w.reshape(C, -1).T                       # (base, C_out)
    pad = np.zeros((cols.shape[0], G * lanes), dtype=np.int64)
    pad[:, :C] = cols
    words = pad.reshape(cols.shape[0] * G, lanes).tolist()
    return words, wbits


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
        Shape of the incoming events (the previous layer's output or the network input);
        differs from ``layer.in_shape`` for a linear layer after a spatial one (the
        flatten ``i = (c*H + y)*W + x`` happens in the engine).

    Attributes
    ----------
    inp : In(event stream of ``in_shape``)
    out : Out(event stream of ``out_shape``)
    busy : Out(1)
        Something is in the engine or the core is not in its accumulate phase.
    step_done, sample_done, ovf_step : Out(1)
        From the core (strobes on the token transfer; ``ovf_step`` holds the flag of the
        last swept step).
    rb_addr, rb_data : readback of the state RAM while not busy (one cycle latency).
    tap_valid, tap_addr, tap_u : membrane tap of the core.
    """
    def __init__(self, layer, lanes=None, *, fire=True, in_shape=None, sweep="dense"):
        self.layer = layer
        self.in_shape = tuple(in_shape) if in_shape is not None else tuple(layer.in_shape)
        self.L = default_lanes(layer.out_shape) if lanes is None else lanes
        self.fire = fire
        self.rom_words, self.wbits = lane_rom(layer, self.L)     # checks L >= 1
        self.core = NeuronCore(layer, self.L, wbits=self.wbits, fire=fire, sweep=sweep)
        self.G, self.D = self.core.G, self.core.D
        super().__init__({
            "inp": In(event_signature(self.in_shape)),
            "out": Out(event_signature(layer.out_shape)),
            "busy": Out(1),
            # status, readback and membrane tap: the core's own ports, passed through
            **{name: self.core.signature.members[name] for name in NeuronCore.STATUS_PORTS},
        })

    def elaborate(self, platform):
        m = Module()
        layer = self.layer
        if layer.type == "conv2d":
            eng = ConvEngine(layer.in_shape, layer.out_shape, layer.kernel, layer.stride,
                             layer.padding, self.G)
        elif layer.type == "sumpool2d":
            eng = SumPoolEngine(layer.in_shape, layer.out_shape, layer.kernel, self.G)
        else:
            eng = LinearEngine(self.in_shape, self.G)
        m.submodules.engine = eng
        m.submodules.core = core = self.core
        rom = m.submodules.rom = Memory(shape=data.ArrayLayout(signed(self.wbits), self.L),
                                        depth=len(self.rom_words), init=self.rom_words)
        rp = rom.read_port()

        wiring.connect(m, wiring.flipped(self.inp), eng.inp)
        wiring.connect(m, wiring.flipped(self.out), core.out)
        m.d.comb += [
            core.upd.valid.eq(eng.out.valid),
            core.upd.payload.kind.eq(eng.out.payload.kind),
            core.upd.payload.sa.eq(eng.out.payload.sa),
            eng.out.ready.eq(core.upd.ready),
            rp.addr.eq(eng.out.payload.wa),
            rp.en.eq(1),
            core.wdata.eq(rp.data),
            core.rb_addr.eq(self.rb_addr),
            self.rb_data.eq(core.rb_data),
            self.step_done.eq(core.step_done),
            self.sample_done.eq(core.sample_done),
            self.ovf_step.eq(core.ovf_step),
            self.tap_valid.eq(core.tap_valid),
            self.tap_addr.eq(core.tap_addr),
            self.tap_u.eq(core.tap_u),
            self.busy.eq(eng.busy | ~core.idle),
        ]
        return m
