"""``linear`` in torch: the source flattened in ``(C, H, W)`` order times
``(N_out, N_in)`` weights."""

import torch.nn.functional as F

from sim.registry import KINDS

from .base import TorchOp

__all__ = ["LinearOp"]


class LinearOp(TorchOp):
    fan_axes = 1

    def apply(self, syn, x, w):
        return F.linear(x.reshape(x.shape[0], -1), w)


KINDS["linear"].attach("quant.torch", LinearOp())
