"""The interface of a synapse kind's torch operator (the ``"quant.torch"`` part)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from sim.registry import KINDS

__all__ = ["TorchOp", "torch_op"]


class TorchOp:
    """One tap of one synapse kind in torch, batch first.

    A synapse object ``syn`` is anything with the geometry attributes of
    :class:`sim.model.Synapse` (``kernel``, ``stride``, ``padding``).

    Attributes
    ----------
    weighted : bool
        The kind has weights (``False``: it adds whole spike counts, as ``sumpool2d``).
    """
    weighted = True

    def apply(self, syn, x, w):
        """The input counts ``x`` ``(B, *source_shape)`` times one tap's weights ``w``
        (the kind's weight shape, or ``None``), shaped ``(B, *out_shape)``. Exact for
        integer values while every partial sum is exactly representable."""
        raise NotImplementedError

    def init_weight(self, w):
        """Initialise a float weight tensor of one or several taps in place (default:
        uniform in ``+-1/sqrt(fan_in)``, the fan-in of one tap)."""
        fan = int(np.prod(w.shape[-self.fan_axes:])) if w.ndim else 1
        with torch.no_grad():
            nn.init.uniform_(w, -1 / math.sqrt(fan), 1 / math.sqrt(fan))

    #: Trailing axes of one tap's weights that form the fan-in of one output channel.
    fan_axes = 1

    def channel_axis(self, taps):
        """The axis of the output channel in a weight array with ``taps`` taps."""
        return 1 if taps > 1 else 0


def torch_op(kind_name):
    """The torch operator of synapse kind ``kind_name`` (``KeyError`` naming the kind
    when it has none)."""
    return KINDS[kind_name].part("quant.torch")
