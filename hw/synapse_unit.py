"""Synapse unit: the address engine of one synapse and its weight ROM.

Data flow::

    inp (events of the source's shape) -> engine -> out (updates: kind, sa, wa)
                                                    wa -> weight ROM (registered read) -> rom_data

The engine and the ROM packing are the hardware parts of the synapse's kind, found
through the registry: ``KINDS[syn.type].part("hw.engine")`` builds the engine (a
:class:`~hw.synapse.SynapseEngine`) and ``KINDS[syn.type].part("hw.rom")`` packs one
tap's weights (both attached in the engine's module: :mod:`hw.conv`, :mod:`hw.linear`,
:mod:`hw.pool`, :mod:`hw.identity`); :func:`synapse_engine` and :func:`synapse_rom` name
no kind. The ROM holds one word of ``L`` lane weights per address (for conv, pool and
linear ``words[base*G + g][j] = w[g*L + j, base]``, the ``L = C_out`` case of which is the
exchange image ``<layer>.weights.hex`` of the model directory; identity: word ``c``
holds ``w[c]`` in lane ``c % L``). A synapse with ``D`` taps has one ROM with the ``D``
images one after another (tap-major, ``wa = tap*tap_depth + base_wa``), and its events
carry a ``tap`` field.

``rom_data`` is the ROM word at the ``wa`` offered on ``out`` in the previous cycle
(the ROM is read every cycle): the weights of an update arrive one cycle after its
transfer, what :class:`~hw.neuron.NeuronCore` takes (through :class:`~hw.join.Join`).

Throughput: the engine's (one update of ``L`` lanes per cycle, see :mod:`hw.synapse`).
"""

import numpy as np

from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim.registry import KINDS

# the engine modules attach their kinds' "hw.engine" and "hw.rom" parts when imported
from . import conv, identity, linear, pool  # noqa: F401
from .stream import event_signature

__all__ = ["SynapseUnit", "synapse_engine", "synapse_rom"]


def synapse_rom(syn, out_shape, lanes):
    """The weight ROM of synapse ``syn`` into a layer of ``out_shape`` for ``L = lanes``:
    the kind's ``"hw.rom"`` image of every tap, tap-major (tap ``t`` at ``t*tap_depth``).

    Returns
    -------
    words : list of list of int
        Conv, linear: ``words[base*G + g][j] = w[g*L + j, base]`` (0 for padding lanes),
        with ``base = (c*K + ky)*K + kx`` (conv, pool) or the input index (linear);
        identity: word ``c`` holds ``w[c]`` in lane ``c % L``.
    wbits : int
        Lane width.
    """
    rom = KINDS[syn.type].part("hw.rom")
    words, wbits = [], None
    for t in range(syn.taps):
        w = syn.tap_weights(t)
        tap_words, wbits = rom(syn, None if w is None else w.astype(np.int64),
                               tuple(out_shape), lanes)
        words += tap_words
    return words, wbits


def synapse_engine(syn, in_shape, out_shape, lanes):
    """The engine of ``syn`` (its kind's ``"hw.engine"`` part) for events of
    ``in_shape`` into a layer of ``out_shape`` with ``L = lanes``."""
    return KINDS[syn.type].part("hw.engine")(syn, tuple(in_shape), tuple(out_shape), lanes)


class SynapseUnit(wiring.Component):
    """Engine and weight ROM of one synapse (see the module docstring).

    Parameters
    ----------
    syn : sim.model.Synapse
    out_shape : tuple
        The layer's output shape.
    lanes : int
        ``L`` of the layer's core.
    src_shape : tuple
        Shape of the incoming events: the source layer's ``out_shape`` or the input
        shape (a linear synapse flattens it in the engine).

    Attributes
    ----------
    inp : In(event stream of ``src_shape``, with a ``tap`` field when ``syn.taps > 1``)
    out : Out(stream of :class:`~hw.synapse.UpdateLayout`)
    rom_data : Out(wbits * L)
        Lane ``j`` (signed) in bits ``j*wbits ..``.
    busy : Out(1)
        Something is in the engine.
    engine : SynapseEngine
    rom_words : list of list of int
    wbits : int
    """
    def __init__(self, syn, out_shape, lanes, *, src_shape):
        self.syn = syn
        self.src_shape = tuple(src_shape)
        self.out_shape = tuple(out_shape)
        self.L = lanes
        self.rom_words, self.wbits = synapse_rom(syn, self.out_shape, lanes)
        self.engine = synapse_engine(syn, self.src_shape, self.out_shape, lanes)
        super().__init__({
            "inp": In(event_signature(self.src_shape, syn.taps)),
            "out": Out(self.engine.out.signature),
            "rom_data": Out(self.wbits * lanes),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        eng = m.submodules.engine = self.engine
        rom = m.submodules.rom = Memory(shape=data.ArrayLayout(signed(self.wbits), self.L),
                                        depth=len(self.rom_words), init=self.rom_words)
        rp = rom.read_port()
        wiring.connect(m, wiring.flipped(self.inp), eng.inp)
        wiring.connect(m, wiring.flipped(self.out), eng.out)
        m.d.comb += [
            rp.addr.eq(eng.out.payload.wa),
            rp.en.eq(1),
            self.rom_data.eq(rp.data),
            self.busy.eq(eng.busy),
        ]
        return m
