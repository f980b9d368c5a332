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

from sim.registry import KINDS

from .conv import ConvEngine

__all__ = ["SumPoolEngine", "pool_weights"]


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
    taps, tap_field
        As :class:`~hw.conv.ConvEngine`.
    """
    #: lane width of the ROM of ones (1 needs a sign bit)
    WBITS = 2

    def __init__(self, in_shape, out_shape, kernel, groups, taps=1, tap_field=None, bank=None):
        super().__init__(in_shape, out_shape, kernel, kernel, 0, groups, taps, tap_field,
                         bank)

    @classmethod
    def for_synapse(cls, syn, src_shape, out_shape, groups, lanes=None, bank=None):
        return cls(src_shape, out_shape, syn.kernel, groups, bank=bank, **cls.tap_kw(syn))

    @classmethod
    def rom_weights(cls, syn, src_shape, tap=0):
        """The ones of :func:`pool_weights` (the kind has no weights; every tap the
        same), :attr:`WBITS` wide."""
        return pool_weights(src_shape[0], syn.kernel), cls.WBITS


KINDS["sumpool2d"].attach("hw.engine", SumPoolEngine)
