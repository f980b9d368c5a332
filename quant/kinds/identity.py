"""``identity`` in torch: one weight per channel, each neuron reads the same position of
its source (weights ``(C,)``; a plain skip connection when every weight is 1)."""

import torch

from sim.registry import KINDS

from .base import TorchOp

__all__ = ["IdentityOp"]


class IdentityOp(TorchOp):

    def apply(self, syn, x, w):
        return x * w.reshape((1, -1) + (1,) * (x.ndim - 2)).to(x.dtype)

    def init_weight(self, w):
        """Ones: a new identity synapse starts as a plain skip connection."""
        with torch.no_grad():
            w.fill_(1.0)


KINDS["identity"].attach("quant.torch", IdentityOp())
