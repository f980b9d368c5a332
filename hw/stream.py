"""Event words and token layouts shared by every block of the accelerator.

Every event stream in the design is an :class:`amaranth.lib.stream.Signature` stream
(``valid``/``ready``/``payload``) whose payload is an :class:`EventLayout`:

===========  ======================================================================
field        meaning
===========  ======================================================================
``kind``     :data:`SPIKE` (0), :data:`END_STEP` (1) or :data:`END_SAMPLE` (2)
``c``        channel (conv / pool tensors) or neuron index (1-D tensors of a linear
             layer, whose ``y`` and ``x`` are always 0)
``y``, ``x`` row and column
===========  ======================================================================

For a token (``kind != SPIKE``) the coordinates are 0 and meaningless.

Stream rules, kept by every block:

* a transfer happens in a cycle with ``valid & ready``;
* ``valid`` and ``payload`` never depend combinationally on ``ready``;
* once ``valid`` is raised, ``valid`` and ``payload`` are held until the transfer
  (a source never withdraws an item);
* nothing is dropped or duplicated; the end-of-step token follows every spike of its
  step and the end-of-sample token follows the last end-of-step token of a sample.

A delay line (:mod:`hw.delay`) replays events with :class:`TapEventLayout`: the fields
above plus ``tap`` (``j`` of the synapse tap whose weights the event uses). The input of
a synapse (:func:`synapse_input_signature`) has that layout when the synapse has several
taps or a delay (it reads a delay line), else :class:`EventLayout`.

The network input uses :class:`InputLayout` (``kind``, ``p``, ``y``, ``x`` with
``coord_bits`` wide coordinates, so that out-of-range events can be expressed and
dropped by the range checker).

The token kinds and :func:`shape3` are those of :mod:`sim.geometry` (re-exported here).

This module has no logic; throughput is that of the blocks using it.
"""

from amaranth.hdl import unsigned
from amaranth.lib import data, stream
from amaranth.utils import bits_for

# the token kinds and shape rule of every event word: re-exported from the one copy
from sim.geometry import END_SAMPLE, END_STEP, KIND_BITS, SPIKE, shape3

__all__ = ["SPIKE", "END_STEP", "END_SAMPLE", "KIND_BITS", "EventLayout", "TapEventLayout",
           "InputLayout", "event_signature", "tap_event_signature", "input_signature",
           "synapse_input_signature", "shape3"]


class EventLayout(data.StructLayout):
    """Event word for a tensor of ``shape`` (``(C, H, W)`` or ``(N,)``).

    Field widths are the smallest that hold ``0 .. size-1`` (at least one bit).
    """
    def __init__(self, shape):
        C, H, W = shape3(shape)
        self.tensor_shape = (C, H, W)
        super().__init__({
            "kind": unsigned(KIND_BITS),
            "c": unsigned(bits_for(C - 1)),
            "y": unsigned(bits_for(H - 1)),
            "x": unsigned(bits_for(W - 1)),
        })


class TapEventLayout(data.StructLayout):
    """Event word of a delay line's replay: :class:`EventLayout` of ``shape`` plus
    ``tap`` (``0 .. taps-1``, at least one bit)."""
    def __init__(self, shape, taps):
        C, H, W = shape3(shape)
        self.tensor_shape = (C, H, W)
        self.taps = taps
        super().__init__({
            "kind": unsigned(KIND_BITS),
            "c": unsigned(bits_for(C - 1)),
            "y": unsigned(bits_for(H - 1)),
            "x": unsigned(bits_for(W - 1)),
            "tap": unsigned(bits_for(taps - 1)),
        })


class InputLayout(data.StructLayout):
    """Network input word: ``kind``, polarity ``p``, row ``y``, column ``x``."""
    def __init__(self, coord_bits=16):
        self.coord_bits = coord_bits
        super().__init__({
            "kind": unsigned(KIND_BITS),
            "p": unsigned(coord_bits),
            "y": unsigned(coord_bits),
            "x": unsigned(coord_bits),
        })


def event_signature(shape):
    """Stream signature carrying :class:`EventLayout` words of ``shape``."""
    return stream.Signature(EventLayout(shape))


def tap_event_signature(shape, taps):
    """Stream signature carrying :class:`TapEventLayout` words of ``shape``, ``taps``."""
    return stream.Signature(TapEventLayout(shape, taps))


def synapse_input_signature(shape, taps=1, delay=0):
    """The input of a synapse engine reading events of ``shape``: :func:`tap_event_signature`
    when it has ``taps > 1`` or a ``delay > 0`` (its events come from a delay line), else
    :func:`event_signature`."""
    if taps > 1 or delay > 0:
        return tap_event_signature(shape, taps)
    return event_signature(shape)


def input_signature(coord_bits=16):
    """Stream signature of the network input."""
    return stream.Signature(InputLayout(coord_bits))
