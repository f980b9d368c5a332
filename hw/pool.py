"""Sum pooling engine: a depthwise convolution of ones, kernel K, stride K, no padding.

An input spike at ``(c, y, x)`` adds 1 to output neuron ``(c, y // K, x // K)`` when that
neuron exists (rows and columns beyond ``(H // K) * K`` have none and are dropped).
It reuses :class:`~hw.conv.ConvEngine` with ``S = K``, ``P = 0``: the window always has
at most one position, so an event costs ``G`` cycles (``G = ceil(C/L)``; one cycle with
the default ``L = C``). The "weights" are an identity ROM (:func:`pool_weights`):
word ``((c*K + ky)*K + kx)*G + g`` holds 1 in lane ``c - g*L`` when channel ``c`` falls in
group ``g``, 0 elsewhere, so the shared read-modify-write datapath needs no special case.
"""

import numpy as np

from sim.geometry import lane_groups, shape3
from sim.registry import KINDS

from .conv import ConvEngine
from .synapse import lane_words

__all__ = ["SumPoolEngine", "pool_weights", "pool_engine", "pool_rom", "POOL_WEIGHT_BITS"]

#: Lane width of a pooling ROM: its weights are 0 and 1 (signed).
POOL_WEIGHT_BITS = 2


def pool_weights(channels, kernel):
    """``(C, C, K, K)`` weights of a sum pool: ``w[co, ci] = 1`` when ``co == ci``."""
    w = np.zeros((channels, channels, kernel, kernel), dtype=np.int64)
    for c in range(channels):
        w[c, c] = 1
    return w


class SumPoolEngine(ConvEngine):
    """Address generator of a ``sumpool2d`` layer (see the module docstring).

    Parameters
    ----------
    in_shape, out_shape : tuple
    kernel : int
    groups : int
    taps : int
    """
    def __init__(self, in_shape, out_shape, kernel, groups, taps=1):
        super().__init__(in_shape, out_shape, kernel, kernel, 0, groups, taps)


def pool_engine(syn, in_shape, out_shape, lanes):
    """The ``"hw.engine"`` part of ``sumpool2d`` (see :mod:`hw.synapse`)."""
    G = lane_groups(shape3(out_shape)[0], lanes)
    return SumPoolEngine(in_shape, out_shape, syn.kernel, G, taps=syn.taps)


def pool_rom(syn, w, out_shape, lanes):
    """The ``"hw.rom"`` part of ``sumpool2d``: the ones of :func:`pool_weights` (``w`` is
    ``None``: the kind has no weights), :data:`POOL_WEIGHT_BITS` wide."""
    C = int(out_shape[0])
    ones = pool_weights(C, syn.kernel)
    return lane_words(ones.reshape(C, -1).T, C, lanes), POOL_WEIGHT_BITS


KINDS["sumpool2d"].attach("hw.engine", pool_engine)
KINDS["sumpool2d"].attach("hw.rom", pool_rom)
