"""Hardware geometry shared by the generator (hw/), the cycle model (sim/cycles.py), the
cocotb models (sim/tb/) and the board protocol (boards/): the one copy of each rule.

Only plain Python and numpy: ``sim`` must not import Amaranth.

* token kinds of every event word (network input, layer events, the UART event word);
* tensor shapes as ``(C, H, W)``;
* lanes: how many output channels a neuron core updates per cycle, and the lane groups
  ``G`` of one output position (state-RAM word ``a = pos * G + g`` holds channels
  ``g * L .. g * L + L - 1``);
* the per-axis window of a convolution seen from the input side (which outputs one input
  coordinate reaches), from which the hardware's kernel-offset tables and the compiled
  reference's strip tables are derived.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SPIKE", "END_STEP", "END_SAMPLE", "RESERVED", "KIND_BITS", "MAX_DEFAULT_LANES",
           "MAX_LANES", "MAX_FIFO_DEPTH",
           "shape3", "default_lanes", "lane_groups", "conv_out_size", "axis_range"]

#: Token kinds, the 2-bit ``kind`` field of every event word.
SPIKE = 0
END_STEP = 1
END_SAMPLE = 2
RESERVED = 3
KIND_BITS = 2

#: The default lane count is every output channel, up to this many.
MAX_DEFAULT_LANES = 16

#: Limits of the hardware parameters a user may ask for (``--lanes``, ``--fifo-depth``;
#: docs/semantics.md, "Limits"): beyond them elaboration and the cycle model only grow
#: (a state-RAM word is ``lanes * state_bits`` wide, a FIFO holds ``fifo_depth`` words).
MAX_LANES = 256
MAX_FIFO_DEPTH = 4096


def shape3(shape):
    """``(C, H, W)`` of a tensor shape; a 1-D shape ``(N,)`` becomes ``(N, 1, 1)``.

    Raises
    ------
    ValueError
        The shape is neither 1-D nor 3-D.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        return (shape[0], 1, 1)
    if len(shape) == 3:
        return shape
    raise ValueError(f"expected a (C, H, W) or (N,) shape, got {shape}")


def default_lanes(out_shape):
    """Default lane count of a layer with ``out_shape``: all output channels up to 16."""
    return max(1, min(shape3(out_shape)[0], MAX_DEFAULT_LANES))


def lane_groups(channels, lanes):
    """Lane groups ``G = ceil(channels / lanes)`` of one output position.

    Raises
    ------
    ValueError
        ``lanes`` is not a positive integer.
    """
    if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
    return -(-int(channels) // int(lanes))


def conv_out_size(size, kernel, stride, padding):
    """Output length of a convolution along one axis (floor division, as in torch)."""
    return (size + 2 * padding - kernel) // stride + 1


def axis_range(n_in, n_out, kernel, stride, padding):
    """Per input coordinate ``v < n_in``: the first and last output ``o`` it reaches.

    ``o`` is reached when ``o * stride - padding + k == v`` for some ``0 <= k < kernel``
    and ``0 <= o < n_out``; the kernel offset of output ``o`` is
    ``k = v + padding - o * stride``.

    Returns
    -------
    lo, hi : numpy.ndarray of int64, shape ``(n_in,)``
        The reached outputs are ``lo .. hi``; ``hi < lo`` when none is.
    """
    t = np.arange(int(n_in), dtype=np.int64) + padding
    hi = np.minimum(t // stride, n_out - 1)
    lo_num = t - kernel + 1
    lo = np.where(lo_num > 0, -(-lo_num // stride), 0)
    return lo, hi
