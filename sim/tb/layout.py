"""Bit layouts of the words on the RTL ports, as ``hw.stream`` and ``hw.neuron`` define
them (Amaranth struct layouts: first field in the lowest bits).

* network input (``InputLayout``): ``kind`` (2 bits), ``p``, ``y``, ``x``
  (``coord_bits`` each);
* layer events (``EventLayout`` of a ``(C, H, W)`` tensor): ``kind`` (2), ``c``, ``y``,
  ``x`` with the smallest widths that hold ``0 .. size-1`` (at least one bit);
* state word: ``L`` lanes of ``acc_bits`` two's-complement, lane 0 lowest; a
  current-based layer: ``L`` state lanes of ``state_bits``, then ``L`` current lanes of
  ``acc_bits`` (:class:`sim.tb.model.LayerInfo`).
"""

from ..geometry import KIND_BITS, shape3

__all__ = ["bits_for", "Layout", "input_layout", "event_layout", "split_lanes"]


def bits_for(n):
    """Bits that hold the non-negative integer ``n`` (at least 1), as amaranth's."""
    return max(1, int(n).bit_length())


class Layout:
    """An ordered set of unsigned fields packed from bit 0 upwards."""

    def __init__(self, fields):
        self.fields = []
        off = 0
        for name, width in fields:
            self.fields.append((name, off, width))
            off += width
        self.width = off

    def pack(self, **values):
        word = 0
        for name, off, width in self.fields:
            word |= (int(values.get(name, 0)) & ((1 << width) - 1)) << off
        return word

    def unpack(self, word):
        word = int(word)
        return {name: (word >> off) & ((1 << width) - 1) for name, off, width in self.fields}


def input_layout(coord_bits=16):
    """The network input word."""
    return Layout([("kind", KIND_BITS), ("p", coord_bits), ("y", coord_bits),
                   ("x", coord_bits)])


def event_layout(shape):
    """The event word of a tensor of ``shape``."""
    C, H, W = shape3(shape)
    return Layout([("kind", KIND_BITS), ("c", bits_for(C - 1)), ("y", bits_for(H - 1)),
                   ("x", bits_for(W - 1))])


def split_lanes(word, lanes, width):
    """Signed lane values of a packed state word."""
    out = []
    mask = (1 << width) - 1
    word = int(word)
    for j in range(lanes):
        v = (word >> (j * width)) & mask
        if v >> (width - 1):
            v -= 1 << width
        out.append(v)
    return out
