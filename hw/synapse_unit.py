"""Synapse unit: the address engine of one synapse and its weight ROM.

Data flow::

    inp (events of the source's shape) -> engine -> out (updates: kind, sa, wa)
                                                    wa -> weight ROM (registered read) -> rom_data

The engine is the hardware part of the synapse's kind, found through the registry:
``KINDS[syn.type].part("hw.engine")`` is a :class:`~hw.synapse.SynapseEngine` subclass
(attached in the engine's module: :mod:`hw.conv`, :mod:`hw.linear`, :mod:`hw.pool`,
:mod:`hw.identity`),
built with its ``for_synapse`` class method. The ROM holds the engine's
``lane_rom`` image: one word of ``L`` lane weights per address (for conv, pool and
linear ``words[base*G + g][j] = w[g*L + j, base]``), the ``L = C_out`` case of which is
the exchange image ``<layer>.weights.hex`` of the model directory. A synapse with ``D``
taps has the ``D`` images one after another (tap-major, ``wa = tap*tap_depth +
base_wa``) and its events carry a ``tap`` field.

``rom_data`` is the ROM word at the ``wa`` offered on ``out`` in the previous cycle
(the ROM is read every cycle): the weights of an update arrive one cycle after its
transfer, what :class:`~hw.neuron.NeuronCore` takes (through :class:`~hw.join.Join`).

Throughput: the engine's (one update of ``L`` lanes per cycle, see :mod:`hw.synapse`).
"""

from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim.geometry import lane_groups, shape3
from sim.registry import KINDS

# the built-in engines attach themselves to their kinds on import
from . import conv, identity, linear, pool  # noqa: F401
from .stream import synapse_input_signature

__all__ = ["SynapseUnit", "engine_class"]


def engine_class(syn):
    """The engine class of ``syn``'s kind (``KeyError`` naming the kind when the
    hardware has none)."""
    return KINDS[syn.type].part("hw.engine")


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
    bank : tuple, optional
        ``(b, B)``: the unit of bank ``b`` of a layer with ``B`` banks (its engine issues
        only that bank's columns; :func:`sim.geometry.banks_of`).

    Attributes
    ----------
    inp : In(event stream of ``src_shape``)
        With a ``tap`` field when the synapse has taps or a delay
        (:func:`hw.stream.synapse_input_signature`).
    out : Out(stream of :class:`~hw.synapse.UpdateLayout`)
    rom_data : Out(wbits * L)
        Lane ``j`` (signed) in bits ``j*wbits ..``.
    busy : Out(1)
        Something is in the engine.
    engine : SynapseEngine
    rom_words : list of list of int
    wbits : int
    """
    def __init__(self, syn, out_shape, lanes, *, src_shape, bank=None):
        self.syn = syn
        self.src_shape = tuple(src_shape)
        self.out_shape = tuple(out_shape)
        self.L = lanes
        self.G = lane_groups(shape3(out_shape)[0], lanes)
        cls = engine_class(syn)
        self.rom_words, self.wbits = cls.lane_rom(syn, self.src_shape, self.out_shape, lanes)
        if bank is None:
            self.engine = cls.for_synapse(syn, self.src_shape, self.out_shape, self.G, lanes)
        elif getattr(cls, "BANKABLE", False):
            self.engine = cls.for_synapse(syn, self.src_shape, self.out_shape, self.G, lanes,
                                          bank=bank)
        else:
            raise ValueError(f"synapse {syn.type}: its engine has no banks")
        super().__init__({
            "inp": In(synapse_input_signature(self.src_shape, syn.taps, syn.delay)),
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
